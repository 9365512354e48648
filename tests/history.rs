//! The samples' layout and history queries against real databases: rollups
//! agree with the raw samples at every level on both backends, PostgreSQL's
//! native partitions are created ahead and on demand and dropped by retention.

mod common;

use std::collections::BTreeMap;

use common::{temp_dir, TestDatabase};
use hydrowatch::store::blocks::DAY_MS;
use hydrowatch::store::history::{Level, Point};
use hydrowatch::store::layout::now_ms;
use hydrowatch::store::{LayoutSettings, PlantIds, Store, StoreError};
use hydrowatch_actors::storage::{SampleStore, StoredSample};
use hydrowatch_models::Quality;

async fn open(url: &str) -> (Store, PlantIds) {
    let loaded = common::demo_config(&[("HYDROWATCH_STORAGE__URL", url)]);
    hydrowatch::app::open_storage(&loaded)
        .await
        .expect("storage opens")
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
    for batch in samples.chunks(1500) {
        store.write(batch).await.expect("batch written");
    }
    let again = store.write(&samples[3000..4500]).await.expect("retried");
    assert_eq!((again.inserted, again.duplicates), (0, 1500));

    let end = t0 + 3 * 3_600_000;
    let cases = [
        // (from, to, max_points, level, bucket)
        (t0 + 600_000, t0 + 1_200_000, 100, Level::Raw, 6_000),
        (t0, end, 200, Level::Minute, 60_000),
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
        // Rollup buckets start at `from` rounded down to their width, and the
        // last bucket runs to its end.
        let (origin, from_in, to_in) = match level {
            Level::Raw => (from, from, to),
            _ => {
                let origin = from - from.rem_euclid(bucket);
                (
                    origin,
                    origin,
                    to + bucket - 1 - (to - 1).rem_euclid(bucket),
                )
            }
        };
        for (i, sensor) in sensors.iter().enumerate() {
            let want = expected(&samples, *sensor, origin, bucket, from_in, to_in);
            assert!(!want.is_empty());
            assert_points(&series.points[i], &want, &what);
        }
    }

    // KPIs over the last hour before `end`: the 1-minute rollup from the
    // minute an hour before.
    let stats = store.stats(&sensors, end, 3_600_000).await.expect("stats");
    let from = end - 3_600_000;
    for (i, sensor) in sensors.iter().enumerate() {
        let want = expected(&samples, *sensor, from, 2 * 3_600_000, from, end + 60_000);
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
    let (store, ids) = open(&format!("sqlite://{}", dir.join("hw.db").display())).await;
    rollups_agree_with_raw(&store, &ids).await;
}

#[tokio::test]
async fn postgres_rollups_agree_with_the_raw_samples() {
    let db = TestDatabase::create("history").await;
    let (store, ids) = open(&db.url()).await;
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
async fn postgres_partitions_are_created_ahead_and_on_demand_and_dropped_by_retention() {
    let db = TestDatabase::create("partitions").await;
    let (store, ids) = open(&db.url()).await;
    let [sensor, _] = two_sensors(&ids);
    let now = now_ms();
    let day = DAY_MS;

    // Migration created partitions around now and ahead of it.
    let stats = store.layout_stats("sample_blocks").await.unwrap();
    assert_eq!(stats.layout, "native");
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

    // Without TimescaleDB (not packaged here) there is nothing to compress,
    // and its health says so.
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
async fn sqlite_retention_deletes_old_blocks() {
    let dir = temp_dir("retention-sqlite");
    let (store, ids) = open(&format!("sqlite://{}", dir.join("hw.db").display())).await;
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
