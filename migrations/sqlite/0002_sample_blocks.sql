-- Samples move from one row per sample to blocks per sensor and minute (see
-- src/store/blocks.rs and BENCHMARKS.md). Keep in step with
-- src/store/layout.rs, which creates the same tables on PostgreSQL. No
-- installation stored samples in the row layout outside development.
DROP TABLE samples;

-- A fragment: the samples of one sensor within one minute that one write
-- stored. Instants in ms since the epoch; payload per src/store/blocks.rs.
CREATE TABLE sample_blocks (
    sensor_id   INTEGER NOT NULL REFERENCES sensors (id),
    block_start INTEGER NOT NULL,
    first_ts    INTEGER NOT NULL,
    last_ts     INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    vmin        REAL,
    vmax        REAL,
    vsum        REAL,
    vlast       REAL,
    payload     BLOB    NOT NULL,
    PRIMARY KEY (sensor_id, block_start, first_ts)
);

-- Rollups: count, min, max, sum and last of the good and uncertain values per
-- sensor and bucket (bucket start in ms).
CREATE TABLE rollup_1m (
    sensor_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    vmin      REAL,
    vmax      REAL,
    vsum      REAL,
    vlast     REAL,
    last_ts   INTEGER,
    PRIMARY KEY (sensor_id, bucket)
) WITHOUT ROWID;

CREATE TABLE rollup_1h (
    sensor_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    vmin      REAL,
    vmax      REAL,
    vsum      REAL,
    vlast     REAL,
    last_ts   INTEGER,
    PRIMARY KEY (sensor_id, bucket)
) WITHOUT ROWID;

CREATE TABLE rollup_1d (
    sensor_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    vmin      REAL,
    vmax      REAL,
    vsum      REAL,
    vlast     REAL,
    last_ts   INTEGER,
    PRIMARY KEY (sensor_id, bucket)
) WITHOUT ROWID;
