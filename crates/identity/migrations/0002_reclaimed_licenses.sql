-- What a deactivation took from each user, so a reactivation can give exactly that back
-- (SPEC R19). The set is licensing's LicenseSet as JSON.
CREATE TABLE reclaimed_licenses (
    user_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    licenses TEXT NOT NULL,
    reclaimed_at_ms BIGINT NOT NULL
);
