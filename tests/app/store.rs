//! The store against real databases: a fresh SQLite file and a fresh PostgreSQL
//! database per test.

use crate::common;

use common::{temp_dir, TestDatabase};
use hydrowatch::config::{self, Loaded};
use hydrowatch::store::{LayoutSettings, Store, StoreError, TimescaleMode};

/// Tables both backends have, in name order.
const SQLITE_TABLES: [&str; 24] = [
    "alert_events",
    "alert_notifications",
    "alert_rules",
    "alerts",
    "anomalies",
    "api_keys",
    "audit_log",
    "equipment",
    "escalation_policies",
    "ingest_batches",
    "mfa_backup_codes",
    "password_history",
    "quarantine",
    "refresh_tokens",
    "rollup_1d",
    "rollup_1h",
    "rollup_1m",
    "sample_blocks",
    "sensors",
    "sessions",
    "silences",
    "sites",
    "user_tokens",
    "users",
];

/// PostgreSQL without TimescaleDB adds its partition registry and the layout
/// record (partitions of `sample_blocks` are not listed).
const POSTGRES_TABLES: [&str; 26] = [
    "alert_events",
    "alert_notifications",
    "alert_rules",
    "alerts",
    "anomalies",
    "api_keys",
    "audit_log",
    "equipment",
    "escalation_policies",
    "hw_partitions",
    "ingest_batches",
    "mfa_backup_codes",
    "password_history",
    "quarantine",
    "refresh_tokens",
    "rollup_1d",
    "rollup_1h",
    "rollup_1m",
    "sample_blocks",
    "sensors",
    "sessions",
    "silences",
    "sites",
    "storage_layout",
    "user_tokens",
    "users",
];

fn demo() -> Loaded {
    config::load(None, &[]).expect("demo config")
}

