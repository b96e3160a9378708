-- SPEC R35: an e-mail a mail server refused for good (5xx) is kept, with its reason, and no
-- longer retried; operators list these (AccountService/ListUndeliverableEmails).
ALTER TABLE outbox ADD COLUMN failed_at_ms BIGINT;
