//! The samples' layout and history queries against real databases: rollups
//! agree with the raw samples at every level on SQLite and on PostgreSQL in
//! both layouts (TimescaleDB and native partitions); native partitions are
//! created ahead and on demand and dropped by retention; TimescaleDB chunks
//! are compressed and dropped, and its continuous aggregates refreshed.

use crate::common;

use std::collections::BTreeMap;

use common::{open_storage, temp_dir, Reply, TestApp, TestDatabase};
use hydrowatch::store::blocks::DAY_MS;
use hydrowatch::store::history::{Level, Point};
use hydrowatch::store::layout::{LayoutStats, PartitionInfo};
use hydrowatch::store::{LayoutSettings, Maintenance, PlantIds, Store, StoreError};
use hydrowatch_actors::clock::now_ms;
use hydrowatch_actors::storage::{SampleStore, StoredSample};
use hydrowatch_models::Quality;

/// PostgreSQL with native partitions, whether or not TimescaleDB is installed.
async fn open_native(url: &str) -> (Store, PlantIds) {
    let (store, ids) = open_storage(url, &[("HYDROWATCH_STORAGE__TIMESCALE", "off")]).await;
    let layout = store.layout_stats("sample_blocks").await.unwrap().layout;
    assert_eq!(layout, "native");
    (store, ids)
}

/// PostgreSQL with TimescaleDB, which `scripts/test` installs: a test of it
/// must not pass on the native layout instead.
async fn open_timescale(url: &str) -> (Store, PlantIds) {
    let (store, ids) = open_storage(url, &[]).await;
    let health = store.timescale_health().await.unwrap();
    assert!(
        health.in_use,
        "TimescaleDB is not in use ({health:?}): scripts/test installs it and preloads it"
    );
    let layout = store.layout_stats("sample_blocks").await.unwrap().layout;
    assert_eq!(layout, "timescaledb");
    (store, ids)
}

fn two_sensors(ids: &PlantIds) -> [i64; 2] {
    let mut sensors: Vec<i64> = ids.sensors.values().copied().collect();
    sensors.sort();
    [sensors[0], sensors[1]]
}

/// Three hours of 1 Hz samples of two sensors from `t0`, with gaps, bad and
/// uncertain readings mixed in.
fn three_hours(sensors: [i64; 2], t0: i64) -> Vec<StoredSample> {
    let mut out = Vec::new();
    for i in 0..3 * 3600i64 {
        for (k, sensor) in sensors.into_iter().enumerate() {
            let value = 100.0 * ((i as f64) / 37.0 + k as f64).sin() + (i % 11) as f64;
            let (value, quality) = match (i + k as i64) % 97 {
                0 => (None, Quality::Bad),
                1 => (Some(-1e6), Quality::Bad),
                2 => (Some(value), Quality::Uncertain),
                _ => (Some(value), Quality::Good),
            };
            out.push(StoredSample {
                sensor,
                ts_ms: t0 + i * 1000,
                value,
                quality,
            });
        }
    }
    out
}

/// What a bucket should hold: the good and uncertain values in it.
fn expected(
    samples: &[StoredSample],
    sensor: i64,
    origin: i64,
    bucket_ms: i64,
    from: i64,
    to: i64,
) -> BTreeMap<i64, Point> {
    let mut out: BTreeMap<i64, Point> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.sensor == sensor) {
        let Some(v) = s.value else { continue };
        if s.quality == Quality::Bad || s.ts_ms < from || s.ts_ms >= to {
            continue;
        }
        let key = origin + (s.ts_ms - origin).div_euclid(bucket_ms) * bucket_ms;
        let p = out.entry(key).or_insert(Point {
            ts_ms: key,
            min: v,
            max: v,
            avg: 0.0,
            last: v,
            count: 0,
        });
        p.min = p.min.min(v);
        p.max = p.max.max(v);
        p.avg += v; // a sum until the end
        p.last = v;
        p.count += 1;
    }
    for p in out.values_mut() {
        p.avg /= p.count as f64;
    }
    out
}

