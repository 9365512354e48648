//! The field side of the application, over real Modbus traffic on loopback:
//! setpoints written through the API, verified by reading back and by an
//! independent Modbus client, and audited; faults injected into a simulated
//! rig through the admin API, seen in the connection's health, in
//! `/health/ready`, in the metrics, and recovered from without a restart;
//! rigs behind a serial gateway (RTU frames over TCP).

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;

/// `PUT /api/v1/admin/simulators/{rig}/faults`: the status and body.
async fn put_faults(engineer: &Client, rig: &str, faults: Value) -> Reply {
    engineer
        .put(&format!("/api/v1/admin/simulators/{rig}/faults"), faults)
        .await
}

/// Checks PS1 of `equipment` is good and in its physical range in the
/// unit's snapshot (what a wrongly decoded value would not be).
async fn good_ps1(viewer: &Client, equipment: &str) {
    let snapshot = viewer
        .get(&format!("/api/v1/equipment/{equipment}"))
        .await
        .body;
    let state = snapshot["sensors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == "PS1")
        .map(|s| s["state"].clone())
        .unwrap_or_default();
    assert_eq!(state["quality"], "good", "{snapshot}");
    let value = state["value"].as_f64().unwrap_or(f64::NAN);
    assert!((100.0..250.0).contains(&value), "PS1 = {value}");
}

/// One connection's entry in `/health/ready`.
async fn connection_health(viewer: &Client, id: &str) -> Value {
    let ready = viewer.get("/health/ready").await.body;
    ready["connections"]
        .as_array()
        .expect("connections listed")
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no connection {id} in {ready}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setpoints_are_written_read_back_and_audited() {
    let app = TestApp::start(fast_plant_config(&[])).await;
    let admin = app.admin().await;
    let engineer = app.user("eng@plant.example", "engineer").await;
    let viewer = app.user("view@plant.example", "viewer").await;

    let Reply {
        status, body: list, ..
    } = viewer.get("/api/v1/equipment/rig-1/setpoints").await;
    assert_eq!(status, 200, "{list}");
    let value_of = |list: &Value, id: &str| {
        list["setpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(value_of(&list, "pump_pressure"), json!(160.0), "{list}");
    assert_eq!(value_of(&list, "fan_speed"), json!(100.0));
    assert_eq!(value_of(&list, "cooler_enabled"), json!(1.0));
    assert_eq!(list["setpoints"][0]["min"], 100.0);

    let put = |id: &str, who: &Client, body: Value| {
        who.put(&format!("/api/v1/equipment/rig-1/setpoints/{id}"), body)
    };
    // A viewer may read, not write.
    let Reply { status, body, .. } = put("pump_pressure", &viewer, json!({"value": 150.5})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let Reply {
        status, body: done, ..
    } = put("pump_pressure", &engineer, json!({"value": 150.5})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["read_back"], 150.5);
    assert_eq!(done["verified"], true);
    assert_eq!(
        done["registers"],
        json!([0x4316, 0x8000]),
        "150.5 as f32 ABCD"
    );
    let list = viewer.get("/api/v1/equipment/rig-1/setpoints").await.body;
    assert_eq!(value_of(&list, "pump_pressure"), json!(150.5));
    let Reply { status, .. } = put("cooler_enabled", &engineer, json!({"value": 0.0})).await;
    assert_eq!(status, 200);

    // What the device holds, asked by a Modbus client of its own.
    let sims = engineer.get("/api/v1/admin/simulators").await.body;
    let addr = sims
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["equipment"] == "rig-1")
        .and_then(|s| s["address"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    {
        use tokio_modbus::client::{tcp, Reader};
        let mut ctx = tcp::connect(addr).await.unwrap();
        let regs = ctx.read_holding_registers(1100, 2).await.unwrap().unwrap();
        assert_eq!(
            f32::from_bits(((regs[0] as u32) << 16) | regs[1] as u32),
            150.5
        );
        let coils = ctx.read_coils(0, 1).await.unwrap().unwrap();
        assert_eq!(coils, vec![false]);
    }

    // Outside the limits, or not representable in the register: 422, nothing sent.
    let Reply { status, body, .. } = put("pump_pressure", &engineer, json!({"value": 250.0})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["code"], "out_of_range");
    let Reply { status, body, .. } = put("fan_speed", &engineer, json!({"value": 50.5})).await;
    assert_eq!(status, 422, "{body}");
    let Reply { status, .. } = put("fan_speed", &engineer, json!({"value": "fast"})).await;
    assert_eq!(status, 422);
    let Reply { status, .. } = put("nitrogen", &engineer, json!({"value": 1.0})).await;
    assert_eq!(status, 404);

    // The device refuses (exception 0x04): 502 with the code; nothing claimed.
    let Reply { status, .. } = put_faults(&engineer, "rig-1", json!({"exception": 4})).await;
    assert_eq!(status, 200);
    let Reply { status, body, .. } = put("pump_pressure", &engineer, json!({"value": 120.0})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "device_refused");
    assert_eq!(body["error"]["details"]["exception"], 4);
    // The device does not answer: 502 device_unreachable within the timeouts.
    let Reply { status, .. } = put_faults(&engineer, "rig-1", json!({"no_response": true})).await;
    assert_eq!(status, 200);
    let Reply { status, body, .. } = put("pump_pressure", &engineer, json!({"value": 120.0})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "device_unreachable");
    let Reply { status, .. } = put_faults(&engineer, "rig-1", json!({})).await;
    assert_eq!(status, 200);
    let Reply {
        status, body: done, ..
    } = put("pump_pressure", &engineer, json!({"value": 120.0})).await;
    assert_eq!((status, done["read_back"].clone()), (200, json!(120.0)));

    // Every write is in the audit log with who, what and how it ended.
    let audit = admin.get("/api/v1/admin/audit?limit=1000").await.body;
    let writes: Vec<(i64, f64)> = audit["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "PUT /api/v1/equipment/{id}/setpoints/{setpoint}")
        .filter(|r| r["resource_id"] == "/api/v1/equipment/rig-1/setpoints/pump_pressure")
        .map(|r| {
            // Stored as hashed: the JSON text.
            let changes: Value = serde_json::from_str(r["changes"].as_str().unwrap()).unwrap();
            (
                changes["status"].as_i64().unwrap(),
                changes["request"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            (403, 150.5),
            (200, 150.5),
            (422, 250.0),
            (502, 120.0),
            (502, 120.0),
            (200, 120.0)
        ],
        "{audit}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_show_in_health_and_metrics_and_data_resumes() {
    let app = TestApp::start(fast_plant_config(&[])).await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    let admin = app.admin().await;
    eventually(Duration::from_secs(10), "rig-2 connected", async || {
        connection_health(&viewer, "rig-2").await["link"] == "connected"
    })
    .await;

    // Bad settings are refused with the field named.
    for bad in [json!({"probability": 2.0}), json!({"hang": true})] {
        let Reply { status, body, .. } = put_faults(&engineer, "rig-2", bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }

    let Reply { status, body, .. } =
        put_faults(&engineer, "rig-2", json!({"no_response": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["faults"]["no_response"], true);
    eventually(
        Duration::from_secs(10),
        "rig-2 down with timeouts",
        async || {
            let health = connection_health(&viewer, "rig-2").await;
            health["link"] == "disconnected" && health["error_counts"]["timeout"].as_u64() > Some(0)
        },
    )
    .await;
    let health = connection_health(&viewer, "rig-2").await;
    assert!(
        health["last_error"].as_str().unwrap().contains("timeout"),
        "{health}"
    );
    // The process stays ready; the other rigs go on.
    let ready = viewer.get("/health/ready").await.body;
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        connection_health(&viewer, "rig-1").await["link"],
        "connected"
    );
    // The actor tree shows the same health.
    let tree = admin.get("/api/v1/admin/actors").await.body;
    let in_tree = tree["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "rig-2")
        .cloned()
        .unwrap();
    assert!(
        in_tree["error_counts"]["timeout"].as_u64() > Some(0),
        "{in_tree}"
    );
    let metrics = viewer.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hydrowatch_poll_errors_total{")
                && l.contains("connection=\"rig-2\"")
                && l.contains("kind=\"timeout\"")),
        "{metrics}"
    );
    // The gauge's value is not checked: tests in this binary run side by
    // side and share the process's metrics, and another test's rig-2 is up.
    assert!(metrics.contains("hydrowatch_connection_up{connection=\"rig-2\"}"));

    // Garbage on the line: recognised as such, never decoded.
    let Reply { status, .. } = put_faults(&engineer, "rig-2", json!({"garbage": true})).await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "garbled frames counted",
        async || {
            connection_health(&viewer, "rig-2").await["error_counts"]["garbled"].as_u64() > Some(0)
        },
    )
    .await;

    // Cleared: data resumes without a restart, counted as a reconnect.
    let before = connection_health(&viewer, "rig-2").await;
    let Reply { status, .. } = put_faults(&engineer, "rig-2", json!({})).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "rig-2 back", async || {
        let health = connection_health(&viewer, "rig-2").await;
        health["link"] == "connected"
            && health["last_success_ms"].as_i64() > before["last_success_ms"].as_i64()
    })
    .await;
    let after = connection_health(&viewer, "rig-2").await;
    assert!(after["reconnects"].as_u64() > before["reconnects"].as_u64());
    let faults = engineer
        .get("/api/v1/admin/simulators/rig-2/faults")
        .await
        .body;
    assert!(faults["stats"]["faulted"].as_u64() > Some(0), "{faults}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rigs_behind_a_serial_gateway_are_polled_with_rtu_frames() {
    let app = TestApp::start(fast_plant_config_with(
        &[(
            "protocol = \"modbus_tcp\"",
            "protocol = \"modbus_rtu_over_tcp\"",
        )],
        &[],
    ))
    .await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    for rig in ["rig-1", "rig-2", "rig-3"] {
        eventually(Duration::from_secs(10), "polled over RTU", async || {
            let health = connection_health(&viewer, rig).await;
            health["protocol"] == "modbus_rtu_over_tcp"
                && health["link"] == "connected"
                && health["polls"].as_u64() > Some(3)
                && health["errors"] == 0
        })
        .await;
    }
    let sims = engineer.get("/api/v1/admin/simulators").await.body;
    assert!(
        sims.as_array()
            .unwrap()
            .iter()
            .all(|s| s["protocol"] == "modbus_rtu_over_tcp"),
        "{sims}"
    );
    good_ps1(&viewer, "rig-1").await;
    // Setpoints go through the same frames.
    let Reply {
        status, body: done, ..
    } = engineer
        .put(
            "/api/v1/equipment/rig-3/setpoints/fan_speed",
            json!({"value": 40.0}),
        )
        .await;
    assert_eq!(
        (status, done["read_back"].clone()),
        (200, json!(40.0)),
        "{done}"
    );
    app.stop().await;
}

/// The demo plant with rig-3 on OPC-UA (Basic256Sha256, signed and
/// encrypted, as the simulator's user), certificates in `dir`.
fn plant_with_opcua_rig(dir: &std::path::Path, trust: bool) -> hydrowatch::config::Loaded {
    let client_pki = dir.join("client");
    let server_pki = dir.join("server");
    fast_plant_config_with(
        &[
            (
                "id = \"rig-3\"\nname = \"Hydraulic rig 3\"\nsensor_set = \"zema-rig\"\nsetpoint_set = \"zema-rig\"\n",
                "id = \"rig-3\"\nname = \"Hydraulic rig 3\"\nsensor_set = \"zema-rig\"\n",
            ),
            (
                "[equipment.connection]\nprotocol = \"modbus_tcp\"\nendpoint = \"simulator\"\nunit_id = 1\nperiod_ms = 500\nrequest_timeout_ms = 500\nconnect_timeout_ms = 1000\n\n# Score every completed load cycle with the cycle models (models/artifacts).\n[equipment.cycle]\nphase_sensor = \"CYC\"\nmax_missing = 3\n\n[equipment.simulator]\ncondition = \"cooler_degraded\"",
                &format!(
                    "[equipment.connection]\nprotocol = \"opcua\"\nendpoint = \"simulator\"\nnode_ids = \"ns=2;s=Rig.{{id}}\"\nsecurity_policy = \"basic256_sha256\"\nsecurity_mode = \"sign_and_encrypt\"\nusername = \"operator\"\npassword = \"operator-password\"\ntrust_server_certs = {trust}\npki_dir = {client:?}\nperiod_ms = 500\nrequest_timeout_ms = 1000\nconnect_timeout_ms = 5000\nreconnect_initial_ms = 100\nreconnect_max_ms = 500\n\n[equipment.cycle]\nphase_sensor = \"CYC\"\nmax_missing = 3\n\n[equipment.simulator]\npki_dir = {server:?}\ncondition = \"cooler_degraded\"",
                    client = client_pki.display().to_string(),
                    server = server_pki.display().to_string(),
                ),
            ),
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rig_over_opcua_is_read_survives_a_server_restart_and_a_hang() {
    let dir = temp_dir("opcua-rig");
    let app = TestApp::start(plant_with_opcua_rig(&dir, true)).await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    eventually(Duration::from_secs(30), "rig-3 over OPC-UA", async || {
        let health = connection_health(&viewer, "rig-3").await;
        health["protocol"] == "opcua"
            && health["link"] == "connected"
            && health["last_success_ms"].is_i64()
    })
    .await;
    good_ps1(&viewer, "rig-3").await;
    let health = connection_health(&viewer, "rig-3").await;
    assert_eq!(
        health["opcua"]["acquisition"],
        json!({"subscriptions": 1}),
        "{health}"
    );
    assert!(health["opcua"]["notifications"].as_u64() > Some(0));
    assert!(connection_health(&viewer, "rig-1")
        .await
        .get("opcua")
        .is_none());
    let metrics = viewer.get("/metrics").await.text;
    let counted = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("connection=\"rig-3\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(
        counted("hydrowatch_opcua_notifications_total{") > Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        counted("hydrowatch_opcua_subscriptions_lost_total{"),
        Some(0.0)
    );
    let sims = engineer.get("/api/v1/admin/simulators").await.body;
    let rig3 = sims
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["equipment"] == "rig-3")
        .unwrap()
        .clone();
    assert_eq!(rig3["protocol"], "opcua");
    assert!(rig3["endpoint"]
        .as_str()
        .unwrap()
        .starts_with("opc.tcp://127.0.0.1:"));

    // A server restart: sessions and subscriptions on it are gone; the
    // connection notices, reconnects and subscribes again by itself.
    let before = connection_health(&viewer, "rig-3").await;
    let Reply { status, body, .. } = engineer
        .post("/api/v1/admin/simulators/rig-3/restart", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(30),
        "rig-3 back after the restart",
        async || {
            let health = connection_health(&viewer, "rig-3").await;
            health["link"] == "connected"
                && health["reconnects"].as_u64() > before["reconnects"].as_u64()
                && health["last_success_ms"].as_i64()
                    > Some(hydrowatch_actors::clock::now_ms() - 1_000)
        },
    )
    .await;
    let faults = engineer
        .get("/api/v1/admin/simulators/rig-3/faults")
        .await
        .body;
    assert_eq!(faults["stats"]["restarts"], 1, "{faults}");
    let notified = connection_health(&viewer, "rig-3").await["opcua"]["notifications"].clone();
    eventually(
        Duration::from_secs(10),
        "subscribed again after the restart",
        async || {
            let health = connection_health(&viewer, "rig-3").await;
            health["opcua"]["acquisition"] == json!({"subscriptions": 1})
                && health["opcua"]["notifications"].as_u64() > notified.as_u64()
        },
    )
    .await;

    // A hung server: the link is declared lost within the keep-alive limits,
    // and data comes back when it answers again.
    let Reply { status, .. } = put_faults(&engineer, "rig-3", json!({"no_response": true})).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(30), "the hang noticed", async || {
        connection_health(&viewer, "rig-3").await["link"] == "disconnected"
    })
    .await;
    let Reply { status, .. } = put_faults(&engineer, "rig-3", json!({"hang": true})).await;
    assert_eq!(status, 422, "OPC-UA faults are checked by name");
    let Reply { status, .. } = put_faults(&engineer, "rig-3", json!({})).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(30), "data after the hang", async || {
        let health = connection_health(&viewer, "rig-3").await;
        health["link"] == "connected"
            && health["last_success_ms"].as_i64() > Some(hydrowatch_actors::clock::now_ms() - 1_000)
    })
    .await;
    // The Modbus rigs were never disturbed.
    assert_eq!(
        connection_health(&viewer, "rig-1").await["link"],
        "connected"
    );
    app.stop().await;
}
