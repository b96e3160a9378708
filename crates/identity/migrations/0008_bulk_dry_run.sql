-- Bulk dry runs (validate_only): an operation that only checks and previews its rows, and
-- each row's preview (JSON: what its single-user call would reclaim, move and leave). And
-- the operations' counters of ended rows, kept with every row change from now on, filled in
-- here for operations stored before (progress reads them instead of counting rows).
ALTER TABLE bulk_operations ADD COLUMN validate_only BIGINT NOT NULL DEFAULT 0;
ALTER TABLE bulk_rows ADD COLUMN preview TEXT;
UPDATE bulk_operations SET
    succeeded = (SELECT COUNT(*) FROM bulk_rows r WHERE r.operation_id = bulk_operations.id AND r.state = 'succeeded'),
    failed = (SELECT COUNT(*) FROM bulk_rows r WHERE r.operation_id = bulk_operations.id AND r.state = 'failed'),
    skipped = (SELECT COUNT(*) FROM bulk_rows r WHERE r.operation_id = bulk_operations.id AND r.state = 'skipped');