fn assert_points(got: &[Point], want: &BTreeMap<i64, Point>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of points");
    for p in got {
        let w = want
            .get(&p.ts_ms)
            .unwrap_or_else(|| panic!("{what}: unexpected bucket {}", p.ts_ms));
        assert_eq!(
            (p.count, p.min, p.max, p.last),
            (w.count, w.min, w.max, w.last),
            "{what}: bucket {}",
            p.ts_ms
        );
        assert!(
            (p.avg - w.avg).abs() < 1e-9,
            "{what}: mean {} {}",
            p.avg,
            w.avg
        );
    }
}

/// Writes three hours in batches that split minutes, writes one batch again,
/// then checks every level of `series` and `stats` against the raw samples.
async fn rollups_agree_with_raw(store: &Store, ids: &PlantIds) {
    let sensors = two_sensors(ids);
    // 20 minutes into a day, so hours and the day are partly covered.
    let t0 = 1_750_032_000_000 - 1_750_032_000_000 % DAY_MS + 20 * 60_000;
    let samples = three_hours(sensors, t0);
    // Even seconds first, then the odd ones: every minute ends up in
    // fragments that interleave in time (as a late backfill makes them).
    let (even, odd): (Vec<StoredSample>, Vec<StoredSample>) = samples
        .iter()
        .cloned()
        .partition(|s| (s.ts_ms / 1000) % 2 == 0);
    for batch in even.chunks(1500).chain(odd.chunks(1500)) {
        store.write(batch).await.expect("batch written");
    }
    let again = store.write(&samples[3000..4500]).await.expect("retried");
    assert_eq!((again.inserted, again.duplicates), (0, 1500));
    history_matches(store, sensors, &samples, t0).await;

    // Compaction leaves one row per sensor and minute and changes no answer.
    let before = store.layout_stats("sample_blocks").await.unwrap().rows;
    let mut done = hydrowatch::store::samples::Compaction::default();
    loop {
        let round = store
            .compact_blocks(t0 - DAY_MS, t0 + DAY_MS, 100)
            .await
            .expect("compaction");
        if round.blocks == 0 {
            break;
        }
        done.blocks += round.blocks;
        done.fragments += round.fragments;
    }
    assert_eq!(done.blocks, 2 * 180, "{done:?}");
    assert_eq!(done.fragments as i64, before, "{done:?}");
    let after = store.layout_stats("sample_blocks").await.unwrap().rows;
    assert_eq!(after, 2 * 180);
    history_matches(store, sensors, &samples, t0).await;
    // Writing after compaction still finds every stored instant.
    let again = store.write(&samples[..100]).await.expect("retried");
    assert_eq!((again.inserted, again.duplicates), (0, 100));
}

