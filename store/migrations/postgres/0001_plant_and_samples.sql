-- hydrowatch schema, PostgreSQL. Keep in step with
-- migrations/sqlite/0001_plant_and_samples.sql: the same tables and meanings.
-- The time-series layout of `samples` (TimescaleDB hypertable or native range
-- partitions, rollups) comes in a later migration.

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
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    equipment_id TEXT             NOT NULL REFERENCES equipment (id),
    sensor       TEXT             NOT NULL,
    name         TEXT             NOT NULL,
    unit         TEXT             NOT NULL,
    range_min    DOUBLE PRECISION NOT NULL,
    range_max    DOUBLE PRECISION NOT NULL,
    period_ms    BIGINT,
    UNIQUE (equipment_id, sensor)
);

-- One row per (sensor, instant); quality: 0 good, 1 uncertain, 2 bad.
CREATE TABLE samples (
    sensor_id BIGINT           NOT NULL REFERENCES sensors (id),
    ts        TIMESTAMPTZ      NOT NULL,
    value     DOUBLE PRECISION,
    quality   SMALLINT         NOT NULL,
    PRIMARY KEY (sensor_id, ts)
);

CREATE TABLE quarantine (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    batch_id    TEXT,
    row_no      INTEGER,
    equipment   TEXT,
    sensor      TEXT,
    ts          TEXT,
    value       TEXT,
    unit        TEXT,
    code        TEXT        NOT NULL,
    reason      TEXT        NOT NULL
);

CREATE TABLE ingest_batches (
    batch_id    TEXT PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    accepted    INTEGER     NOT NULL,
    quarantined INTEGER     NOT NULL,
    duplicates  INTEGER     NOT NULL,
    response    JSONB       NOT NULL
);
