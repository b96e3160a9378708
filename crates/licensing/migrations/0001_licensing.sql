-- Licensing's own database (never identity's). TEXT and BIGINT only, so one file serves
-- PostgreSQL and SQLite. Times are Unix milliseconds; money is integer minor units.

-- One row per account that licensing has seen. Every write first bumps `version` here, which
-- serialises the account's license writes (PostgreSQL row lock; SQLite single writer), so
-- capacity checks see every earlier assignment (SPEC R30).
CREATE TABLE license_accounts (
    account_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE seat_pools (
    account_id TEXT NOT NULL,
    license_type TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, license_type)
);

CREATE TABLE assignments (
    account_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    license_type TEXT NOT NULL,
    assigned_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, user_id, license_type)
);
CREATE INDEX assignments_by_type ON assignments (account_id, license_type, user_id);

-- A number belongs to one account; `user_id` is set while it is attached (SPEC R4, R31).
CREATE TABLE phone_numbers (
    number TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    user_id TEXT,
    added_at_ms BIGINT NOT NULL
);
CREATE INDEX phone_numbers_by_account ON phone_numbers (account_id, number);

-- Users whose licenses a saga reclaimed: no assignment until a restore lifts the hold.
CREATE TABLE license_holds (
    account_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, user_id)
);

CREATE TABLE content_items (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    owner_user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    uses_pmi BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX content_items_by_owner ON content_items (account_id, owner_user_id, id);

-- What a transfer moved, so its compensation moves exactly that back.
CREATE TABLE content_transfers (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    from_user_id TEXT NOT NULL,
    to_user_id TEXT NOT NULL,
    undone_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE content_transfer_items (
    transfer_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    PRIMARY KEY (transfer_id, item_id)
);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    plan_name TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    ended_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX subscriptions_by_account ON subscriptions (account_id, id);

CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL
);
CREATE INDEX invoices_by_account ON invoices (account_id, id);

-- SPEC R28: the unique subscription id makes a second refund impossible, whatever the caller.
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL UNIQUE,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    unused_seconds BIGINT NOT NULL,
    period_seconds BIGINT NOT NULL,
    refunded_at_ms BIGINT NOT NULL
);
CREATE INDEX refunds_by_account ON refunds (account_id, id);

CREATE TABLE payment_methods (
    account_id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    expiry_month BIGINT NOT NULL,
    expiry_year BIGINT NOT NULL
);

-- SPEC R33.
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

-- Read and written by roster_platform::idempotency (SPEC R32).
CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    method TEXT NOT NULL,
    request_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (principal, method, request_id)
);
