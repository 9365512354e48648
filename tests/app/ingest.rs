//! `POST /api/v1/ingest` over real HTTP against a running application: rows
//! validated one by one, invalid ones quarantined with their reasons, valid
//! ones stored (units converted) and shown live, batch ids idempotent, limits
//! enforced, and a PostgreSQL outage survived without loss.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::{eventually, Client, Proxy, Reply, TestApp, TestDatabase};
use hydrowatch::App;
use hydrowatch_actors::clock::now_ms;
use hydrowatch_models::{EquipmentId, SensorId};

fn sensor_id(app: &App, equipment: &str, sensor: &str) -> i64 {
    app.state.sensor_ids[&EquipmentId::parse(equipment).unwrap()][&SensorId::parse(sensor).unwrap()]
}

/// Posts `body` with `content_type` to `/api/v1/ingest` as `engineer`; the
/// answer is JSON whatever the status.
async fn post(
    engineer: &Client,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = engineer
        .request(reqwest::Method::POST, "/api/v1/ingest")
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let reply = common::send(request).await;
    assert!(!reply.body.is_null(), "JSON answer: {}", reply.text);
    reply
}

async fn post_json(engineer: &Client, body: &Value) -> Reply {
    post(engineer, "application/json", body.to_string(), &[]).await
}

/// The stored value of one sensor at one instant.
async fn stored_value(app: &App, sensor: i64, ts_ms: i64) -> Option<f64> {
    let rows = app
        .state
        .store
        .read_samples(&[sensor], ts_ms, ts_ms + 1)
        .await
        .expect("read back");
    rows.first().and_then(|s| s.value)
}

