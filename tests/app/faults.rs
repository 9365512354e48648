//! Faults in the running product: devices dying, actors panicking, restart
//! intensity exceeded, the root giving up — each handled as `supervision.toml`
//! declares, over real sockets.

use crate::common;

use std::time::Duration;

use ractor::ActorRef;
use serde_json::json;

use hydrowatch::{App, Exit};
use hydrowatch_actors::plant::SensorMsg;
use hydrowatch_models::{Quality, SensorState};

use common::{demo_config, sensor_state, TestApp, WsClient};

async fn sensor_ref(app: &App, path: &str) -> ActorRef<SensorMsg> {
    for _ in 0..100 {
        if let Some(cell) = app.state.tree.registry.cell(path) {
            return ActorRef::from(cell);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} not running");
}

async fn sensor_get(app: &App, path: &str) -> SensorState {
    let sensor = sensor_ref(app, path).await;
    ractor::call_t!(sensor, SensorMsg::Get, 2000).expect("sensor answers")
}

async fn wait_until<F: Fn() -> bool>(what: &str, within: Duration, f: F) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Latest quality of PS1 per rig from a stream of frames.
async fn qualities_for(
    ws: &mut WsClient,
    within: Duration,
) -> std::collections::HashMap<String, (String, i64)> {
    let mut latest = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        let Some(frame) = ws.next_json(left).await else {
            break;
        };
        if let (Some(rig), Some(state)) = (frame["equipment"].as_str(), sensor_state(&frame, "PS1"))
        {
            latest.insert(
                rig.to_owned(),
                (
                    state["quality"].as_str().unwrap_or("").to_owned(),
                    state["ts_ms"].as_i64().unwrap_or(0),
                ),
            );
        }
    }
    latest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_turns_its_rig_bad_while_others_go_on_and_recovers() {
    let app = TestApp::spawn().await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    let mut ws = app.ws(&viewer).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1", "rig-2", "rig-3"]}))
        .await;
    let before = qualities_for(&mut ws, Duration::from_millis(2500)).await;
    for rig in ["rig-1", "rig-2", "rig-3"] {
        assert_eq!(
            before.get(rig).map(|q| q.0.as_str()),
            Some("good"),
            "{rig} good at first: {before:?}"
        );
    }

    // Power off rig-2's PLC.
    let resp = engineer
        .post("/api/v1/admin/simulators/rig-2/stop", json!({}))
        .await;
    assert_eq!(resp.status, 200);
    let _ = qualities_for(&mut ws, Duration::from_millis(1500)).await;
    let during = qualities_for(&mut ws, Duration::from_millis(2500)).await;
    assert_eq!(
        during["rig-2"].0, "bad",
        "rig-2 bad while its device is down: {during:?}"
    );
    for rig in ["rig-1", "rig-3"] {
        assert_eq!(during[rig].0, "good", "{rig} unaffected: {during:?}");
        assert!(during[rig].1 > before[rig].1, "{rig} still updating");
    }
    let snap = viewer.get("/api/v1/equipment/rig-2").await.body;
    assert_eq!(snap["health"]["status"], "fault");
    let reason = snap["sensors"][0]["state"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("connect") || reason.contains("disconnected") || reason.contains("link"),
        "reason says why: {reason}"
    );

    // Power it on again: data resumes without restarting anything.
    let resp = engineer
        .post("/api/v1/admin/simulators/rig-2/start", json!({}))
        .await;
    assert_eq!(resp.status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let after = qualities_for(&mut ws, Duration::from_millis(1000)).await;
        if after.get("rig-2").is_some_and(|q| q.0 == "good") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rig-2 did not recover: {after:?}"
        );
    }
    let tree = app.state.tree.registry.info("connections/rig-2").unwrap();
    assert_eq!(
        tree.restart_count, 0,
        "recovered by reconnecting, not by a restart"
    );
    let status = app.state.tree.connections[1].lock().unwrap().clone();
    assert!(status.reconnects >= 1, "reconnect counted: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sensor_is_restarted_and_siblings_keep_their_state() {
    let app = TestApp::spawn().await;
    let registry = app.state.tree.registry.clone();
    wait_until("first readings", Duration::from_secs(5), || {
        registry.info("plant/rig-1").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id_of = |p: &str| registry.cell(p).map(|c| c.get_id());
    let sensors = ["PS1", "PS2", "PS3", "PS4", "SE"];
    let before: Vec<_> = sensors
        .iter()
        .map(|s| id_of(&format!("plant/rig-1/{s}")))
        .collect();
    let ps1_before = sensor_get(&app, "plant/rig-1/PS1").await;
    assert_eq!(ps1_before.quality, Quality::Good);

    // The last sensor: rest_for_one restarts it alone.
    sensor_ref(&app, "plant/rig-1/SE")
        .await
        .cast(SensorMsg::Panic)
        .unwrap();
    wait_until("SE restarted", Duration::from_secs(5), || {
        id_of("plant/rig-1/SE").is_some_and(|id| Some(id) != before[4])
    })
    .await;
    for (s, old) in sensors.iter().zip(&before).take(4) {
        assert_eq!(id_of(&format!("plant/rig-1/{s}")), *old, "{s} untouched");
    }
    let info = registry.info("plant/rig-1/SE").unwrap();
    assert_eq!(info.restart_count, 1);
    assert!(info.last_error.unwrap().contains("told to panic"));
    // Sibling kept its state (still has a value, and it is not reset to no-data).
    let ps1_after = sensor_get(&app, "plant/rig-1/PS1").await;
    assert!(ps1_after.ts_ms >= ps1_before.ts_ms && ps1_after.value.is_some());

    // A middle sensor: rest_for_one (supervision.toml [equipment]) restarts it and
    // the sensors declared after it; those before keep running.
    sensor_ref(&app, "plant/rig-1/PS3")
        .await
        .cast(SensorMsg::Panic)
        .unwrap();
    wait_until("PS3 restarted", Duration::from_secs(5), || {
        id_of("plant/rig-1/PS3").is_some_and(|id| Some(id) != before[2])
    })
    .await;
    wait_until("PS4 restarted", Duration::from_secs(5), || {
        id_of("plant/rig-1/PS4").is_some_and(|id| Some(id) != before[3])
    })
    .await;
    assert_eq!(id_of("plant/rig-1/PS1"), before[0]);
    assert_eq!(id_of("plant/rig-1/PS2"), before[1]);
    // Other rigs were never touched.
    assert_eq!(registry.info("plant/rig-2/PS3").unwrap().restart_count, 0);
    // And the restarted sensor gets data again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sensor_get(&app, "plant/rig-1/PS3").await.quality != Quality::Good {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PS3 never got data again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_equipment_intensity_escalates_to_the_plant_supervisor() {
    let loaded = demo_config(&[]);
    let allowed = loaded.supervision.equipment.max_restarts;
    let app = TestApp::start(loaded).await;
    let registry = app.state.tree.registry.clone();
    let mut ws = app.ws(&app.viewer().await).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-3"]}))
        .await;
    ws.next_of("snapshot", Duration::from_secs(3))
        .await
        .expect("first snapshot");
    let equipment_before = registry.cell("plant/rig-3").map(|c| c.get_id());

    // `allowed` restarts within the period are absorbed by the equipment actor...
    for n in 0..allowed {
        let old = registry.cell("plant/rig-3/SE").map(|c| c.get_id());
        sensor_ref(&app, "plant/rig-3/SE")
            .await
            .cast(SensorMsg::Panic)
            .unwrap();
        wait_until(&format!("SE restart {n}"), Duration::from_secs(5), || {
            registry
                .cell("plant/rig-3/SE")
                .is_some_and(|c| Some(c.get_id()) != old)
        })
        .await;
    }
    assert_eq!(
        registry.cell("plant/rig-3").map(|c| c.get_id()),
        equipment_before
    );
    assert_eq!(registry.info("plant/rig-3").unwrap().restart_count, 0);

    // ...one more and it gives up; the plant supervisor restarts it (one_for_one:
    // the other rigs are untouched).
    sensor_ref(&app, "plant/rig-3/SE")
        .await
        .cast(SensorMsg::Panic)
        .unwrap();
    wait_until("rig-3 restarted by plant", Duration::from_secs(10), || {
        registry
            .cell("plant/rig-3")
            .is_some_and(|c| Some(c.get_id()) != equipment_before)
    })
    .await;
    let info = registry.info("plant/rig-3").unwrap();
    assert_eq!(info.restart_count, 1);
    assert!(info
        .last_error
        .unwrap()
        .contains("restart intensity exceeded"));
    assert_eq!(registry.info("plant/rig-1").unwrap().restart_count, 0);
    assert_eq!(registry.info("plant").unwrap().restart_count, 0);
    // Subscribers get a fresh snapshot from the new instance and data goes on.
    ws.next_of("snapshot", Duration::from_secs(5))
        .await
        .expect("snapshot after restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frame = ws
            .next_of("delta", Duration::from_secs(3))
            .await
            .expect("deltas resume");
        if sensor_state(&frame, "PS1").is_some_and(|s| s["quality"] == "good") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_root_gives_up_the_app_exits_with_failure() {
    let mut loaded = demo_config(&[]);
    // Nobody tolerates a restart: one panic climbs to the root.
    loaded.supervision.equipment.max_restarts = 0;
    loaded.supervision.plant.max_restarts = 0;
    loaded.supervision.root.max_restarts = 0;
    let app = TestApp::start(loaded).await;
    let health = app.state.health.clone();
    let sensor = sensor_ref(&app, "plant/rig-1/PS1").await;
    let run = tokio::spawn(app.into_inner().run_until(std::future::pending()));
    sensor.cast(SensorMsg::Panic).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("app exits by itself")
        .expect("no panic");
    match exit {
        Exit::RootFailed(why) => assert!(why.contains("restart intensity exceeded"), "{why}"),
        other => panic!("expected RootFailed, got {other:?}"),
    }
    assert!(health
        .root_failed
        .load(std::sync::atomic::Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reads_time_out_with_504_and_report_restarting_actors_with_503() {
    use hydrowatch_actors::plant::EquipmentMsg;

    let app = TestApp::start(demo_config(&[("HYDROWATCH_LIVE__ACTOR_TIMEOUT_MS", "300")])).await;
    let viewer = app.viewer().await;
    let path = |id: &str| format!("/api/v1/equipment/{id}");

    // A busy equipment actor: the façade gives up after the configured timeout.
    let rig1 = app
        .state
        .tree
        .equipment
        .get(&hydrowatch_models::EquipmentId::parse("rig-1").unwrap())
        .unwrap()
        .clone();
    rig1.get()
        .expect("rig-1 running")
        .cast(EquipmentMsg::Stall(Duration::from_secs(2)))
        .unwrap();
    let resp = viewer.get(&path("rig-1")).await;
    assert_eq!(resp.status, 504);
    let body = resp.body;
    assert_eq!(body["error"]["code"], "actor_timeout");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("300 ms"));
    // Its neighbours answer meanwhile.
    assert_eq!(viewer.get(&path("rig-2")).await.status, 200);

    // A stopped equipment actor: 503, not a hang.
    let resp = app
        .admin()
        .await
        .post("/api/v1/admin/actors/plant/rig-3/stop", json!({}))
        .await;
    assert_eq!(resp.status, 200);
    let resp = viewer.get(&path("rig-3")).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body["error"]["code"], "actor_unavailable");
    // The list still answers, with that unit's health unknown.
    let list = viewer.get("/api/v1/equipment").await.body;
    assert_eq!(list["equipment"][2]["health"]["status"], "unknown");
}
