-- Silences and maintenance windows created through the API (issue 5); those
-- in plant.toml are not stored. Keep in step with
-- migrations/postgres/0005_silences.sql. Instants in ms since the epoch.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    matchers    TEXT   NOT NULL, -- JSON: site, equipment, sensor, severities
    time_window TEXT   NOT NULL, -- JSON: {"type": "fixed", ...} or {"type": "recurring", ...}
    comment     TEXT   NOT NULL,
    created_by  TEXT   NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Ended early through the API; kept for the record.
    ended_at    INTEGER,
    ended_by    TEXT
);
