-- SPEC R14, R16, R25: bulk removal. A bulk operation is a workflow (kind bulk.<action>); these
-- tables hold what it works through. Its rows are claimed one at a time: a row becomes
-- running in the same commit that starts its single-user saga, so each row runs once.
CREATE TABLE bulk_operations (
    -- The workflow's id.
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    action TEXT NOT NULL,
    -- The file's header as CSV, repeated at the top of the results file.
    header TEXT NOT NULL,
    total BIGINT NOT NULL,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    -- Set by a cancel: no new rows start; the running ones finish.
    cancel_requested_by TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE bulk_rows (
    operation_id TEXT NOT NULL REFERENCES bulk_operations (id),
    line BIGINT NOT NULL,
    -- The row as it came, as CSV, for the results file.
    fields TEXT NOT NULL,
    -- The user as the row names them (id or e-mail), and whom to move content to (JSON).
    user_ref TEXT NOT NULL,
    transfer TEXT,
    -- pending, running, succeeded, failed, skipped.
    state TEXT NOT NULL,
    user_id TEXT,
    -- The single-user operation that ran the row.
    child_id TEXT,
    reason TEXT,
    code TEXT,
    message TEXT,
    col TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (operation_id, line)
);
CREATE INDEX bulk_rows_by_state ON bulk_rows (operation_id, state, line);
