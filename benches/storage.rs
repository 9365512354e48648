//! Storage benchmark: how fast samples are written through the store's write
//! path (blocks, duplicate check, rollups, one transaction per batch), beside a
//! raw binary COPY of the same samples as plain rows into an unindexed table
//! (PostgreSQL's ceiling, no duplicate check, no rollups); then how fast chart
//! queries over what was written are answered.
//!
//! ```sh
//! cargo bench --bench storage -- --backend postgres --days 30
//! cargo bench --bench storage -- --backend sqlite --days 30
//! ```
//!
//! Data: 17 sensors at 1 Hz for `--days`, in time order (as a backfill or a
//! long replay arrives), written in batches of `--batch-rows` (default 20,000,
//! the writer's default). PostgreSQL runs in its own fresh database on
//! 127.0.0.1:5432 (dropped afterwards), SQLite in a fresh temp file.

use std::time::{Duration, Instant};

use hydrowatch::store::Store;
use hydrowatch_actors::clock::now_ms;
use hydrowatch_actors::storage::{SampleStore, StoredSample};
use hydrowatch_models::{EquipmentId, Quality};

struct Args {
    backend: String,
    days: f64,
    batch_rows: usize,
    query_repeats: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        backend: "postgres".into(),
        days: 1.0,
        batch_rows: 20_000,
        query_repeats: 20,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        let value = raw.get(i + 1).cloned().unwrap_or_default();
        match raw[i].as_str() {
            "--backend" => args.backend = value,
            "--days" => args.days = value.parse().expect("--days D"),
            "--batch-rows" => args.batch_rows = value.parse().expect("--batch-rows N"),
            "--query-repeats" => args.query_repeats = value.parse().expect("--query-repeats N"),
            // cargo bench passes --bench; ignore anything else.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    args
}

const SENSORS: usize = 17;

/// Sample `n` of the run: sensor `n % 17`, second `n / 17` after `t0`.
fn sample(ids: &[i64], t0: i64, n: usize) -> StoredSample {
    let second = (n / SENSORS) as i64;
    let k = n % SENSORS;
    StoredSample {
        sensor: ids[k],
        ts_ms: t0 + second * 1000,
        value: Some(100.0 + 20.0 * ((second as f64) / 600.0 + k as f64).sin()),
        quality: Quality::Good,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// PostgreSQL binary COPY of `rows` as (sensor_id, ts, value, quality) tuples.
fn copy_rows(rows: &[StoredSample]) -> Vec<u8> {
    // Microseconds from 1970 to 2000, PostgreSQL's epoch.
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    let mut out = Vec::with_capacity(19 + rows.len() * 40);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for r in rows {
        out.extend_from_slice(&4i16.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&r.sensor.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(r.ts_ms * 1000 - PG_EPOCH_US).to_be_bytes());
        match r.value {
            Some(v) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        out.extend_from_slice(&2i32.to_be_bytes());
        out.extend_from_slice(&0i16.to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("hydrowatch-bench-storage-{}", std::process::id()));
    let db_name = format!("hw_bench_storage_{}", std::process::id());
    let admin_url = "postgres://postgres@127.0.0.1:5432/postgres";
    let url = match args.backend.as_str() {
        "postgres" => {
            let admin = sqlx::PgPool::connect(admin_url)
                .await
                .expect("local PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
                .execute(&admin)
                .await
                .expect("CREATE DATABASE");
            admin.close().await;
            format!("postgres://postgres@127.0.0.1:5432/{db_name}")
        }
        "sqlite" => format!("sqlite://{}", dir.join("bench.db").display()),
        other => panic!("--backend postgres|sqlite, not {other}"),
    };
    let pairs = vec![("HYDROWATCH_STORAGE__URL".to_owned(), url.clone())];
    let loaded = hydrowatch::config::load(None, &pairs).expect("demo config");
    let (store, ids) = hydrowatch::app::open_storage(&loaded)
        .await
        .expect("storage");
    let rig = EquipmentId::parse("rig-1").unwrap();
    let mut sensors: Vec<(String, i64)> = ids
        .sensors
        .iter()
        // The rig's 17 sensors (not the PLC's cycle timer).
        .filter(|((e, s), _)| {
            *e == rig && s.as_str() != hydrowatch_protocols::modbus::CYCLE_TIMER_SENSOR
        })
        .map(|((_, s), id)| (s.to_string(), *id))
        .collect();
    sensors.sort();
    let sensor_ids: Vec<i64> = sensors.iter().map(|(_, id)| *id).collect();
    assert_eq!(sensor_ids.len(), SENSORS);

    let total = (args.days * 86_400.0) as usize * SENSORS;
    let day = 86_400_000i64;
    // End a minute ago, so the newest data is "now" for the queries.
    let seconds = (total / SENSORS) as i64;
    let t0 = (now_ms() - 60_000) / 1000 * 1000 - seconds * 1000;
    println!(
        "backend {} | {} sensors × {:.1} days at 1 Hz = {} samples | batches of {}",
        args.backend, SENSORS, args.days, total, args.batch_rows
    );

    // 1. The store's write path.
    let mut batch = Vec::with_capacity(args.batch_rows);
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        batch.clear();
        let end = (n + args.batch_rows).min(total);
        batch.extend((n..end).map(|i| sample(&sensor_ids, t0, i)));
        let t = Instant::now();
        let w = store.write(&batch).await.expect("batch written");
        latencies.push(t.elapsed());
        assert_eq!(w.inserted as usize, batch.len());
        n = end;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "store write path: {:.0} samples/s ({:.1} s) | batch p50 {} p99 {} max {}",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
    let stats = store.layout_stats("sample_blocks").await.expect("stats");
    println!(
        "stored: {} blocks, {:.1} MiB ({:.1} bytes/sample, indexes included)",
        stats.rows,
        stats.bytes as f64 / 1048576.0,
        stats.bytes as f64 / total as f64
    );

    // 2. Writing a batch again: every sample found to be a duplicate.
    batch.clear();
    batch.extend((0..args.batch_rows.min(total)).map(|i| sample(&sensor_ids, t0, i)));
    let t = Instant::now();
    let w = store.write(&batch).await.expect("rewrite");
    println!(
        "a batch of {} written again: {} duplicates in {}",
        batch.len(),
        w.duplicates,
        ms(t.elapsed())
    );

    // 3. The ceiling: raw binary COPY of the same samples as rows.
    if let Store::Postgres(pg) = &store {
        sqlx::query(
            "CREATE TABLE bench_rows (sensor_id int8, ts timestamptz, value float8, quality int2)",
        )
        .execute(&pg.pool)
        .await
        .unwrap();
        let started = Instant::now();
        let mut n = 0;
        while n < total {
            let end = (n + args.batch_rows).min(total);
            let rows: Vec<StoredSample> = (n..end).map(|i| sample(&sensor_ids, t0, i)).collect();
            let mut conn = pg.pool.acquire().await.unwrap();
            let mut copy = conn
                .copy_in_raw("COPY bench_rows FROM STDIN (FORMAT binary)")
                .await
                .unwrap();
            copy.send(copy_rows(&rows)).await.unwrap();
            copy.finish().await.unwrap();
            n = end;
        }
        let elapsed = started.elapsed();
        let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('bench_rows')")
            .fetch_one(&pg.pool)
            .await
            .unwrap();
        println!(
            "raw COPY as rows (no index, no dedup, no rollups): {:.0} samples/s ({:.1} s), {:.1} MiB",
            total as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            bytes as f64 / 1048576.0
        );
        sqlx::query("DROP TABLE bench_rows")
            .execute(&pg.pool)
            .await
            .unwrap();
    }

    // 4. Chart queries: 17 sensors, 1000 points, ending now.
    let end = t0 + seconds * 1000;
    let mut ranges = vec![("1 h", 3_600_000i64), ("24 h", day)];
    if args.days >= 7.0 {
        ranges.push(("7 d", 7 * day));
    }
    if args.days >= 30.0 {
        ranges.push(("30 d", 30 * day));
    }
    for (name, range) in ranges {
        let mut times = Vec::new();
        let mut level = None;
        let mut points = 0;
        for _ in 0..args.query_repeats {
            let t = Instant::now();
            let series = store
                .series(&sensor_ids, end - range, end, 1000)
                .await
                .expect("series");
            times.push(t.elapsed());
            level = Some(series.level);
            points = series.points.iter().map(Vec::len).sum();
        }
        times.sort();
        println!(
            "series {name} × 17 sensors, max 1000 points: level {:?}, {points} points | p50 {} p99 {}",
            level.unwrap(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
    for (name, range) in [("24h", day), ("30d", 30 * day)] {
        let mut times = Vec::new();
        for _ in 0..args.query_repeats {
            let t = Instant::now();
            store.stats(&sensor_ids, end, range).await.expect("stats");
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "stats {name} × 17 sensors: p50 {} p99 {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }

    store.close().await;
    if args.backend == "postgres" {
        let admin = sqlx::PgPool::connect(admin_url).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
