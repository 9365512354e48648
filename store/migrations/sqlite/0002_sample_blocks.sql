-- Samples move from one row per sample to blocks per sensor and minute (see
-- src/store/blocks.rs and BENCHMARKS.md). Keep in step with
-- src/store/layout.rs, which creates the same tables on PostgreSQL. The old
-- table is kept as samples_legacy; Store::migrate rewrites its rows as blocks,
-- then drops it.
ALTER TABLE samples RENAME TO samples_legacy;

-- A batch id answers a retry only when the retry is the same request.
ALTER TABLE ingest_batches ADD COLUMN request_sha256 TEXT;

-- A retried batch (its answer lost) quarantines its bad rows once.
CREATE UNIQUE INDEX quarantine_batch_row ON quarantine (batch_id, row_no)
    WHERE batch_id IS NOT NULL;

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
