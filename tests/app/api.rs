//! Black-box tests of the HTTP and WebSocket API over real sockets, against the
//! demo plant with its Modbus simulators on loopback.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;

use common::{demo_config, sensor_state, TestApp};

const RIGS: [&str; 3] = ["rig-1", "rig-2", "rig-3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_delivers_changing_values_for_every_rig_within_5_s() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(&app.viewer().await).await;
    let hello = ws.next_json(Duration::from_secs(2)).await.expect("hello");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], 1);
    ws.send_json(json!({"type": "subscribe", "equipment": RIGS}))
        .await;

    // Every rig: a snapshot first, then values that change, all within 5 s.
    let mut first_seen: HashMap<String, f64> = HashMap::new();
    let mut changed: HashSet<String> = HashSet::new();
    let mut snapshots: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while changed.len() < RIGS.len() {
        let left = deadline
            .checked_duration_since(tokio::time::Instant::now())
            .unwrap_or_else(|| {
                panic!("only {changed:?} changed within 5 s; snapshots {snapshots:?}")
            });
        let Some(frame) = ws.next_json(left).await else {
            panic!("no frame; changed so far: {changed:?}")
        };
        let kind = frame["type"].as_str().unwrap_or_default();
        let Some(rig) = frame["equipment"].as_str().map(str::to_owned) else {
            continue;
        };
        match kind {
            "snapshot" => {
                assert_eq!(
                    frame["snapshot"]["sensors"].as_array().map(Vec::len),
                    Some(18)
                );
                snapshots.insert(rig.clone());
            }
            "delta" => assert!(snapshots.contains(&rig), "delta before snapshot for {rig}"),
            _ => continue,
        }
        if let Some(state) = sensor_state(&frame, "PS1") {
            if state["quality"] != "good" {
                continue;
            }
            let v = state["value"].as_f64().expect("good value is a number");
            match first_seen.get(&rig) {
                None => {
                    first_seen.insert(rig, v);
                }
                Some(&old) if old != v => {
                    changed.insert(rig);
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_get_typed_errors_and_the_session_goes_on() {
    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let mut ws = app.ws(&viewer).await;
    ws.next_of("hello", Duration::from_secs(2))
        .await
        .expect("hello");

    for garbage in [
        "not json at all",
        "{\"type\":\"subscribe\"}",
        "{\"type\":\"explode\"}",
        "[1,2,3]",
        "{\"type\":\"subscribe\",\"equipment\":[\"rig-1\"],\"extra\":1}",
        "\u{0}\u{1}",
    ] {
        ws.send_text(garbage).await;
        let err = ws
            .next_of("error", Duration::from_secs(2))
            .await
            .expect("error frame");
        assert_eq!(err["error"]["code"], "invalid_frame", "for {garbage:?}");
        assert!(err["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Unknown equipment is named.
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-99", "rig-1"]}))
        .await;
    let err = ws
        .next_of("error", Duration::from_secs(2))
        .await
        .expect("error frame");
    assert_eq!(err["error"]["code"], "unknown_equipment");
    assert_eq!(err["error"]["details"]["equipment"], json!(["rig-99"]));
    // The valid part of the request still works, and so does the session.
    let snap = ws
        .next_of("snapshot", Duration::from_secs(3))
        .await
        .expect("snapshot");
    assert_eq!(snap["equipment"], "rig-1");
    ws.send_json(json!({"type": "ping"})).await;
    ws.next_of("pong", Duration::from_secs(2))
        .await
        .expect("pong");

    // The server is unaffected: a new client works.
    let mut other = app.ws(&viewer).await;
    other
        .send_json(json!({"type": "subscribe", "equipment": ["rig-2"]}))
        .await;
    other
        .next_of("snapshot", Duration::from_secs(3))
        .await
        .expect("snapshot for a new client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_the_stream() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(&app.viewer().await).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1"]}))
        .await;
    ws.next_of("snapshot", Duration::from_secs(3))
        .await
        .expect("snapshot");
    ws.send_json(json!({"type": "unsubscribe", "equipment": ["rig-1"]}))
        .await;
    let ack = loop {
        let f = ws.next_json(Duration::from_secs(2)).await.expect("frame");
        if f["type"] == "subscribed" && f["equipment"] == json!([]) {
            break f;
        }
    };
    assert_eq!(ack["equipment"], json!([]));
    // Nothing more for rig-1 (polls run every second).
    let next = ws.next_json(Duration::from_millis(2500)).await;
    assert!(
        next.is_none(),
        "unexpected frame after unsubscribe: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_reads_live_state_and_errors_have_one_shape() {
    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let list = viewer.get("/api/v1/equipment").await.body;
    let ids: Vec<&str> = list["equipment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, RIGS);

    let snap = viewer.get("/api/v1/equipment/rig-2").await.body;
    assert_eq!(snap["id"], "rig-2");
    let sensors = snap["sensors"].as_array().unwrap();
    assert_eq!(sensors.len(), 18);
    let ts1 = sensors.iter().find(|s| s["id"] == "TS1").unwrap();
    assert_eq!(ts1["unit"], "°C");
    assert_eq!(ts1["state"]["quality"], "good");

    for (path, status, code) in [
        ("/api/v1/equipment/rig-42", 404, "not_found"),
        ("/api/v1/equipment/bad%20id", 404, "not_found"),
        ("/api/v1/nothing-here", 404, "not_found"),
    ] {
        let resp = viewer.get(path).await;
        assert_eq!(resp.status, status, "{path}");
        let body = resp.body;
        assert_eq!(body["error"]["code"], code, "{path}");
        assert!(body["error"]["message"].is_string());
    }

    let ready = viewer.get("/health/ready").await;
    assert_eq!(ready.status, 200);
    let ready = ready.body;
    assert_eq!(ready["actors_running"]["sensor"], 54);
    assert_eq!(ready["connections_up"], 3);

    let metrics = viewer.get("/metrics").await.text;
    for name in [
        "hydrowatch_samples_polled_total",
        "hydrowatch_samples_processed_total",
        "hydrowatch_actors_running",
        "hydrowatch_mailbox_depth_max",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }

    let doc = viewer.get("/api/v1/openapi.json").await.body;
    for path in [
        "/api/v1/equipment",
        "/api/v1/equipment/{id}",
        "/api/v1/ws",
        "/api/v1/admin/actors",
        "/health/ready",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    let docs = viewer.get("/api/v1/docs").await.text;
    assert!(
        docs.contains("/api/v1/openapi.json") && !docs.contains("https://"),
        "docs page must work offline"
    );
    let page = viewer.get("/").await.text;
    assert!(
        page.contains("CC BY 4.0"),
        "wallboard carries the data attribution"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_an_admin() {
    // No break-glass token configured: that token is nobody.
    let closed = TestApp::start(demo_config(&[("HYDROWATCH_AUTH__BREAK_GLASS_TOKEN", "")])).await;
    let resp = closed.break_glass().get("/api/v1/admin/actors").await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.body["error"]["code"], "invalid_token");

    let app = TestApp::spawn().await;
    let resp = app
        .client(Some("wrong-token-but-long-enough"))
        .get("/api/v1/admin/actors")
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.headers["www-authenticate"], "Bearer",
        "a 401 says how to authenticate"
    );
    let resp = app.anonymous().get("/api/v1/admin/actors").await;
    assert_eq!(resp.status, 401);
    // An engineer is signed in, but actors are the admins'.
    let resp = app.engineer().await.get("/api/v1/admin/actors").await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.body["error"]["code"], "forbidden");
    assert_eq!(resp.body["error"]["details"]["required"], "actors:manage");
    let admin = app.admin().await;
    let resp = admin.get("/api/v1/admin/actors").await;
    assert_eq!(resp.status, 200);

    let tree = resp.body;
    let paths: Vec<&str> = tree["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    for p in [
        "root",
        "plant",
        "plant/rig-1",
        "plant/rig-1/PS1",
        "connections/rig-3",
        "sessions",
    ] {
        assert!(paths.contains(&p), "tree lacks {p}: {paths:?}");
    }

    // Restart a sensor through the API.
    let actors = "/api/v1/admin/actors";
    let resp = admin
        .post(&format!("{actors}/plant/rig-1/TS2/restart"), json!({}))
        .await;
    assert_eq!(resp.status, 200);
    let body = resp.body;
    assert_eq!(body["actor"]["restart_count"], 1);
    assert_eq!(body["actor"]["status"], "running");
    // Percent-encoded paths work too; stop then start.
    let resp = admin
        .post(&format!("{actors}/plant%2Frig-2%2FFS1/stop"), json!({}))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body["actor"]["status"], "stopped");
    let resp = admin
        .post(&format!("{actors}/plant/rig-2/FS1/start"), json!({}))
        .await;
    assert_eq!(resp.status, 200);
    let resp = admin
        .post(&format!("{actors}/plant/rig-2/FS1/start"), json!({}))
        .await;
    assert_eq!(resp.status, 409, "already running");
    let resp = admin
        .post(&format!("{actors}/plant/rig-9/restart"), json!({}))
        .await;
    assert_eq!(resp.status, 404);
    let resp = admin
        .post(&format!("{actors}/plant/rig-1/explode"), json!({}))
        .await;
    assert_eq!(resp.status, 422);

    // Switch a simulated rig's condition.
    let resp = admin
        .put(
            "/api/v1/admin/simulators/rig-1/condition",
            json!({"condition": "pump_leakage"}),
        )
        .await;
    assert_eq!(resp.status, 200);
    let sims = admin.get("/api/v1/admin/simulators").await.body;
    let rig1 = sims
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["equipment"] == "rig-1")
        .unwrap();
    assert_eq!(rig1["condition"], "pump_leakage");
    let resp = admin
        .put(
            "/api/v1/admin/simulators/rig-1/condition",
            json!({"condition": "on_fire"}),
        )
        .await;
    assert_eq!(resp.status, 422);
    assert_eq!(resp.body["error"]["details"]["field"], "condition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_a_close_frame() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let mut ws = app.ws(&viewer).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1"]}))
        .await;
    ws.next_of("snapshot", Duration::from_secs(3))
        .await
        .expect("snapshot");
    let shutdown = tokio::spawn(app.stop());
    let close = ws.next_close(Duration::from_secs(5)).await;
    assert_eq!(close.code, CloseCode::Away);
    let app = shutdown.await.unwrap();
    assert!(
        app.state.tree.registry.cell("plant/rig-1").is_none(),
        "tree stopped"
    );
    assert!(
        viewer
            .request(reqwest::Method::GET, "/health/live")
            .send()
            .await
            .is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let app = TestApp::start(demo_config(&[
        ("HYDROWATCH_WEBSOCKET__PING_INTERVAL_SECS", "1"),
        ("HYDROWATCH_WEBSOCKET__IDLE_TIMEOUT_SECS", "2"),
    ]))
    .await;
    let mut ws = app.ws(&app.viewer().await).await;
    // Not reading means not answering pings: the server hears nothing.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let close = ws.next_close(Duration::from_secs(3)).await;
    assert_eq!(u16::from(close.code), 4000);
    assert_eq!(close.reason.as_str(), "idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_depths_return_to_zero_when_idle() {
    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let admin = app.admin().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut ws = app.ws(&viewer).await;
        ws.send_json(json!({"type": "subscribe", "equipment": RIGS}))
            .await;
        ws.next_of("snapshot", Duration::from_secs(3))
            .await
            .expect("snapshot");
        clients.push(ws);
    }
    // Between polls (1 s apart) every mailbox on the sample path is empty again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tree = admin.get("/api/v1/admin/actors").await.body;
        let busiest = tree["actors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["mailbox_depth"].as_u64())
            .max()
            .unwrap();
        if busiest == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mailbox depth stuck at {busiest}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_plain_requests_to_the_socket_get_the_error_shape() {
    use reqwest::Method;

    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let admin = app.admin().await;
    let cases = [
        (
            viewer.request(Method::POST, "/api/v1/equipment"),
            405,
            "method_not_allowed",
        ),
        (
            viewer.request(Method::DELETE, "/health/ready"),
            405,
            "method_not_allowed",
        ),
        (
            admin.request(Method::GET, "/api/v1/admin/actors/plant/rig-1/restart"),
            405,
            "method_not_allowed",
        ),
        (
            viewer.request(Method::GET, "/api/v1/ws"),
            400,
            "bad_request",
        ),
    ];
    for (request, status, code) in cases {
        let resp = common::send(request).await;
        assert_eq!(resp.status, status);
        assert!(resp.body.is_object(), "JSON error body: {}", resp.text);
        assert_eq!(resp.body["error"]["code"], code);
    }
}
