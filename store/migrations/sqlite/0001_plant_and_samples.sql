-- hydrowatch schema, SQLite (embedded default). Keep in step with
-- migrations/postgres/0001_plant_and_samples.sql: the same tables and meanings.

CREATE TABLE sites (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE equipment (
    id      TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites (id),
    name    TEXT NOT NULL
);

CREATE TABLE sensors (
    id           INTEGER PRIMARY KEY,
    equipment_id TEXT    NOT NULL REFERENCES equipment (id),
    sensor       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    unit         TEXT    NOT NULL,
    range_min    REAL    NOT NULL,
    range_max    REAL    NOT NULL,
    period_ms    INTEGER,
    UNIQUE (equipment_id, sensor)
);

-- One row per (sensor, instant); quality: 0 good, 1 uncertain, 2 bad.
CREATE TABLE samples (
    sensor_id INTEGER NOT NULL REFERENCES sensors (id),
    ts_ms     INTEGER NOT NULL,
    value     REAL,
    quality   INTEGER NOT NULL,
    PRIMARY KEY (sensor_id, ts_ms)
) WITHOUT ROWID;

-- Rows refused by validation, kept with the reason.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    batch_id    TEXT,
    row_no      INTEGER,
    equipment   TEXT,
    sensor      TEXT,
    ts          TEXT,
    value       TEXT,
    unit        TEXT,
    code        TEXT    NOT NULL,
    reason      TEXT    NOT NULL
);

-- Ingest batches by client id, so a retried request is answered, not re-applied.
CREATE TABLE ingest_batches (
    batch_id    TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    accepted    INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    duplicates  INTEGER NOT NULL,
    response    TEXT    NOT NULL
);
