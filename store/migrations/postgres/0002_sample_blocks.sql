-- Samples move from one row per sample to blocks per sensor and minute (see
-- src/store/blocks.rs and BENCHMARKS.md for why). The old table is kept as
-- samples_legacy; Store::migrate rewrites its rows as blocks, then drops it.
--
-- `sample_blocks` and the rollups are created at start-up by src/store/layout.rs,
-- because their shape depends on whether TimescaleDB is available: a hypertable
-- and continuous aggregates with it, native range partitions and rollup tables
-- without. What stays the same either way is created here.
ALTER TABLE samples RENAME TO samples_legacy;

-- A batch id answers a retry only when the retry is the same request.
ALTER TABLE ingest_batches ADD COLUMN request_sha256 TEXT;

-- A retried batch (its answer lost) quarantines its bad rows once.
CREATE UNIQUE INDEX quarantine_batch_row ON quarantine (batch_id, row_no)
    WHERE batch_id IS NOT NULL;

-- Which layout this database uses ('timescaledb' or 'native'); one row.
CREATE TABLE storage_layout (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    kind       TEXT        NOT NULL CHECK (kind IN ('timescaledb', 'native')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The native layout's partitions, as the application created them.
CREATE TABLE hw_partitions (
    name    TEXT PRIMARY KEY,
    parent  TEXT        NOT NULL,
    from_ts TIMESTAMPTZ NOT NULL,
    to_ts   TIMESTAMPTZ NOT NULL,
    CHECK (from_ts < to_ts)
);
CREATE INDEX hw_partitions_parent_range ON hw_partitions (parent, from_ts);

-- Creates the partitions of `parent` that [range_start, range_end) needs: chunks
-- aligned to `chunk` (from 2000-01-01 UTC), clipped where partitions exist already
-- (so a changed chunk interval never overlaps old partitions). Returns the names
-- created. Identifiers and bounds go through format('%I' / '%L').
CREATE FUNCTION hw_ensure_partitions(
    parent text, range_start timestamptz, range_end timestamptz, chunk interval)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    chunk_start timestamptz := date_bin(chunk, range_start, timestamptz '1970-01-01 00:00:00+00');
    lo timestamptz;
    hi timestamptz;
    covered_to timestamptz;
    next_from timestamptz;
    part text;
BEGIN
    IF parent <> 'sample_blocks' THEN
        RAISE EXCEPTION 'hw_ensure_partitions: % is not a partitioned table of hydrowatch', parent
            USING ERRCODE = '22023';
    END IF;
    IF chunk < interval '1 hour' THEN
        RAISE EXCEPTION 'hw_ensure_partitions: chunk interval % is below one hour', chunk
            USING ERRCODE = '22023';
    END IF;
    -- One creator at a time.
    PERFORM pg_advisory_xact_lock(hashtext('hw_partitions'));
    lo := chunk_start;
    WHILE lo < range_end LOOP
        SELECT p.to_ts INTO covered_to FROM hw_partitions p
            WHERE p.parent = hw_ensure_partitions.parent AND p.from_ts <= lo AND p.to_ts > lo;
        IF FOUND THEN
            lo := covered_to;
            CONTINUE;
        END IF;
        hi := date_bin(chunk, lo, timestamptz '1970-01-01 00:00:00+00') + chunk;
        SELECT min(p.from_ts) INTO next_from FROM hw_partitions p
            WHERE p.parent = hw_ensure_partitions.parent AND p.from_ts > lo;
        IF next_from IS NOT NULL AND next_from < hi THEN
            hi := next_from;
        END IF;
        part := format('%s_p%s', parent, to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS'));
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       part, parent, lo, hi);
        INSERT INTO hw_partitions (name, parent, from_ts, to_ts) VALUES (part, parent, lo, hi);
        RETURN NEXT part;
        lo := hi;
    END LOOP;
END;
$$;

-- Drops the partitions of `parent` that end at or before `cutoff`; returns their names.
CREATE FUNCTION hw_drop_partitions_before(parent text, cutoff timestamptz)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    IF parent <> 'sample_blocks' THEN
        RAISE EXCEPTION 'hw_drop_partitions_before: % is not a partitioned table of hydrowatch', parent
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('hw_partitions'));
    FOR part IN SELECT p.name FROM hw_partitions p
            WHERE p.parent = hw_drop_partitions_before.parent AND p.to_ts <= cutoff
            ORDER BY p.from_ts LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', part.name);
        DELETE FROM hw_partitions WHERE name = part.name;
        RETURN NEXT part.name;
    END LOOP;
END;
$$;
