-- Alert rules and escalation policies created through the API (issue 5);
-- those in plant.toml are not stored and cannot be changed through the API.
-- Keep in step with migrations/sqlite/0006_alert_rules.sql. Instants in ms
-- since the epoch.
CREATE TABLE alert_rules (
    id          TEXT   PRIMARY KEY,
    spec        TEXT   NOT NULL, -- JSON: the rule as the API takes it
    -- Raised by each change; a PUT may name the version it replaces.
    version     BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_by  TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE escalation_policies (
    name        TEXT   PRIMARY KEY,
    spec        TEXT   NOT NULL, -- JSON: steps and repeat_critical_ms
    version     BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_by  TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);
