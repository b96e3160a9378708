-- SPEC R28: the user a refund was made to, so they keep seeing it after the account it was
-- made in closes (they joined another account). Empty for refunds made before this column.
ALTER TABLE refunds ADD COLUMN refunded_user_id TEXT;
CREATE INDEX refunds_by_user ON refunds (refunded_user_id, id);