/// Raw reads, every level of `series` and `stats` agree with `samples`.
async fn history_matches(store: &Store, sensors: [i64; 2], samples: &[StoredSample], t0: i64) {
    let read = store
        .read_samples(&sensors, t0, t0 + 3 * 3_600_000)
        .await
        .unwrap();
    let mut want = samples.to_vec();
    want.sort_by_key(|s| (s.sensor, s.ts_ms));
    assert!(read == want, "read back in (sensor, time) order");

    let end = t0 + 3 * 3_600_000;
    let cases = [
        // (from, to, max_points, level, bucket)
        (t0 + 600_000, t0 + 1_200_000, 100, Level::Raw, 6_000),
        (t0, end, 200, Level::Minute, 60_000),
        (t0 + 30_000, end, 60, Level::Minute, 180_000),
        (t0 - 600_000, end + 3_600_000, 3, Level::Hour, 2 * 3_600_000),
        (t0, end, 8, Level::Hour, 3_600_000),
        (t0 - DAY_MS / 2, end + DAY_MS, 4, Level::Day, DAY_MS),
    ];
    for (from, to, max_points, level, bucket) in cases {
        let series = store
            .series(&sensors, from, to, max_points)
            .await
            .expect("series");
        let what = format!("{} {level:?}", store.backend());
        assert_eq!((series.level, series.bucket_ms), (level, bucket), "{what}");
        let (origin, from_in, to_in) = match level {
            Level::Raw => (from, from, to),
            _ => {
                // Rows of the rollup (of `width`) that start in [from, to),
                // rounded out, merged into buckets from `from` rounded down.
                let width = match level {
                    Level::Minute => 60_000,
                    Level::Hour => 3_600_000,
                    _ => DAY_MS,
                };
                let origin = from - from.rem_euclid(width);
                (origin, origin, to + width - 1 - (to - 1).rem_euclid(width))
            }
        };
        for (i, sensor) in sensors.iter().enumerate() {
            let want = expected(samples, *sensor, origin, bucket, from_in, to_in);
            assert!(!want.is_empty());
            assert_points(&series.points[i], &want, &what);
        }
    }

    // KPIs over the last hour before `end`: the 1-minute rollup from the
    // minute an hour before.
    let stats = store.stats(&sensors, end, 3_600_000).await.expect("stats");
    let from = end - 3_600_000;
    for (i, sensor) in sensors.iter().enumerate() {
        let want = expected(samples, *sensor, from, 2 * 3_600_000, from, end + 60_000);
        let got = stats[i].expect("stats of a sensor with data");
        assert_eq!(
            (got.count, got.min, got.max, got.last),
            (
                want[&from].count,
                want[&from].min,
                want[&from].max,
                want[&from].last
            )
        );
    }
    // A sensor without data has no KPIs.
    let stats = store.stats(&[sensors[0] + 1000], end, 3_600_000).await;
    assert_eq!(stats.expect("stats"), vec![None]);

    let err = store.series(&sensors, end, t0, 100).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_rollups_agree_with_the_raw_samples() {
    let dir = temp_dir("history-sqlite");
    let (store, ids) =
        open_storage(&format!("sqlite://{}", dir.join("hw.db").display()), &[]).await;
    rollups_agree_with_raw(&store, &ids).await;
}

#[tokio::test]
async fn postgres_native_rollups_agree_with_the_raw_samples() {
    let db = TestDatabase::create("history").await;
    let (store, ids) = open_native(&db.url()).await;
    rollups_agree_with_raw(&store, &ids).await;
    store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn timescaledb_rollups_agree_with_the_raw_samples() {
    let db = TestDatabase::create("history_tsdb").await;
    let (store, ids) = open_timescale(&db.url()).await;
    rollups_agree_with_raw(&store, &ids).await;
    store.close().await;
    db.drop_now().await;
}

fn one(sensor: i64, ts_ms: i64) -> StoredSample {
    StoredSample {
        sensor,
        ts_ms,
        value: Some(1.0),
        quality: Quality::Good,
    }
}

#[tokio::test]
async fn postgres_native_partitions_are_created_ahead_and_on_demand_and_dropped_by_retention() {
    let db = TestDatabase::create("partitions").await;
    let (store, ids) = open_native(&db.url()).await;
    let [sensor, _] = two_sensors(&ids);
    let now = now_ms();
    let day = DAY_MS;

    // Migration created partitions around now and ahead of it.
    let stats = store.layout_stats("sample_blocks").await.unwrap();
    let covers = |t: i64| {
        stats
            .partitions
            .iter()
            .any(|p| p.from_ms <= t && t < p.to_ms)
    };
    assert!(covers(now) && covers(now + 2 * day), "{stats:?}");
    assert_eq!(stats.rows, 0);

    // A sample long ago gets its partition when it is written.
    let old = now - 40 * day;
    store
        .write(&[one(sensor, old), one(sensor, now - 60_000)])
        .await
        .unwrap();
    let stats = store.layout_stats("sample_blocks").await.unwrap();
    let old_partition = stats
        .partitions
        .iter()
        .find(|p| p.from_ms <= old && old < p.to_ms)
        .expect("partition of the old sample");
    assert_eq!(old_partition.to_ms - old_partition.from_ms, day);
    assert_eq!(old_partition.rows, 1);
    assert_eq!(stats.rows, 2);
    assert!(stats.bytes > 0);

    // Explicit creation is idempotent.
    let created = store
        .ensure_partitions_for_range("sample_blocks", now + 10 * day, now + 12 * day, 24)
        .await
        .unwrap();
    assert!((2..=3).contains(&created.len()), "{created:?}");
    let again = store
        .ensure_partitions_for_range("sample_blocks", now + 10 * day, now + 12 * day, 24)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");

    // Retention drops whole partitions older than it, and nothing newer.
    let dropped = store
        .cleanup_old_partitions("sample_blocks", 30)
        .await
        .unwrap();
    assert!(
        dropped.contains(&old_partition.name),
        "{dropped:?} lacks {}",
        old_partition.name
    );
    let left = store
        .read_samples(&[sensor], old - day, now + day)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].ts_ms, now - 60_000);
    // A late sample for the dropped range gets a fresh partition.
    let w = store.write(&[one(sensor, old)]).await.unwrap();
    assert_eq!(w.inserted, 1);

    // The periodic round keeps partitions ahead; nothing left to drop but
    // the late sample's partition.
    let done = store
        .maintain(&LayoutSettings {
            retention_days: 30,
            ..LayoutSettings::default()
        })
        .await
        .unwrap();
    assert_eq!(done.dropped.len(), 1, "{done:?}");

    // The native layout has nothing to compress, and TimescaleDB's health
    // says it is not in use (it may still be offered by the server).
    let err = store.compress_old_chunks("sample_blocks", 7).await;
    assert!(matches!(err, Err(StoreError::Unsupported(_))), "{err:?}");
    let health = store.timescale_health().await.unwrap();
    assert!(!health.in_use && health.installed_version.is_none() && health.healthy);
    let err = store.layout_stats("sensors").await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn timescaledb_chunks_are_compressed_aggregated_and_dropped_by_retention() {
    let db = TestDatabase::create("tsdb_chunks").await;
    let (store, ids) = open_timescale(&db.url()).await;
    let [sensor, _] = two_sensors(&ids);
    let now = now_ms();
    let (old, closed, recent) = (now - 40 * DAY_MS, now - 10 * DAY_MS, now - 60_000);
    let written = store
        .write(&[one(sensor, old), one(sensor, closed), one(sensor, recent)])
        .await
        .unwrap();
    assert_eq!(written.inserted, 3);

    // One chunk a day. (The compression policy's first run may already have
    // compressed the old ones: it starts when the policy is added.)
    let stats = store.layout_stats("sample_blocks").await.unwrap();
    assert_eq!(stats.partitions.len(), 3, "{stats:?}");
    assert!(stats.partitions.iter().all(|p| p.rows == 1), "{stats:?}");
    let chunk_of = |stats: &LayoutStats, t: i64| -> PartitionInfo {
        stats
            .partitions
            .iter()
            .find(|p| p.from_ms <= t && t < p.to_ms)
            .cloned()
            .unwrap_or_else(|| panic!("no chunk holds {t}: {stats:?}"))
    };
    let old_chunk = chunk_of(&stats, old);
    assert_eq!(old_chunk.to_ms - old_chunk.from_ms, DAY_MS);

    // Compression takes the closed chunks, not the one being written.
    let compressed = store.compress_old_chunks("sample_blocks", 7).await.unwrap();
    assert_eq!(compressed.len(), 2, "{compressed:?}");
    let stats = store.layout_stats("sample_blocks").await.unwrap();
    assert!(chunk_of(&stats, old).compressed && chunk_of(&stats, closed).compressed);
    assert!(!chunk_of(&stats, recent).compressed);

    // Compressed samples read back; a duplicate of one is found and a late
    // sample lands beside it.
    let instants = |samples: Vec<StoredSample>| samples.iter().map(|s| s.ts_ms).collect::<Vec<_>>();
    let read = store
        .read_samples(&[sensor], old - DAY_MS, now)
        .await
        .unwrap();
    assert_eq!(instants(read), vec![old, closed, recent]);
    let again = store
        .write(&[one(sensor, closed), one(sensor, closed + 1000)])
        .await
        .unwrap();
    assert_eq!((again.inserted, again.duplicates), (1, 1));

    // Every level of the continuous aggregates counts the four samples: the
    // backfilled ones by the writer's refresh, the recent one in real time.
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    for view in ["rollup_1m", "rollup_1h", "rollup_1d"] {
        let sql = format!("SELECT coalesce(sum(n), 0)::int8 FROM {view} WHERE sensor_id = $1");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(sensor)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 4, "{view}");
    }
    pool.close().await;

    // Retention drops the whole chunks older than it, and nothing newer.
    let dropped = store
        .cleanup_old_partitions("sample_blocks", 30)
        .await
        .unwrap();
    assert_eq!(dropped, vec![old_chunk.name], "{dropped:?}");
    let read = store
        .read_samples(&[sensor], old - DAY_MS, now)
        .await
        .unwrap();
    assert_eq!(instants(read), vec![closed, closed + 1000, recent]);

    // Chunks and retention are TimescaleDB's own: nothing for the periodic
    // round or explicit partition creation to do, and its policies are there.
    assert_eq!(
        store.maintain(&LayoutSettings::default()).await.unwrap(),
        Maintenance::default()
    );
    let created = store
        .ensure_partitions_for_range("sample_blocks", now, now + 2 * DAY_MS, 24)
        .await
        .unwrap();
    assert!(created.is_empty(), "{created:?}");
    let health = store.timescale_health().await.unwrap();
    assert!(health.installed_version.is_some(), "{health:?}");
    let kinds: Vec<&str> = health.jobs.iter().map(|j| j.kind.as_str()).collect();
    for kind in [
        "policy_compression",
        "policy_retention",
        "policy_refresh_continuous_aggregate",
    ] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }

    store.close().await;
    db.drop_now().await;
}

