-- API keys for integrations (issue 6). Keep in step with
-- migrations/postgres/0010_api_keys.sql. A key is shown once; only its
-- SHA-256 is kept. Instants in ms since the epoch.
CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id), -- the admin who made it; it acts as them
    name          TEXT    NOT NULL,
    prefix        TEXT    NOT NULL, -- the key's first characters, to tell keys apart
    hash          TEXT    NOT NULL UNIQUE, -- SHA-256 of the whole key, hex
    scopes        TEXT    NOT NULL, -- JSON array of permission names
    rate_burst    INTEGER NOT NULL,
    rate_per_min  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    usage_count   INTEGER NOT NULL DEFAULT 0,
    revoked_at    INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id);
