-- Users, their password history, sessions and refresh tokens (issue 6).
-- Keep in step with migrations/sqlite/0008_users_and_sessions.sql. Instants
-- in ms since the epoch. Users are never deleted, only marked (deleted_at),
-- so that the audit log keeps naming them.
CREATE TABLE users (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                 TEXT    NOT NULL, -- lower-cased
    name                  TEXT    NOT NULL,
    role                  TEXT    NOT NULL, -- ADMIN, ENGINEER, VIEWER
    company               TEXT,
    phone                 TEXT,
    timezone              TEXT    NOT NULL,
    password_hash         TEXT    NOT NULL, -- argon2id, PHC string
    password_changed_at   BIGINT  NOT NULL,
    must_change_password  BOOLEAN NOT NULL DEFAULT FALSE,
    is_mfa_enabled        BOOLEAN NOT NULL DEFAULT FALSE,
    failed_login_attempts BIGINT  NOT NULL DEFAULT 0,
    account_locked_until  BIGINT,
    last_activity         BIGINT,
    attributes            TEXT    NOT NULL, -- JSON object: extensible profile
    created_at            BIGINT  NOT NULL,
    deleted_at            BIGINT
);
CREATE UNIQUE INDEX users_email_live ON users (email) WHERE deleted_at IS NULL;

-- Earlier password hashes: a new password must not be one of the last five.
CREATE TABLE password_history (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    hash       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX password_history_user ON password_history (user_id, created_at);

-- One row per login; ended by logout, forced logout, refresh-token reuse,
-- the per-user limit or expiry.
CREATE TABLE sessions (
    id             TEXT   PRIMARY KEY, -- random, 256 bits
    user_id        BIGINT NOT NULL REFERENCES users (id),
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    ip             TEXT,
    user_agent     TEXT,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens, by SHA-256: each is used once; a second use of a rotated
-- one revokes its session.
CREATE TABLE refresh_tokens (
    hash       TEXT   PRIMARY KEY,
    session_id TEXT   NOT NULL REFERENCES sessions (id),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
