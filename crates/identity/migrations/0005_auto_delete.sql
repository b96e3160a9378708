-- SPEC R20: when the auto-delete setting last changed (a deletion is never due sooner than a
-- week after that), which deactivation of a user the admins were told about, and which one a
-- deletion was started for (started once: one that fails is left to an operator).
ALTER TABLE accounts ADD COLUMN auto_delete_changed_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN auto_delete_noticed_for_ms BIGINT;
ALTER TABLE users ADD COLUMN auto_delete_started_for_ms BIGINT;
CREATE INDEX users_deactivated ON users (status, deactivated_at_ms);
