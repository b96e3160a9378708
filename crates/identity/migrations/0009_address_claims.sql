-- SPEC R12 with R34: an address added but not verified is a claim that reserves nothing.
-- Several users may claim one address at a time; only a verified address is unique (the
-- partial index), and verifying it lapses the other claims. Claims expire with their code.
CREATE TABLE user_emails_v2 (
    email TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    -- SHA-256 of the code sent to the address; NULL once verified.
    code_hash TEXT,
    code_expires_at_ms BIGINT,
    verified_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (email, user_id)
);
INSERT INTO user_emails_v2 (email, user_id, code_hash, code_expires_at_ms, verified_at_ms, created_at_ms)
    SELECT email, user_id, code_hash, code_expires_at_ms, verified_at_ms, created_at_ms FROM user_emails;
DROP TABLE user_emails;
ALTER TABLE user_emails_v2 RENAME TO user_emails;
CREATE INDEX user_emails_by_user ON user_emails (user_id);
CREATE UNIQUE INDEX user_emails_verified_once ON user_emails (email) WHERE verified_at_ms IS NOT NULL;

-- Verification codes sent to addresses, which the rate limits count (per address, per user).
CREATE TABLE email_code_sends (
    email TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL
);
CREATE INDEX email_code_sends_by_email ON email_code_sends (email, sent_at_ms);
CREATE INDEX email_code_sends_by_user ON email_code_sends (user_id, sent_at_ms);

-- When the primary address was added to the profile (NULL: with the user), so it keeps its
-- date when a later address is made primary and the first one removed.
ALTER TABLE users ADD COLUMN email_added_at_ms BIGINT;