/// `vlast_ts` of every block, in key order.
async fn last_value_instants(pool: &sqlx::PgPool) -> Vec<(i64, i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT sensor_id, (extract(epoch FROM first_ts) * 1000)::int8, \
                (extract(epoch FROM vlast_ts) * 1000)::int8 \
         FROM sample_blocks ORDER BY sensor_id, block_start, first_ts",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn timescaledb_blocks_stored_before_vlast_ts_are_upgraded() {
    let db = TestDatabase::create("tsdb_upgrade").await;
    let (store, ids) = open_timescale(&db.url()).await;
    let sensors = two_sensors(&ids);
    let t0 = 1_750_032_000_000 - 1_750_032_000_000 % DAY_MS + 20 * 60_000;
    let samples = three_hours(sensors, t0);
    // Interleaved fragments, whose last samples are sometimes bad.
    let (even, odd): (Vec<StoredSample>, Vec<StoredSample>) = samples
        .iter()
        .cloned()
        .partition(|s| (s.ts_ms / 1000) % 2 == 0);
    store.write(&even).await.unwrap();
    store.write(&odd).await.unwrap();
    store.compress_old_chunks("sample_blocks", 7).await.unwrap();
    store.close().await;

    // The layout as it was before the column: no rollups over it, no column.
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let written = last_value_instants(&pool).await;
    assert!(written.iter().all(|(_, _, at)| at.is_some()));
    for view in ["rollup_1d", "rollup_1h", "rollup_1m"] {
        let sql = format!("DROP MATERIALIZED VIEW {view}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::raw_sql("ALTER TABLE sample_blocks DROP COLUMN vlast_ts")
        .execute(&pool)
        .await
        .unwrap();

    // Opening it again adds the column, fills it as the writer would have,
    // and the rebuilt rollups agree with the samples.
    let (store, _) = open_timescale(&db.url()).await;
    assert_eq!(last_value_instants(&pool).await, written);
    history_matches(&store, sensors, &samples, t0).await;
    pool.close().await;
    store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn sqlite_retention_deletes_old_blocks() {
    let dir = temp_dir("retention-sqlite");
    let (store, ids) =
        open_storage(&format!("sqlite://{}", dir.join("hw.db").display()), &[]).await;
    let [sensor, _] = two_sensors(&ids);
    let now = now_ms();
    store
        .write(&[one(sensor, now - 40 * DAY_MS), one(sensor, now - 60_000)])
        .await
        .unwrap();
    let dropped = store
        .cleanup_old_partitions("sample_blocks", 30)
        .await
        .unwrap();
    assert_eq!(dropped, vec!["1 blocks".to_owned()]);
    let left = store
        .read_samples(&[sensor], now - 50 * DAY_MS, now)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    let stats = store.layout_stats("sample_blocks").await.unwrap();
    assert_eq!((stats.layout.as_str(), stats.rows), ("sqlite", 1));
}

/// Two hours of PS1 and PS2 of rig-1 from `t0`, a spike in PS1 at `t0 + 61 min`.
async fn seed_rig1(app: &hydrowatch::App, t0: i64) -> Vec<StoredSample> {
    let ids = &app.state.sensor_ids[&hydrowatch_models::EquipmentId::parse("rig-1").unwrap()];
    let id = |s: &str| ids[&hydrowatch_models::SensorId::parse(s).unwrap()];
    let mut rows = Vec::new();
    for i in 0..7200i64 {
        for (sensor, base) in [(id("PS1"), 150.0), (id("PS2"), 100.0)] {
            let spike = sensor == id("PS1") && i == 3660;
            rows.push(StoredSample {
                sensor,
                ts_ms: t0 + i * 1000,
                value: Some(if spike {
                    999.0
                } else {
                    base + (i % 60) as f64 * 0.1
                }),
                quality: Quality::Good,
            });
        }
    }
    app.state.store.write(&rows).await.expect("seeded");
    rows
}

#[tokio::test]
async fn series_and_stats_over_http_keep_peaks_and_name_bad_fields() {
    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let base = "/api/v1";
    let t0 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
    seed_rig1(&app, t0).await;

    let url = format!(
        "{base}/equipment/rig-1/series?sensors=PS1,PS2&from=2025-01-01T00:00:00Z&to={}&max_points=100",
        t0 + 7_200_000
    );
    let body = viewer.get(&url).await.body;
    assert_eq!(body["level"], "1m", "{body}");
    assert_eq!(body["bucket_ms"], 120_000);
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(
        (series[0]["sensor"].as_str(), series[0]["unit"].as_str()),
        (Some("PS1"), Some("bar"))
    );
    let points = series[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    assert!(points.iter().all(|p| p["count"] == 120));
    // The one-second spike survives 120-second buckets as the bucket's max.
    let spiked = &points[30];
    assert_eq!(spiked["ts_ms"], t0 + 60 * 60_000);
    assert_eq!(spiked["max"], 999.0);
    assert!(points.iter().filter(|p| p["max"] == 999.0).count() == 1);
    assert_eq!(series[1]["points"][0]["min"], 100.0);

    // A short range reads the raw samples.
    let body = viewer
        .get(&format!(
            "{base}/equipment/rig-1/series?sensors=PS1&from={}&to={}&max_points=30",
            t0 + 3_600_000,
            t0 + 3_720_000
        ))
        .await
        .body;
    assert_eq!(
        (body["level"].as_str(), body["bucket_ms"].as_i64()),
        (Some("raw"), Some(4000))
    );
    assert_eq!(body["series"][0]["points"].as_array().unwrap().len(), 30);
    assert_eq!(body["series"][0]["points"][15]["max"], 999.0);

    // Bad input: 404 for an unknown unit, 422 naming the field otherwise.
    let status = |path: String| {
        let reply = viewer.get(&path);
        async move {
            let Reply { status, body, .. } = reply.await;
            (
                status,
                body["error"]["details"]["field"]
                    .as_str()
                    .map(str::to_owned),
                body,
            )
        }
    };
    let (code, _, body) = status(format!("{base}/equipment/rig-9/series")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for (query, field) in [
        ("sensors=PS1,XX9", "sensors"),
        ("from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "from"),
        ("to=tomorrow", "to"),
        ("max_points=0", "max_points"),
        ("max_points=100000", "max_points"),
    ] {
        let (code, got, body) = status(format!("{base}/equipment/rig-1/series?{query}")).await;
        assert_eq!(
            (code, got.as_deref()),
            (422, Some(field)),
            "{query}: {body}"
        );
        assert_eq!(body["error"]["code"], "invalid_request");
    }
    let (code, _, body) = status(format!("{base}/equipment/rig-1/series?max_points=abc")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );

    // KPIs over the last hour come from what the live rigs wrote.
    let mut tries = 0;
    let stats = loop {
        let stats = viewer
            .get(&format!("{base}/equipment/rig-1/stats?range=1h"))
            .await
            .body;
        if stats["sensors"][0]["count"].as_i64().unwrap_or(0) > 0 || tries == 100 {
            break stats;
        }
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(stats["range"], "1h");
    assert_eq!(stats["sensors"].as_array().unwrap().len(), 18);
    let ps1 = &stats["sensors"][0];
    assert_eq!(ps1["sensor"], "PS1");
    assert!(ps1["count"].as_i64().unwrap() > 0, "{stats}");
    assert!(ps1["min"].as_f64().unwrap() <= ps1["max"].as_f64().unwrap());
    let (code, field, _) = status(format!("{base}/equipment/rig-1/stats?range=2h")).await;
    assert_eq!((code, field.as_deref()), (422, Some("range")));
}

#[tokio::test]
async fn admin_storage_operations_over_http() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let base = "/api/v1/admin/storage";
    let t0 = (now_ms() - 40 * DAY_MS) / 60_000 * 60_000;
    seed_rig1(&app, t0).await;
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        common::send(admin.request(method, &format!("{base}/{path}")).json(&body))
    };

    let stats = admin.get(&format!("{base}/stats")).await.body;
    assert_eq!(stats["layout"], "sqlite");
    assert!(stats["rows"].as_i64().unwrap() >= 240, "{stats}");
    let health = admin.get(&format!("{base}/timescale")).await.body;
    assert_eq!(health["in_use"], false);

    let r = call(reqwest::Method::POST, "compress", serde_json::json!({})).await;
    assert_eq!(r.status, 501);
    let body = r.body;
    assert_eq!(body["error"]["code"], "unsupported");

    let r = call(
        reqwest::Method::POST,
        "cleanup",
        serde_json::json!({"retention_days": 0}),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        reqwest::Method::POST,
        "cleanup",
        serde_json::json!({"table": "sensors"}),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        reqwest::Method::POST,
        "cleanup",
        serde_json::json!({"retention_days": 30}),
    )
    .await;
    assert_eq!(r.status, 200);
    let body = r.body;
    assert_eq!(
        body["affected"],
        serde_json::json!(["240 blocks"]),
        "{body}"
    );

    let r = call(
        reqwest::Method::POST,
        "partitions",
        serde_json::json!({"start": "2030-01-01T00:00:00Z", "end": "later"}),
    )
    .await;
    assert_eq!(r.status, 422);
    let body = r.body;
    assert_eq!(body["error"]["details"]["field"], "end");

    // Without a token: 401.
    let r = app.anonymous().get(&format!("{base}/stats")).await;
    assert_eq!(r.status, 401);
}
