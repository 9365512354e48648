//! Alerts end to end: rules in plant.toml fire on live data from the
//! simulated rigs, the alerting actor keeps one alert per source and rule,
//! stores it with its history and outbox, and the API lists, shows,
//! acknowledges and clears it — on SQLite and on PostgreSQL, across a restart
//! of the alerting actor.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;

async fn open_alerts(viewer: &Client, query: &str) -> Vec<Value> {
    let page = viewer
        .get(&format!("/api/v1/alerts?state=open&{query}"))
        .await
        .body;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until rig-1's oil alert has `n` notifications in its outbox;
/// returns its id.
async fn oil_alert_with_deliveries(viewer: &Client, n: usize) -> i64 {
    let mut id = 0;
    eventually(
        Duration::from_secs(20),
        "rig-1's oil alert and its notifications",
        async || {
            let Some(a) = open_alerts(viewer, "equipment=rig-1")
                .await
                .into_iter()
                .find(|a| a["kind"] == "threshold:oil-hot")
            else {
                return false;
            };
            id = a["id"].as_i64().unwrap();
            let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
            detail["deliveries"].as_array().unwrap().len() == n
        },
    )
    .await;
    id
}

fn kinds(detail: &Value) -> Vec<String> {
    detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_rule_raises_one_alert_per_sensor_that_can_be_acknowledged_and_cleared() {
    let app = TestApp::start(fast_plant_config_with(&OIL_ALERT_AT_1C, &[])).await;
    let viewer = app.viewer().await;
    eventually(
        Duration::from_secs(20),
        "rig-1's oil alert fires",
        async || {
            open_alerts(&viewer, "equipment=rig-1")
                .await
                .iter()
                .any(|a| a["kind"] == "threshold:oil-hot" && a["state"] == "ACTIVE_UNACK")
        },
    )
    .await;
    // One alert per source and rule however many samples keep it firing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let oil: Vec<Value> = open_alerts(&viewer, "equipment=rig-1")
        .await
        .into_iter()
        .filter(|a| a["kind"] == "threshold:oil-hot")
        .collect();
    assert_eq!(oil.len(), 1, "{oil:?}");
    let alert = &oil[0];
    assert_eq!(alert["source"], "plant/rig-1/TS1");
    assert_eq!(alert["sensor"], "TS1");
    assert_eq!(alert["severity"], "major");
    assert!(alert["last_value"].as_f64().unwrap() > 1.0);
    let id = alert["id"].as_i64().unwrap();

    // History and the wallboard notification, delivered by the push itself.
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    assert_eq!(kinds(&detail), ["triggered", "activated"]);
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["channel"], "wallboard");
    assert_eq!(deliveries[0]["status"], "sent");

    // Acknowledge: who (the signed-in user), when, why; a second time is
    // a conflict.
    let ana = app.user("ana@plant.example", "engineer").await;
    let bo = app.user("bo@plant.example", "engineer").await;
    let ack = ana
        .post(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            json!({"comment": "checking the cooler"}),
        )
        .await;
    assert_eq!(ack.status, 200);
    assert_eq!(ack.body["state"], "ACTIVE_ACK");
    let again = bo
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), json!({}))
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "conflict");
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    assert_eq!(detail["acknowledged_by"], "ana@plant.example");
    let ack_event = detail["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(ack_event["kind"], "acknowledged");
    assert_eq!(ack_event["by"], "ana@plant.example");
    assert_eq!(ack_event["note"], "checking the cooler");

    // Cleared by hand after acknowledgement, the alert is over; the rule
    // still fires, so a new alert opens for the same sensor.
    let clear = ana
        .post(&format!("/api/v1/alerts/{id}/clear"), json!({}))
        .await;
    assert_eq!(clear.status, 200);
    assert_eq!(clear.body["state"], "CLEARED_ACK");
    let closed = viewer
        .get("/api/v1/alerts?state=cleared_ack&equipment=rig-1")
        .await
        .body;
    assert!(closed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id));
    let gone = ana
        .post(&format!("/api/v1/alerts/{id}/clear"), json!({}))
        .await;
    assert_eq!(gone.status, 404);

    // Bad requests name the field.
    let bad = viewer.get("/api/v1/alerts?state=burning").await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["details"]["field"], "state");
    // A viewer reads alerts but may not act on them.
    let refused = viewer
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), json!({}))
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"]["details"]["required"], "alerts:act");
    // `by` is who signs in, never what a body says.
    let spoofed = ana
        .post(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            json!({"by": "someone else"}),
        )
        .await;
    assert_eq!(spoofed.status, 422);
    assert_eq!(viewer.get("/api/v1/alerts/999999").await.status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_rig_raises_a_model_alert() {
    // rig-3 replays a failing cooler: its cycles are judged degraded.
    let app = TestApp::start(fast_plant_config(&[])).await;
    let viewer = app.viewer().await;
    eventually(
        Duration::from_secs(60),
        "rig-3's model alert fires",
        async || {
            open_alerts(&viewer, "equipment=rig-3")
                .await
                .iter()
                .any(|a| a["kind"] == "model:component-degraded" && a["source"] == "plant/rig-3")
        },
    )
    .await;
    let alert = open_alerts(&viewer, "equipment=rig-3")
        .await
        .into_iter()
        .find(|a| a["kind"] == "model:component-degraded")
        .unwrap();
    // The cooler's level makes it graver than the rule's floor (minor).
    assert!(
        alert["severity"] == "major" || alert["severity"] == "critical",
        "{alert}"
    );
    assert!(alert["sensor"].is_null());
    // The healthy rigs have none.
    assert!(open_alerts(&viewer, "equipment=rig-1")
        .await
        .iter()
        .all(|a| a["kind"] != "model:component-degraded"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_of_the_alerting_actor_escalation_resumes_without_repeating() {
    let db = TestDatabase::create("alerts").await;
    // Escalation: the wallboard at once, the on-call after 1 s, the
    // supervisor after 4 s.
    let policy = "[[alerting.policies.default.steps]]\nafter_ms = 0\nchannels = [\"wallboard\"]";
    let steps = "[[alerting.policies.default.steps]]\nafter_ms = 0\nchannels = [\"wallboard\"]\n\
         [[alerting.policies.default.steps]]\nafter_ms = 1000\nchannels = [\"email:oncall@plant.example\"]\n\
         [[alerting.policies.default.steps]]\nafter_ms = 4000\nchannels = [\"email:supervisor@plant.example\"]";
    let mut edits = OIL_ALERT_AT_1C.to_vec();
    edits.push((policy, steps));
    edits.push(("tick_ms = 1000", "tick_ms = 100"));
    let url = db.url();
    let app = TestApp::start(fast_plant_config_with(
        &edits,
        &[("HYDROWATCH_STORAGE__URL", url.as_str())],
    ))
    .await;
    let viewer = app.viewer().await;
    // The wallboard at once, the on-call a second later.
    let admin = app.admin().await;
    let id = oil_alert_with_deliveries(&viewer, 2).await;
    let count = |a: &Value| a["count"].as_i64().unwrap();
    let before = count(&viewer.get(&format!("/api/v1/alerts/{id}")).await.body);
    // Restart the alerting actor before the supervisor's step is due.
    let restarted = admin
        .post("/api/v1/admin/actors/alerting/restart", json!({}))
        .await;
    assert_eq!(restarted.status, 200);
    eventually(
        Duration::from_secs(10),
        "the supervisor is notified",
        async || {
            let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
            detail["deliveries"].as_array().unwrap().len() >= 3
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The same alert (restored, not raised again), each step once.
    let oil: Vec<Value> = open_alerts(&viewer, "equipment=rig-1")
        .await
        .into_iter()
        .filter(|a| a["kind"] == "threshold:oil-hot")
        .collect();
    assert_eq!(oil.len(), 1);
    assert_eq!(oil[0]["id"], id);
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    let sent: Vec<(i64, String)> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["step"].as_i64().unwrap(),
                d["channel"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (0, "wallboard".to_owned()),
            (1, "email:oncall@plant.example".to_owned()),
            (2, "email:supervisor@plant.example".to_owned()),
        ]
    );
    assert_eq!(kinds(&detail), ["triggered", "activated"]);
    // The equipment actors restated their rules to the new instance; that
    // is not counted as another trigger.
    assert_eq!(count(&detail), before);
    app.stop().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_that_ends_while_alerting_is_down_clears_when_alerting_is_back() {
    let edits = [(
        "when = { quality = { longer_than_ms = 30000 } }",
        "when = { quality = { sensor = \"PS1\", longer_than_ms = 1000 } }",
    )];
    let app = TestApp::start(fast_plant_config_with(&edits, &[])).await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    let admin = app.admin().await;
    // rig-1's PLC loses power: PS1 goes silent and its alert fires.
    let off = engineer
        .post("/api/v1/admin/simulators/rig-1/stop", json!({}))
        .await;
    assert_eq!(off.status, 200);
    let mut id = 0;
    eventually(
        Duration::from_secs(20),
        "rig-1's offline alert fires",
        async || {
            let found = open_alerts(&viewer, "equipment=rig-1")
                .await
                .into_iter()
                .find(|a| a["kind"] == "quality:sensor-offline" && a["state"] == "ACTIVE_UNACK");
            if let Some(a) = &found {
                id = a["id"].as_i64().unwrap();
            }
            found.is_some()
        },
    )
    .await;
    // Alerting goes down; meanwhile the PLC comes back and PS1 reads again.
    let stopped = admin
        .post("/api/v1/admin/actors/alerting/stop", json!({}))
        .await;
    assert_eq!(stopped.status, 200);
    let on = engineer
        .post("/api/v1/admin/simulators/rig-1/start", json!({}))
        .await;
    assert_eq!(on.status, 200);
    eventually(Duration::from_secs(10), "PS1 reads again", async || {
        let eq = viewer.get("/api/v1/equipment/rig-1").await.body;
        eq["sensors"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "PS1"))
            .is_some_and(|s| s["state"]["status"] == "ok")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    assert_eq!(
        still["state"], "ACTIVE_UNACK",
        "nobody told the stopped actor"
    );
    // Back: the equipment restates its rules and the alert clears.
    let started = admin
        .post("/api/v1/admin/actors/alerting/start", json!({}))
        .await;
    assert_eq!(started.status, 200);
    eventually(
        Duration::from_secs(10),
        "the offline alert clears",
        async || viewer.get(&format!("/api/v1/alerts/{id}")).await.body["state"] == "CLEARED_UNACK",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_alert_is_recorded_but_notified_only_when_the_silence_ends() {
    let app = TestApp::start(fast_plant_config_with(&OIL_ALERT_AT_1C, &[])).await;
    let viewer = app.viewer().await;
    let now = hydrowatch_actors::clock::now_ms();
    // A bad window is refused, naming the field.
    let ana = app.user("ana@plant.example", "engineer").await;
    let bad = ana
        .post(
            "/api/v1/silences",
            json!({"window": {"type": "recurring", "cron": "0 0 2 * * Sun", "duration_ms": 1000,
                              "timezone": "Mars/Olympus"},
                   "comment": "x"}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["details"]["field"], "window");
    // Maintenance on rig-1 for an hour, from now.
    let created = ana
        .post(
            "/api/v1/silences",
            json!({"matchers": {"equipment": "rig-1"},
                   "window": {"type": "fixed", "starts": now - 1_000, "ends": now + 3_600_000},
                   "comment": "pump replacement"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let silence = created.body["id"].as_i64().unwrap();
    let listed = viewer.get("/api/v1/silences").await.body;
    assert_eq!(listed[0]["comment"], "pump replacement");

    let mut id = 0;
    eventually(
        Duration::from_secs(20),
        "rig-1's oil alert fires",
        async || {
            let found = open_alerts(&viewer, "equipment=rig-1")
                .await
                .into_iter()
                .find(|a| a["kind"] == "threshold:oil-hot" && a["state"] == "ACTIVE_UNACK");
            if let Some(a) = &found {
                id = a["id"].as_i64().unwrap();
            }
            found.is_some()
        },
    )
    .await;
    // Recorded, active, but nobody told; rig-2's is notified as usual.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    assert_eq!(
        detail["deliveries"].as_array().unwrap().len(),
        0,
        "{detail}"
    );
    // Shown as silenced, in the list and on the alert.
    assert_eq!(detail["held_back"], "silenced", "{detail}");
    let listed = open_alerts(&viewer, "equipment=rig-1").await;
    let row = listed.iter().find(|a| a["id"] == id).expect("listed");
    assert_eq!(row["held_back"], "silenced");
    let rig2 = open_alerts(&viewer, "equipment=rig-2")
        .await
        .into_iter()
        .find(|a| a["kind"] == "threshold:oil-hot")
        .expect("rig-2's oil alert");
    let rig2 = viewer
        .get(&format!("/api/v1/alerts/{}", rig2["id"]))
        .await
        .body;
    assert_eq!(rig2["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(rig2["held_back"], Value::Null);

    // The silence ends early: what is due goes out.
    let ended = ana.delete(&format!("/api/v1/silences/{silence}")).await;
    assert_eq!(ended.status, 204);
    eventually(
        Duration::from_secs(5),
        "the wallboard notification",
        async || {
            let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
            detail["deliveries"].as_array().unwrap().len() == 1
        },
    )
    .await;
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    assert_eq!(detail["held_back"], Value::Null, "{detail}");
    let again = ana.delete(&format!("/api/v1/silences/{silence}")).await;
    assert_eq!(again.status, 404);
    let all = viewer.get("/api/v1/silences?all=true").await.body;
    assert_eq!(all[0]["created_by"], "ana@plant.example");
    assert_eq!(all[0]["ended_by"], "ana@plant.example");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_process_restart_escalation_resumes_without_repeating() {
    let db = TestDatabase::create("alerts_process").await;
    let policy = "[[alerting.policies.default.steps]]\nafter_ms = 0\nchannels = [\"wallboard\"]";
    let steps = "[[alerting.policies.default.steps]]\nafter_ms = 0\nchannels = [\"wallboard\"]\n\
         [[alerting.policies.default.steps]]\nafter_ms = 5000\nchannels = [\"email:supervisor@plant.example\"]";
    let mut edits = OIL_ALERT_AT_1C.to_vec();
    edits.push((policy, steps));
    edits.push(("tick_ms = 1000", "tick_ms = 100"));
    let url = db.url();
    let env = [("HYDROWATCH_STORAGE__URL", url.as_str())];
    let first = TestApp::start(fast_plant_config_with(&edits, &env)).await;
    let viewer = first.viewer().await;
    let id = oil_alert_with_deliveries(&viewer, 1).await;
    // The whole process stops before the second step is due, and a new one
    // starts on the same database.
    let _ = first.stop().await;
    let second = TestApp::start(fast_plant_config_with(&edits, &env)).await;
    let viewer = second.viewer().await;
    eventually(
        Duration::from_secs(15),
        "the second step after the restart",
        async || {
            let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
            detail["deliveries"].as_array().unwrap().len() == 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    let steps: Vec<i64> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [0, 1], "{detail}");
    // Still the same alert, and no second one for the same sensor.
    let oil: Vec<Value> = open_alerts(&viewer, "equipment=rig-1")
        .await
        .into_iter()
        .filter(|a| a["kind"] == "threshold:oil-hot")
        .collect();
    assert_eq!(oil.len(), 1);
    assert_eq!(oil[0]["id"], id);
    second.stop().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_to_open_the_same_alert_open_one() {
    use hydrowatch::store::alerts::AlertFilter;
    use hydrowatch_actors::alerting::{AlertStore, AlertWrite};
    use hydrowatch_actors::storage::StoreFailure;
    use hydrowatch_models::alert::engine::Origin;
    use hydrowatch_models::alert::{Alert, AlertKey, AlertState, Timing};
    use hydrowatch_models::ensemble::Severity;

    let db = TestDatabase::create("alerts_race").await;
    let store = hydrowatch::store::Store::connect(&db.url())
        .await
        .expect("PostgreSQL");
    store.migrate().await.expect("migrations");
    let write = |value: f64| AlertWrite {
        id: None,
        rule: "oil-hot".into(),
        alert: Alert::new(
            AlertKey {
                source: "plant/rig-1/TS1".into(),
                kind: "threshold:oil-hot".into(),
            },
            Severity::Major,
            Some(value),
            1_000,
            &Timing::default(),
        ),
        origin: Origin {
            site: "demo".into(),
            equipment: Some("rig-1".into()),
            sensor: Some("TS1".into()),
        },
        events_stored: 0,
        notifications: Vec::new(),
        held_back: None,
    };
    // Eight writers (as eight processes would) open the alert for the same
    // source and type at once: the database keeps one.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let w = write(60.0 + f64::from(i));
            tokio::spawn(async move { store.save(std::slice::from_ref(&w)).await })
        })
        .collect();
    let mut opened = 0;
    for racer in racers {
        match racer.await.expect("racer") {
            Ok(ids) => {
                assert_eq!(ids.len(), 1);
                opened += 1;
            }
            Err(StoreFailure::Rejected(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(opened, 1);
    let page = store
        .alerts(&AlertFilter {
            states: AlertState::ALL
                .iter()
                .copied()
                .filter(|s| s.is_open())
                .collect(),
            page: 1,
            page_size: 50,
            ..AlertFilter::default()
        })
        .await
        .expect("alerts");
    assert_eq!(page.total, 1, "{page:?}");
    store.close().await;
    db.drop_now().await;
}
