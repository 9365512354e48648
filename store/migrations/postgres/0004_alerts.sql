-- Alerts, their history and the notification outbox (issue 5). Keep in step
-- with migrations/sqlite/0004_alerts.sql. Instants in ms since the epoch.
CREATE TABLE alerts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source           TEXT    NOT NULL, -- actor path, e.g. plant/rig-1/TS1
    kind             TEXT    NOT NULL, -- <rule kind>:<rule id>
    rule_id          TEXT    NOT NULL,
    site             TEXT    NOT NULL,
    equipment_id     TEXT,
    sensor           TEXT,
    state            TEXT    NOT NULL,
    severity         TEXT    NOT NULL,
    peak_severity    TEXT    NOT NULL,
    count            BIGINT  NOT NULL,
    last_value       DOUBLE PRECISION,
    first_seen       BIGINT  NOT NULL,
    last_seen        BIGINT  NOT NULL,
    activated_at     BIGINT,
    cleared_at       BIGINT,
    acknowledged_by  TEXT,
    acknowledged_at  BIGINT,
    flapping         BOOLEAN NOT NULL,
    -- The whole alert as JSON, so the alerting actor rebuilds it exactly
    -- after a restart.
    body             TEXT    NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- One open alert per source and type, whoever writes.
CREATE UNIQUE INDEX alerts_one_open ON alerts (source, kind)
    WHERE state NOT IN ('CLEARED_ACK', 'CANCELLED');
CREATE INDEX alerts_first_seen ON alerts (first_seen DESC);
CREATE INDEX alerts_equipment ON alerts (equipment_id, first_seen DESC);

CREATE TABLE alert_events (
    alert_id  BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    seq       BIGINT NOT NULL, -- position in the alert's history
    at        BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    state     TEXT   NOT NULL,
    severity  TEXT   NOT NULL,
    actor     TEXT,
    note      TEXT,
    PRIMARY KEY (alert_id, seq)
);

-- The outbox: one row per channel of a due escalation step. The unique key
-- makes a replayed write store it once, so nothing is sent twice.
CREATE TABLE alert_notifications (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        BIGINT  NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    activation      BIGINT  NOT NULL,
    step            BIGINT  NOT NULL,
    repetition      BIGINT  NOT NULL,
    channel         TEXT    NOT NULL,
    due_at          BIGINT  NOT NULL,
    status          TEXT    NOT NULL, -- pending, sent, dead
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    sent_at         BIGINT,
    UNIQUE (alert_id, activation, step, repetition, channel)
);

CREATE INDEX alert_notifications_due ON alert_notifications (status, next_attempt_at);