/// The codes of a response's errors by row.
fn codes(body: &Value) -> Vec<(u64, String)> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every validation rule, on the backend `app` runs on.
async fn validation_contract(app: &TestApp) {
    let engineer = app.engineer().await;
    let admin = app.admin().await;
    let t = now_ms() / 1000 * 1000 - 3_600_000;
    let rfc = |ms: i64| hydrowatch::instant::format_instant(ms);
    let batch = json!({
        "batch_id": "contract-1",
        "rows": [
            {"equipment": "rig-1", "sensor": "PS1", "ts": t, "value": 151.5},
            {"equipment": "rig-1", "sensor": "PS2", "ts": rfc(t), "value": 1450.38, "unit": "psi"},
            {"equipment": "rig-1", "sensor": "TS1", "ts": t, "value": 104.0, "unit": "°F"},
            {"equipment": "rig-1", "sensor": "PS1", "ts": t, "value": 1.0},
            {"equipment": "rig-9", "sensor": "PS1", "ts": t, "value": 1.0},
            {"equipment": "rig-1", "sensor": "PS9", "ts": t, "value": 1.0},
            {"equipment": "rig-1", "sensor": "PS3", "ts": "yesterday", "value": 1.0},
            {"equipment": "rig-1", "sensor": "PS3", "ts": now_ms() + 3_600_000, "value": 1.0},
            {"equipment": "rig-1", "sensor": "PS3", "ts": 0, "value": 1.0},
            {"equipment": "rig-1", "sensor": "PS3", "ts": t, "value": "abc"},
            {"equipment": "rig-1", "sensor": "PS3", "ts": t, "value": "NaN"},
            {"equipment": "rig-1", "sensor": "PS3", "ts": t, "value": 1.0, "unit": "furlong"},
            {"equipment": "rig-1", "sensor": "PS3", "ts": t, "value": 1.0, "unit": "°C"},
            {"equipment": "rig-1", "sensor": "PS3", "ts": t},
            42
        ]
    });
    let Reply { status, body, .. } = post_json(&engineer, &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["accepted"], &body["quarantined"], &body["duplicates"]),
        (&json!(3), &json!(11), &json!(1)),
        "{body}"
    );
    assert_eq!(body["durability"], "committed");
    let want: Vec<(u64, String)> = [
        (4, "unknown_equipment"),
        (5, "unknown_sensor"),
        (6, "invalid_timestamp"),
        (7, "future_timestamp"),
        (8, "too_old"),
        (9, "invalid_value"),
        (10, "non_finite_value"),
        (11, "unknown_unit"),
        (12, "incompatible_unit"),
        (13, "missing_field"),
        (14, "malformed_row"),
    ]
    .into_iter()
    .map(|(r, c)| (r, c.to_owned()))
    .collect();
    assert_eq!(codes(&body), want);

    // Stored in the sensor's unit; the first of two values for an instant stays.
    let ps1 = stored_value(app, sensor_id(app, "rig-1", "PS1"), t).await;
    assert_eq!(ps1, Some(151.5));
    let ps2 = stored_value(app, sensor_id(app, "rig-1", "PS2"), t)
        .await
        .unwrap();
    assert!((ps2 - 100.0).abs() < 1e-3, "{ps2} bar");
    let ts1 = stored_value(app, sensor_id(app, "rig-1", "TS1"), t)
        .await
        .unwrap();
    assert!((ts1 - 40.0).abs() < 1e-9, "{ts1} °C");

    // The quarantine keeps each row as sent, with its reason.
    let list = admin
        .get("/api/v1/admin/quarantine?batch_id=contract-1")
        .await
        .body;
    let rows = list["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 11);
    let row9 = rows.iter().find(|r| r["row"] == 9).unwrap();
    assert_eq!(
        (&row9["code"], &row9["value"], &row9["sensor"]),
        (&json!("invalid_value"), &json!("abc"), &json!("PS3"))
    );
    assert!(row9["reason"].as_str().unwrap().contains("not a number"));
    let row14 = rows.iter().find(|r| r["row"] == 14).unwrap();
    assert_eq!(row14["value"], "42");

    // The same batch again is answered, not applied: nothing more quarantined.
    let Reply {
        status,
        headers,
        body: again,
        ..
    } = post_json(&engineer, &batch).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, body);
    let list = admin
        .get("/api/v1/admin/quarantine?batch_id=contract-1")
        .await
        .body;
    assert_eq!(list["rows"].as_array().unwrap().len(), 11);
    // The same id for another request is a conflict, not that request's answer.
    let other = json!({"batch_id": "contract-1", "rows": [batch["rows"][0].clone()]});
    let Reply { status, body, .. } = post_json(&engineer, &other).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    // CSV, columns in any order, the batch id in a header; a short line is
    // malformed, a repeated row a duplicate.
    let csv = format!(
        "ts,value,sensor,equipment,unit\n{t1},2.5,PS4,rig-2,MPa\n{t1},3,PS4,rig-2,\n{t1},7\n{t1},9,EPS1,rig-2,kW\n",
        t1 = t + 1000
    );
    let Reply { status, body, .. } = post(
        &engineer,
        "text/csv; charset=utf-8",
        csv.clone(),
        &[("Idempotency-Key", "csv-1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["accepted"], &body["quarantined"], &body["duplicates"]),
        (&json!(2), &json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(codes(&body), vec![(2, "malformed_row".to_owned())]);
    let ps4 = stored_value(app, sensor_id(app, "rig-2", "PS4"), t + 1000).await;
    assert_eq!(ps4, Some(25.0));
    let eps1 = stored_value(app, sensor_id(app, "rig-2", "EPS1"), t + 1000).await;
    assert_eq!(eps1, Some(9000.0));
    let Reply { headers, .. } =
        post(&engineer, "text/csv", csv, &[("Idempotency-Key", "csv-1")]).await;
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn sqlite_ingest_validates_converts_quarantines_and_is_idempotent() {
    let app = TestApp::spawn().await;
    validation_contract(&app).await;
}

#[tokio::test]
async fn postgres_ingest_validates_converts_quarantines_and_is_idempotent() {
    let db = TestDatabase::create("ingest").await;
    let app = TestApp::start(common::demo_config(&[(
        "HYDROWATCH_STORAGE__URL",
        &db.url(),
    )]))
    .await;
    validation_contract(&app).await;
    let app = app.stop().await;
    app.state.store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn ingested_rows_show_live_but_backfill_and_future_rows_do_not() {
    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    let snapshot = async || viewer.get("/api/v1/equipment/rig-1").await.body;
    let value_of = |snap: &Value, sensor: &str| {
        snap["sensors"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["id"] == sensor))
            .and_then(|s| s["state"]["value"].as_f64())
    };
    // Live data first, then rig-1's connection stopped, so that only ingested
    // rows can change its picture.
    common::eventually(Duration::from_secs(10), "rig-1 polled", async || {
        value_of(&snapshot().await, "PS1").is_some()
    })
    .await;
    let stop = app
        .admin()
        .await
        .post("/api/v1/admin/actors/connections/rig-1/stop", json!({}))
        .await;
    assert!((200..300).contains(&stop.status), "{}", stop.status);
    let before = snapshot().await;
    let now = now_ms();
    let rows = json!([
        {"equipment": "rig-1", "sensor": "PS1", "ts": now - 3_600_000, "value": 99.25},
        {"equipment": "rig-1", "sensor": "PS2", "ts": now, "value": 12.75},
        {"equipment": "rig-1", "sensor": "PS3", "ts": now + 20_000, "value": 7.5},
    ]);
    let Reply { status, body, .. } = post_json(&engineer, &rows).await;
    assert_eq!((status, &body["accepted"]), (200, &json!(3)), "{body}");
    let snap = snapshot().await;
    assert_eq!(value_of(&snap, "PS2"), Some(12.75), "{snap}");
    assert_eq!(
        value_of(&snap, "PS1"),
        value_of(&before, "PS1"),
        "backfill is history"
    );
    assert_eq!(
        value_of(&snap, "PS3"),
        value_of(&before, "PS3"),
        "the future is not live yet"
    );
    // All three are stored.
    let ps3 = stored_value(&app, sensor_id(&app, "rig-1", "PS3"), now + 20_000).await;
    assert_eq!(ps3, Some(7.5));
}

#[tokio::test]
async fn limits_give_typed_errors() {
    let app = TestApp::start(common::demo_config(&[
        ("HYDROWATCH_INGEST__MAX_BODY_BYTES", "2048"),
        ("HYDROWATCH_INGEST__MAX_ROWS", "5"),
        ("HYDROWATCH_INGEST__RATE_PER_SEC", "0.01"),
        ("HYDROWATCH_INGEST__RATE_BURST", "8"),
    ]))
    .await;
    let engineer = app.engineer().await;
    let row = json!({"equipment": "rig-1", "sensor": "PS1", "ts": now_ms(), "value": 1.0});
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (
            "x".repeat(4096),
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            json!(vec![row.clone(); 6]).to_string(),
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            "a,b\n1,2\n".into(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            "{not json".into(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            json!({"rows": 5}).to_string(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            "equipment,sensor,value\n".into(),
            "text/csv",
            422,
            "invalid_request",
        ),
        (
            json!({"batch_id": "no spaces", "rows": []}).to_string(),
            "application/json",
            422,
            "invalid_request",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let Reply {
            status: got,
            body: answer,
            ..
        } = post(&engineer, content_type, body, &[]).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
    }
    // Those and this one make the burst of eight; the ninth waits.
    let Reply {
        status,
        body: answer,
        ..
    } = post_json(&engineer, &json!([row])).await;
    assert_eq!(status, 200, "{answer}");
    let Reply {
        status,
        headers,
        body: answer,
        ..
    } = post_json(&engineer, &json!([row])).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_mid_ingest_loses_no_acknowledged_row() {
    let db = TestDatabase::create("ingest_outage").await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::start(common::demo_config(&[
        ("HYDROWATCH_STORAGE__URL", &db.url_via(&proxy)),
        ("HYDROWATCH_STORAGE__FLUSH_INTERVAL_MS", "50"),
        ("HYDROWATCH_STORAGE__RETRY_INITIAL_MS", "50"),
        ("HYDROWATCH_STORAGE__RETRY_MAX_MS", "300"),
        ("HYDROWATCH_STORAGE__WRITE_TIMEOUT_MS", "2000"),
    ]))
    .await;
    // The database goes away below, and a session is looked up in it: the
    // break-glass token is the one credential checked without it.
    let ingester = app.break_glass();
    let sensor = sensor_id(&app, "rig-3", "FS1");
    let t0 = now_ms() / 1000 * 1000 - 7_200_000;
    let batch = |k: i64| {
        let rows: Vec<Value> = (0..100)
            .map(|i| json!({"equipment": "rig-3", "sensor": "FS1", "ts": t0 + (k * 100 + i) * 10, "value": (k * 100 + i) as f64}))
            .collect();
        json!({"batch_id": format!("outage-{k}"), "rows": rows})
    };
    let mut durability = Vec::new();
    for k in 0..30 {
        if k == 10 {
            proxy.cut();
        }
        if k == 20 {
            proxy.restore();
        }
        let Reply { status, body, .. } = post_json(&ingester, &batch(k)).await;
        assert!(status == 200 || status == 202, "{status} {body}");
        assert_eq!(body["accepted"], 100, "{body}");
        durability.push(body["durability"].as_str().unwrap().to_owned());
    }
    assert!(durability.iter().any(|d| d == "spooled"), "{durability:?}");
    assert!(
        durability.iter().any(|d| d == "committed"),
        "{durability:?}"
    );

    let direct = hydrowatch::store::Store::connect(&db.url()).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "every acknowledged row stored",
        async || {
            direct
                .read_samples(&[sensor], t0, t0 + 30_000)
                .await
                .map(|rows| rows.len() == 3000)
                .unwrap_or(false)
        },
    )
    .await;
    let rows = direct
        .read_samples(&[sensor], t0, t0 + 30_000)
        .await
        .unwrap();
    assert!(rows
        .iter()
        .enumerate()
        .all(|(n, s)| s.ts_ms == t0 + n as i64 * 10 && s.value == Some(n as f64)));
    // A client retrying a batch whose answer was lost stores nothing twice.
    let Reply { status, body, .. } = post_json(&ingester, &batch(15)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicates"]),
        (&json!(0), &json!(100)),
        "{body}"
    );
    assert_eq!(
        direct
            .read_samples(&[sensor], t0, t0 + 30_000)
            .await
            .unwrap()
            .len(),
        3000
    );

    let app = app.stop().await;
    app.state.store.close().await;
    direct.close().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_pushes_ingest_back_with_503() {
    let db = TestDatabase::create("ingest_pushback").await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::start(common::demo_config(&[
        ("HYDROWATCH_STORAGE__URL", &db.url_via(&proxy)),
        ("HYDROWATCH_STORAGE__FLUSH_INTERVAL_MS", "50"),
        ("HYDROWATCH_STORAGE__RETRY_INITIAL_MS", "50"),
        ("HYDROWATCH_STORAGE__RETRY_MAX_MS", "200"),
        ("HYDROWATCH_STORAGE__WRITE_TIMEOUT_MS", "1000"),
        ("HYDROWATCH_STORAGE__SPOOL_PUSHBACK_MIB", "0"),
    ]))
    .await;
    // The database goes away below, and a session is looked up in it: the
    // break-glass token is the one credential checked without it.
    let ingester = app.break_glass();
    proxy.cut();
    let row =
        json!([{"equipment": "rig-1", "sensor": "PS1", "ts": now_ms() - 60_000, "value": 1.0}]);
    // The polled samples fill the (zero-sized) spool allowance.
    let mut last = (0, Value::Null);
    eventually(Duration::from_secs(20), "ingest pushed back", async || {
        let Reply {
            status,
            headers,
            body,
            ..
        } = post_json(&ingester, &row).await;
        let pushed = status == 503 && headers.contains_key("retry-after");
        last = (status, body);
        pushed
    })
    .await;
    assert_eq!(
        last.1["error"]["code"], "storage_backpressure",
        "{}",
        last.1
    );
    proxy.restore();
    eventually(
        Duration::from_secs(30),
        "ingest accepted again",
        async || post_json(&ingester, &row).await.status == 200,
    )
    .await;
    let app = app.stop().await;
    app.state.store.close().await;
    db.drop_now().await;
}
