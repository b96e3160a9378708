-- Identity schema. One file serves PostgreSQL and SQLite: TEXT and BIGINT columns only,
-- booleans as 0/1, ids are time-ordered UUIDs (v7) so they sort by creation.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    csm_eligible BIGINT NOT NULL,
    -- Space-separated lower-case domains.
    managed_domains TEXT NOT NULL,
    auto_delete_days BIGINT NOT NULL DEFAULT 0,
    notify_before_auto_delete BIGINT NOT NULL DEFAULT 0,
    -- Bumped by every write that takes the account lock (see store::accounts::lock).
    version BIGINT NOT NULL DEFAULT 0,
    closed_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE custom_roles (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    -- Space-separated privilege names.
    privileges TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX custom_roles_unique_name ON custom_roles (account_id, name);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    status TEXT NOT NULL,
    role TEXT NOT NULL,
    custom_role_id TEXT REFERENCES custom_roles (id),
    external BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deactivated_at_ms BIGINT
);
CREATE UNIQUE INDEX users_unique_email_per_account ON users (account_id, email);
-- SPEC R3: at most one owner per account, enforced by the database itself.
CREATE UNIQUE INDEX users_one_owner_per_account ON users (account_id) WHERE role = 'owner';
CREATE INDEX users_by_email ON users (email);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    email TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- SHA-256 of the code sent by e-mail; the code itself is never stored.
    code_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    role TEXT NOT NULL,
    custom_role_id TEXT,
    send_count BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX invitations_by_account ON invitations (account_id, status, id);

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    authorized_by TEXT NOT NULL,
    needs_reauthorization BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX integrations_by_account ON integrations (account_id, id);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX audit_events_by_account ON audit_events (account_id, id);

-- SPEC R35: e-mails are written here in the same transaction as the change that causes them.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    -- A sender holds a row until this instant; another replica may take it afterwards.
    leased_until_ms BIGINT NOT NULL DEFAULT 0,
    sent_at_ms BIGINT,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (sent_at_ms, next_attempt_at_ms);

CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    method TEXT NOT NULL,
    request_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (principal, method, request_id)
);
