-- SPEC R18, R21, R22: a user's settings. Keyed by the user, so they move with the user when
-- unlinked (the user id is kept), and are deleted with them.
CREATE TABLE user_settings (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    time_zone TEXT NOT NULL,
    language TEXT NOT NULL,
    -- A JSON object of the user's own keys and values.
    entries TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