async fn migrate_and_sync_twice(store: &Store) {
    let loaded = demo();
    store.migrate().await.expect("migrations from empty");
    let tables = store.tables().await.unwrap();
    match store {
        Store::Sqlite(_) => assert_eq!(tables, SQLITE_TABLES),
        // The rollups are TimescaleDB's continuous aggregates (views), not tables.
        Store::Postgres(pg) if pg.layout.timescale() => {
            let without_rollups: Vec<&str> = POSTGRES_TABLES
                .into_iter()
                .filter(|t| !t.starts_with("rollup_"))
                .collect();
            assert_eq!(tables, without_rollups);
            let views: Vec<String> = sqlx::query_scalar(
                "SELECT view_name::text FROM timescaledb_information.continuous_aggregates \
                 ORDER BY 1",
            )
            .fetch_all(&pg.pool)
            .await
            .unwrap();
            assert_eq!(views, ["rollup_1d", "rollup_1h", "rollup_1m"]);
        }
        Store::Postgres(_) => assert_eq!(tables, POSTGRES_TABLES),
    }
    let site = &loaded.plant.site;
    let periods = loaded.plant.poll_periods_ms();
    let sync = || store.sync_plant(&site.id, &site.name, &loaded.plant.equipment, &periods);
    let first = sync().await.expect("plant recorded");
    assert_eq!(first.sensors.len(), 54);
    // Both idempotent: same ids the second time.
    store.migrate().await.expect("migrations again");
    let second = sync().await.unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode_and_migrated() {
    let dir = temp_dir("store");
    let path = dir.join("nested/hydrowatch.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("sqlite opens");
    assert!(path.exists(), "file and directory created on first use");
    migrate_and_sync_twice(&store).await;
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite expected")
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let _ = std::fs::remove_dir_all(dir);
}

/// Migrates a fresh PostgreSQL database laid out per `layout` twice; returns
/// the layout it got.
async fn postgres_migrated_from_empty(layout: LayoutSettings) -> String {
    let db = TestDatabase::create("store").await;
    let store = Store::connect_with(&db.url(), layout).await.unwrap();
    migrate_and_sync_twice(&store).await;
    let got = store.layout_stats("sample_blocks").await.unwrap().layout;
    store.close().await;
    db.drop_now().await;
    got
}

#[tokio::test]
async fn postgres_database_is_migrated_from_empty_with_native_partitions() {
    let layout = LayoutSettings {
        timescale: TimescaleMode::Off,
        ..LayoutSettings::default()
    };
    assert_eq!(postgres_migrated_from_empty(layout).await, "native");
}

#[tokio::test]
async fn postgres_database_is_migrated_from_empty_with_timescaledb() {
    let got = postgres_migrated_from_empty(LayoutSettings::default()).await;
    assert_eq!(got, "timescaledb", "scripts/test installs TimescaleDB");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err();
    assert!(matches!(err, StoreError::Url(_)), "{err}");
}

/// A database migrated by the first schema only, holding samples in the old
/// one-row-per-sample table.
async fn legacy_database(store: &Store, backend: &str) -> Vec<i64> {
    let dir = temp_dir("legacy-migrations");
    std::fs::create_dir_all(&dir).unwrap();
    let source = format!("{}/store/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("0001")
        {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let first = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    match store {
        Store::Sqlite(pool) => first.run(pool).await.unwrap(),
        Store::Postgres(pg) => first.run(&pg.pool).await.unwrap(),
    }
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = demo();
    let site = &loaded.plant.site;
    let ids = store
        .sync_plant(
            &site.id,
            &site.name,
            &loaded.plant.equipment,
            &loaded.plant.poll_periods_ms(),
        )
        .await
        .unwrap();
    let mut sensors: Vec<i64> = ids.sensors.values().copied().collect();
    sensors.sort();
    // Three samples: good, a gap (bad, no value), uncertain.
    let rows = [
        (sensors[0], 1_700_000_000_000i64, Some(1.5), 0i16),
        (sensors[0], 1_700_000_001_000, None, 2),
        (sensors[1], 1_700_000_000_500, Some(-2.0), 1),
    ];
    for (sensor, ts, value, quality) in rows {
        match store {
            Store::Sqlite(pool) => {
                sqlx::query("INSERT INTO samples VALUES (?, ?, ?, ?)")
                    .bind(sensor)
                    .bind(ts)
                    .bind(value)
                    .bind(quality)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Store::Postgres(pg) => {
                sqlx::query(
                    "INSERT INTO samples VALUES ($1, timestamptz 'epoch' + $2 * interval '1 millisecond', $3, $4)",
                )
                .bind(sensor)
                .bind(ts)
                .bind(value)
                .bind(quality)
                .execute(&pg.pool)
                .await
                .unwrap();
            }
        }
    }
    sensors
}

async fn legacy_samples_survive_the_block_migration(store: &Store, backend: &str) {
    let sensors = legacy_database(store, backend).await;
    store.migrate().await.expect("migrated to blocks");
    let got = store
        .read_samples(&sensors[..2], 1_699_999_999_000, 1_700_000_002_000)
        .await
        .unwrap();
    let got: Vec<(i64, i64, Option<f64>, hydrowatch_models::Quality)> = got
        .into_iter()
        .map(|s| (s.sensor, s.ts_ms, s.value, s.quality))
        .collect();
    use hydrowatch_models::Quality::*;
    assert_eq!(
        got,
        vec![
            (sensors[0], 1_700_000_000_000, Some(1.5), Good),
            (sensors[0], 1_700_000_001_000, None, Bad),
            (sensors[1], 1_700_000_000_500, Some(-2.0), Uncertain),
        ]
    );
    let tables = store.tables().await.unwrap();
    assert!(
        !tables.iter().any(|t| t.starts_with("samples")),
        "{tables:?}"
    );
}

#[tokio::test]
async fn sqlite_samples_of_the_row_layout_are_kept_as_blocks() {
    let dir = temp_dir("legacy");
    let store = Store::connect(&format!("sqlite://{}", dir.join("hw.db").display()))
        .await
        .unwrap();
    legacy_samples_survive_the_block_migration(&store, "sqlite").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_samples_of_the_row_layout_are_kept_as_blocks() {
    let db = common::TestDatabase::create("legacy").await;
    let store = Store::connect(&db.url()).await.unwrap();
    legacy_samples_survive_the_block_migration(&store, "postgres").await;
    store.close().await;
    db.drop_now().await;
}
