-- TOTP second factor, backup codes, single-use tokens for password reset
-- and e-mail verification, and per-user equipment scopes (issue 6). Keep in step with
-- migrations/sqlite/0011_mfa_and_user_tokens.sql.
ALTER TABLE users ADD COLUMN totp_secret TEXT;        -- base32, once confirmed
ALTER TABLE users ADD COLUMN totp_pending TEXT;       -- base32, enrolled but not confirmed
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;   -- the last 30 s step used: a code works once
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
-- Equipment the user may see (JSON array of ids); NULL: all of it.
ALTER TABLE users ADD COLUMN equipment_scope TEXT;

-- Backup codes, by SHA-256: each works once, instead of a TOTP code.
CREATE TABLE mfa_backup_codes (
    user_id BIGINT  NOT NULL REFERENCES users (id),
    hash    TEXT    NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, hash)
);

-- Password reset and e-mail verification tokens, by SHA-256: 256 random
-- bits, a time to live, used once.
CREATE TABLE user_tokens (
    hash       TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    purpose    TEXT    NOT NULL, -- password_reset, email_verification
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose);
