//! Samples reach the database, exactly once, whatever happens to it: the store's
//! write path on both backends, the storage writer through a PostgreSQL outage,
//! and the whole process killed with SIGKILL while samples sit in its spool.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use tokio::sync::oneshot;

use common::{eventually, open_storage, temp_dir, Proxy, TestApp, TestDatabase};
use hydrowatch::store::{PlantIds, Store};
use hydrowatch_actors::storage::{
    decode_into, Durability, SampleStore, Spool, StorageState, StorageStatus, StorageWriter,
    StoredSample, WriterArgs, WriterConfig, WriterMsg,
};
use hydrowatch_actors::Address;
use hydrowatch_models::Quality;

const POSTGRES: &str = "127.0.0.1:5432";

fn sample(sensor: i64, ts_ms: i64, value: f64) -> StoredSample {
    StoredSample {
        sensor,
        ts_ms,
        value: Some(value),
        quality: Quality::Good,
    }
}

/// Every stored sample: (sensor, ts_ms) → (value, quality), read back
/// through the store's own read path.
async fn stored(store: &Store) -> BTreeMap<(i64, i64), (Option<f64>, i16)> {
    let sql = "SELECT DISTINCT sensor_id FROM sample_blocks";
    let sensors: Vec<i64> = match store {
        Store::Postgres(pg) => sqlx::query_scalar(sql).fetch_all(&pg.pool).await,
        Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .unwrap_or_default();
    if sensors.is_empty() {
        // Also while the table does not exist yet.
        return BTreeMap::new();
    }
    store
        .read_samples(&sensors, 0, 4_000_000_000_000)
        .await
        .expect("samples read back")
        .into_iter()
        .map(|s| {
            let quality = hydrowatch::store::blocks::quality_code(s.quality);
            ((s.sensor, s.ts_ms), (s.value, quality))
        })
        .collect()
}

/// Stored samples (0 while the table does not exist yet).
async fn count(store: &Store) -> usize {
    stored(store).await.len()
}

/// The write path's contract, on either backend: all rows or none, gaps kept,
/// duplicates (within a batch and against stored rows) counted and the first
/// value kept.
async fn write_contract(store: &Store, ids: &PlantIds) {
    let mut sensors: Vec<i64> = ids.sensors.values().copied().collect();
    sensors.sort();
    let t0 = 1_700_000_000_000;
    let mut first: Vec<StoredSample> = (0..1000)
        .map(|i| sample(sensors[i % 17], t0 + i as i64, i as f64))
        .collect();
    first[5].value = None;
    first[5].quality = Quality::Bad;
    let w = store.write(&first).await.expect("first batch");
    assert_eq!((w.inserted, w.duplicates), (1000, 0));

    // Half of it again with other values, plus new rows and a duplicate within
    // the batch: the stored (first) values stay.
    let mut second: Vec<StoredSample> = (500..1500)
        .map(|i| sample(sensors[i % 17], t0 + i as i64, -(i as f64)))
        .collect();
    second.push(sample(sensors[1400 % 17], t0 + 1400, 99.0));
    let w = store.write(&second).await.expect("overlapping batch");
    assert_eq!(
        (w.inserted, w.duplicates),
        (500, 501),
        "{}",
        store.backend()
    );

    let rows = stored(store).await;
    assert_eq!(rows.len(), 1500);
    assert_eq!(
        rows[&(sensors[5], t0 + 5)],
        (None, 2),
        "a gap is stored as one"
    );
    assert_eq!(rows[&(sensors[600 % 17], t0 + 600)].0, Some(600.0));
    assert_eq!(rows[&(sensors[1400 % 17], t0 + 1400)].0, Some(-1400.0));

    // Rows of a sensor the database does not know are refused for good, and
    // atomically: nothing of the batch is stored.
    let bad = vec![sample(sensors[0], t0 + 5000, 1.0), sample(999_999, t0, 1.0)];
    let err = store.write(&bad).await.unwrap_err();
    assert!(
        matches!(err, hydrowatch_actors::storage::StoreFailure::Rejected(_)),
        "{err:?}"
    );
    assert_eq!(count(store).await, 1500);
}

#[tokio::test]
async fn sqlite_writes_are_atomic_and_the_first_value_wins() {
    let dir = temp_dir("sqlite-write");
    let (store, ids) =
        open_storage(&format!("sqlite://{}", dir.join("hw.db").display()), &[]).await;
    write_contract(&store, &ids).await;
}

#[tokio::test]
async fn postgres_copy_writes_are_atomic_and_the_first_value_wins() {
    let db = TestDatabase::create("write").await;
    let (store, ids) = open_storage(&db.url(), &[]).await;
    write_contract(&store, &ids).await;
    store.close().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_mid_ingest_loses_nothing_and_stores_nothing_twice() {
    hydrowatch::telemetry::init_logging(hydrowatch::config::LogFormat::Text, "warn");
    let db = TestDatabase::create("outage").await;
    let proxy = Proxy::start(POSTGRES.parse().unwrap()).await;
    let (store, ids) = open_storage(&db.url_via(&proxy), &[]).await;
    let direct = Store::connect(&db.url()).await.unwrap();
    let mut sensors: Vec<i64> = ids.sensors.values().copied().collect();
    sensors.sort();

    let dir = temp_dir("outage");
    let status = Arc::new(StorageStatus::default());
    let address = Address::<WriterMsg>::new();
    let (_writer, handle) = Actor::spawn(
        None,
        StorageWriter,
        WriterArgs {
            config: Arc::new(WriterConfig {
                batch_rows: 400,
                flush_interval: Duration::from_millis(20),
                max_buffered_rows: 2000,
                spool_path: dir.join("samples.spool"),
                spool_pushback_bytes: u64::MAX,
                retry_initial: Duration::from_millis(50),
                retry_max: Duration::from_millis(400),
                write_timeout: Duration::from_secs(3),
            }),
            store: Arc::new(store.clone()),
            status: status.clone(),
            address: address.clone(),
        },
    )
    .await
    .expect("writer starts");

    // 60 messages of 100 rows, 15 ms apart; the database goes away after the
    // 20th and comes back after the 40th.
    let t0 = 1_750_000_000_000i64;
    let mut sent = Vec::new();
    let mut acks = Vec::new();
    for m in 0..60i64 {
        if m == 20 {
            proxy.cut();
        }
        if m == 40 {
            proxy.restore();
        }
        let rows: Vec<StoredSample> = (0..100i64)
            .map(|j| {
                let n = m * 100 + j;
                sample(sensors[(n % 17) as usize], t0 + n, n as f64 * 0.5)
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        address
            .cast(WriterMsg::Rows {
                rows: rows.clone(),
                ack: Some(tx),
            })
            .expect("writer running");
        sent.push(rows);
        acks.push(rx);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut committed = 0;
    let mut spooled = 0;
    for ack in acks {
        match tokio::time::timeout(Duration::from_secs(30), ack)
            .await
            .expect("acknowledged in time")
            .expect("ack sent")
        {
            Durability::Committed(_) => committed += 1,
            Durability::Spooled => spooled += 1,
            other => panic!("not durable: {other:?}"),
        }
    }
    assert!(
        committed > 0 && spooled > 0,
        "{committed} committed, {spooled} spooled"
    );

    eventually(Duration::from_secs(30), "spool replayed", async || {
        let r = status.report();
        let done = r.spool_records == 0 && r.state == StorageState::Ok;
        if !done {
            eprintln!("{r:?}");
        }
        done
    })
    .await;
    let report = status.report();
    assert!(report.replayed_rows > 0, "{report:?}");
    assert_eq!(report.dropped_rows, 0);

    let rows = stored(&direct).await;
    let expected: BTreeMap<(i64, i64), (Option<f64>, i16)> = sent
        .iter()
        .flatten()
        .map(|s| ((s.sensor, s.ts_ms), (s.value, 0)))
        .collect();
    assert_eq!(rows.len(), 6000, "every acknowledged sample, once");
    assert!(rows == expected, "stored values differ from those sent");

    // A client retrying a batch that was stored stores nothing twice.
    let (tx, rx) = oneshot::channel();
    address
        .cast(WriterMsg::Rows {
            rows: sent[25].clone(),
            ack: Some(tx),
        })
        .unwrap();
    assert_eq!(
        rx.await.unwrap(),
        Durability::Committed(hydrowatch_actors::storage::Written {
            inserted: 0,
            duplicates: 100
        })
    );
    assert_eq!(count(&direct).await, 6000);

    _writer.stop(None);
    let _ = handle.await;
    store.close().await;
    direct.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn polled_samples_reach_the_embedded_database() {
    let app = TestApp::start(common::demo_config(&[(
        "HYDROWATCH_STORAGE__FLUSH_INTERVAL_MS",
        "50",
    )]))
    .await;
    let store = app.state.store.clone();
    // Three rigs of 17 sensors at 1 Hz: two polls each is 102 rows.
    eventually(Duration::from_secs(10), "two polls stored", async || {
        count(&store).await >= 102
    })
    .await;
    let rows = stored(&store).await;
    let good = rows
        .values()
        .filter(|(v, q)| *q == 0 && v.is_some())
        .count();
    assert!(good >= 100, "{good} good samples of {}", rows.len());
    let body = app.anonymous().get("/health/ready").await.body;
    assert_eq!(body["storage"]["backend"], "sqlite");
    assert_eq!(body["storage"]["state"], "ok");
    assert!(body["storage"]["rows_written"].as_u64().unwrap() >= 102);
    app.stop().await;
}

/// The spool as a killed process left it: every sample in it.
fn spooled_samples(path: &std::path::Path) -> Vec<StoredSample> {
    // Work on a copy: opening cuts a torn tail, and the original is the
    // restarted process's to recover.
    let copy = path.with_extension("copy");
    std::fs::copy(path, &copy).expect("spool exists");
    let (mut spool, _) = Spool::open(&copy).unwrap();
    let mut rows = Vec::new();
    spool
        .replay(|record| decode_into(record, &mut rows))
        .expect("spool decodes");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_in_the_spool_of_a_killed_process_are_stored_after_restart() {
    use std::process::{Command, Stdio};

    let db = TestDatabase::create("sigkill").await;
    let proxy = Proxy::start(POSTGRES.parse().unwrap()).await;
    let direct = Store::connect(&db.url()).await.unwrap();
    let dir = temp_dir("sigkill");
    let spool = dir.join("spool/samples.spool");
    let serve = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hydrowatch"));
        for (k, _) in std::env::vars() {
            if k.starts_with("HYDROWATCH_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("HYDROWATCH_SERVER__LISTEN", "127.0.0.1:0")
            .env("HYDROWATCH_STORAGE__URL", db.url_via(&proxy))
            .env("HYDROWATCH_STORAGE__SPOOL_DIR", dir.join("spool"))
            .env("HYDROWATCH_STORAGE__FLUSH_INTERVAL_MS", "100")
            .env("HYDROWATCH_STORAGE__RETRY_INITIAL_MS", "100")
            .env("HYDROWATCH_STORAGE__RETRY_MAX_MS", "300")
            .env("HYDROWATCH_STORAGE__WRITE_TIMEOUT_MS", "2000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts")
    };

    let mut first = serve();
    eventually(Duration::from_secs(30), "samples stored", async || {
        count(&direct).await > 0
    })
    .await;
    proxy.cut();
    // At 3 × 17 samples a second, a few seconds of outage spool a few batches.
    eventually(Duration::from_secs(30), "samples spooled", async || {
        std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0) > 3 * 51 * 25
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let spooled = spooled_samples(&spool);
    assert!(spooled.len() >= 3 * 51, "{} samples spooled", spooled.len());

    proxy.restore();
    let mut second = serve();
    eventually(
        Duration::from_secs(30),
        "spool replayed after restart",
        async || {
            let rows = stored(&direct).await;
            spooled.iter().all(|s| {
                rows.get(&(s.sensor, s.ts_ms))
                    .is_some_and(|(v, _)| *v == s.value)
            })
        },
    )
    .await;
    eventually(Duration::from_secs(10), "spool emptied", async || {
        std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(1) == 0
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    direct.close().await;
    db.drop_now().await;
}
