-- Ownership requests (SPEC R8-R10) and the step-up verification that approving or denying
-- one needs (R10).

CREATE TABLE ownership_requests (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    requester_user_id TEXT NOT NULL,
    -- The owner when the request was made: the one who is e-mailed and may decide.
    owner_user_id TEXT NOT NULL,
    -- open, approved, denied, auto_approved, cancelled, void.
    state TEXT NOT NULL,
    -- Why the request became void, or who decided it.
    outcome_note TEXT NOT NULL DEFAULT '',
    -- The durable workflow that reminds the owner and decides at the deadline.
    operation_id TEXT NOT NULL,
    reminders_sent BIGINT NOT NULL DEFAULT 0,
    last_reminded_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    decided_at_ms BIGINT
);
-- One open request per account (R8); the index settles two requests racing.
CREATE UNIQUE INDEX ownership_requests_one_open ON ownership_requests (account_id) WHERE state = 'open';
CREATE INDEX ownership_requests_by_account ON ownership_requests (account_id, id);

-- A one-time code e-mailed to a user's primary address, for one purpose in one account.
CREATE TABLE step_up_challenges (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    -- SHA-256 of the code; the code itself is never stored.
    code_hash TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);

-- What a verified code is exchanged for: single use, short-lived, bound to user, account and
-- purpose. Only the SHA-256 of the proof is stored.
CREATE TABLE step_up_proofs (
    proof_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);

-- Wrong codes in a row per user; at five, step-up is locked for a while.
CREATE TABLE step_up_locks (
    user_id TEXT PRIMARY KEY,
    wrong_codes BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL
);
