-- Verdicts of the cycle models that found an anomaly: one row per degraded
-- component of a cycle, or one row with component 'novel' for a cycle that is
-- only novel. Keep in step with migrations/postgres/0003_anomalies.sql.
-- Instants in ms since the epoch, like the samples' blocks.
CREATE TABLE anomalies (
    id             INTEGER PRIMARY KEY,
    equipment_id   TEXT             NOT NULL REFERENCES equipment (id),
    ts             INTEGER           NOT NULL,
    cycle_start    INTEGER           NOT NULL,
    component      TEXT             NOT NULL, -- or 'novel': novel, no component named
    severity       TEXT             NOT NULL,
    score          REAL NOT NULL,
    confidence     REAL NOT NULL,
    level          INTEGER,
    novelty        REAL,
    model_version  TEXT             NOT NULL,
    per_model      TEXT             NOT NULL,
    -- A replayed write of the same verdict is stored once.
    UNIQUE (equipment_id, ts, component)
);

CREATE INDEX anomalies_equipment_ts ON anomalies (equipment_id, ts DESC);
