-- API keys for integrations (issue 6). Keep in step with
-- migrations/sqlite/0010_api_keys.sql. A key is shown once; only its
-- SHA-256 is kept. Instants in ms since the epoch.
CREATE TABLE api_keys (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id), -- the admin who made it; it acts as them
    name          TEXT    NOT NULL,
    prefix        TEXT    NOT NULL, -- the key's first characters, to tell keys apart
    hash          TEXT    NOT NULL UNIQUE, -- SHA-256 of the whole key, hex
    scopes        TEXT    NOT NULL, -- JSON array of permission names
    rate_burst    BIGINT  NOT NULL,
    rate_per_min  BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    usage_count   BIGINT  NOT NULL DEFAULT 0,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);
