-- The audit log (issue 6): who did what, when, from where. Each row holds
-- the hash of the row before and its own hash over its content and that
-- link, so that `hydrowatch audit verify` finds rows edited, inserted or
-- deleted afterwards. Rows are only ever appended. Keep in step with
-- migrations/postgres/0009_audit_log.sql.
CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY, -- 1, 2, 3… without gaps
    ts            INTEGER NOT NULL,    -- ms since the epoch
    user_id       INTEGER,             -- who, if anybody signed in
    action        TEXT   NOT NULL,
    resource_type TEXT   NOT NULL,
    resource_id   TEXT,
    changes       TEXT   NOT NULL, -- JSON
    ip            TEXT,
    user_agent    TEXT,
    prev_hash     TEXT   NOT NULL,
    hash          TEXT   NOT NULL
);
