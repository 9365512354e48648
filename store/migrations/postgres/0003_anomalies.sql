-- Verdicts of the cycle models that found an anomaly: one row per degraded
-- component of a cycle, or one row with component 'novel' for a cycle that is
-- only novel. Keep in step with migrations/sqlite/0003_anomalies.sql.
-- Instants in ms since the epoch, like the samples' blocks.
CREATE TABLE anomalies (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    equipment_id   TEXT             NOT NULL REFERENCES equipment (id),
    ts             BIGINT           NOT NULL,
    cycle_start    BIGINT           NOT NULL,
    component      TEXT             NOT NULL, -- or 'novel': novel, no component named
    severity       TEXT             NOT NULL,
    score          DOUBLE PRECISION NOT NULL,
    confidence     DOUBLE PRECISION NOT NULL,
    level          INTEGER,
    novelty        DOUBLE PRECISION,
    model_version  TEXT             NOT NULL,
    per_model      TEXT             NOT NULL,
    -- A replayed write of the same verdict is stored once.
    UNIQUE (equipment_id, ts, component)
);

CREATE INDEX anomalies_equipment_ts ON anomalies (equipment_id, ts DESC);
