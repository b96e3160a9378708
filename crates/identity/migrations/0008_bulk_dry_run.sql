-- Bulk dry runs (validate_only): an operation that only checks and previews its rows, and
-- each row's preview (JSON: what its single-user call would reclaim, move and leave).
ALTER TABLE bulk_operations ADD COLUMN validate_only BIGINT NOT NULL DEFAULT 0;
ALTER TABLE bulk_rows ADD COLUMN preview TEXT;
