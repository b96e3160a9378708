-- SPEC R12: a user's other e-mail addresses. The primary one stays in users.email (sign-in
-- and every e-mail use it); an address here is unverified until the code sent to it comes
-- back, and can then be made primary. An address belongs to one user across the system.
CREATE TABLE user_emails (
    email TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    -- SHA-256 of the code sent to the address; NULL once verified.
    code_hash TEXT,
    code_expires_at_ms BIGINT,
    verified_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX user_emails_by_user ON user_emails (user_id);
