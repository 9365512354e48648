//! The cycle models over HTTP and inline: `POST /api/v1/detect` in both shapes
//! with its validation, and a simulated rig switched to a degraded condition
//! seen on the WebSocket, in the anomalies table and in the trend.

use crate::common;

use std::time::Duration;

use serde_json::{json, Map, Value};

use common::*;
use hydrowatch_protocols::rig::{RigCondition, RigRecording, SENSORS};

/// Cycle `index` of `condition` from the recording the simulators replay,
/// in the `cycle` shape of `/detect`.
fn recorded_cycle(condition: RigCondition, index: usize) -> Value {
    let recording = RigRecording::embedded();
    let cycle = &recording.cycles(condition)[index];
    let mut map = Map::new();
    for (name, values) in SENSORS.iter().zip(&cycle.values) {
        map.insert(name.to_string(), json!(values.to_vec()));
    }
    Value::Object(map)
}

async fn detect(engineer: &Client, body: Value) -> Reply {
    let reply = engineer.post("/api/v1/detect", body).await;
    assert!(reply.body.is_object(), "JSON body: {}", reply.text);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_judges_cycles_and_samples_and_names_the_bad_field() {
    let app = TestApp::spawn().await;
    let engineer = app.engineer().await;
    let viewer = app.viewer().await;

    // Recorded cycles of a healthy rig and of each fault.
    let Reply {
        status,
        body: healthy,
        ..
    } = detect(
        &engineer,
        json!({"cycle": recorded_cycle(RigCondition::Healthy, 2)}),
    )
    .await;
    assert_eq!(status, 200, "{healthy}");
    assert_eq!(healthy["shape"], "cycle");
    assert_eq!(healthy["is_anomaly"], false, "{healthy}");
    assert_eq!(healthy["affected_component"], Value::Null);
    // All three members ran: the test command provides ONNX Runtime for
    // the XGBoost member (scripts/test sets ORT_DYLIB_PATH).
    let version = healthy["model_version"].as_str().unwrap();
    assert!(
        version.starts_with("random_forest@")
            && version.contains("+novelty@")
            && version.contains("+xgboost@"),
        "{version}"
    );
    assert_eq!(healthy["per_model"].as_array().unwrap().len(), 3);
    assert_eq!(healthy["health"].as_array().unwrap().len(), 4);
    for (condition, component) in [
        (RigCondition::CoolerDegraded, "cooler"),
        (RigCondition::ValveLag, "valve"),
        (RigCondition::PumpLeakage, "pump"),
        (RigCondition::AccumulatorLow, "accumulator"),
    ] {
        let Reply {
            status, body: v, ..
        } = detect(
            &engineer,
            json!({"equipment": "rig-1", "cycle": recorded_cycle(condition, 0)}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["is_anomaly"], true, "{condition}: {v}");
        assert_eq!(v["affected_component"], component, "{condition}: {v}");
        assert!(v["confidence"].as_f64().unwrap() >= 0.5, "{v}");
        assert!(v["severity"].is_string(), "{v}");
        // The XGBoost member, run through ONNX Runtime, agrees.
        let xgb = v["per_model"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == "xgboost")
            .unwrap_or_else(|| panic!("no xgboost verdict: {v}"));
        assert!(
            xgb["degraded"][component].as_f64().unwrap() > 0.5,
            "{condition}: {xgb}"
        );
    }

    // One sample vector: plausible, then with PS1 outside its range.
    let recording = RigRecording::embedded();
    let cycle = &recording.cycles(RigCondition::Healthy)[0];
    let mut sample = Map::new();
    for (name, values) in SENSORS.iter().zip(&cycle.values) {
        sample.insert(name.to_string(), json!(values[30]));
    }
    let Reply {
        status, body: v, ..
    } = detect(
        &engineer,
        json!({"equipment": "rig-1", "sample": sample.clone()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["shape"], "sample");
    assert_eq!(v["is_anomaly"], false, "{v}");
    assert_eq!(v["affected_component"], Value::Null);
    sample.insert("PS1".into(), json!(900.0));
    let Reply { body: v, .. } = detect(
        &engineer,
        json!({"equipment": "rig-1", "sample": sample.clone()}),
    )
    .await;
    assert_eq!(v["is_anomaly"], true, "{v}");
    assert_eq!(v["out_of_range"], json!(["PS1"]));

    // Bad input: 422, the field named.
    let mut missing = recorded_cycle(RigCondition::Healthy, 0);
    missing.as_object_mut().unwrap().remove("PS3");
    let mut short = recorded_cycle(RigCondition::Healthy, 0);
    short["PS1"].as_array_mut().unwrap().pop();
    let mut not_a_number = recorded_cycle(RigCondition::Healthy, 0);
    not_a_number["TS2"][7] = Value::Null;
    let mut text = recorded_cycle(RigCondition::Healthy, 0);
    text["SE"][59] = json!("NaN");
    let mut unknown = recorded_cycle(RigCondition::Healthy, 0);
    unknown["PS9"] = json!(vec![0.0; 60]);
    let mut bad_sample = sample.clone();
    bad_sample.remove("VS1");
    let cases = [
        (json!({"cycle": missing}), "cycle.PS3"),
        (json!({"cycle": short}), "cycle.PS1"),
        (json!({"cycle": not_a_number}), "cycle.TS2[7]"),
        (json!({"cycle": text}), "cycle.SE[59]"),
        (json!({"cycle": unknown}), "cycle.PS9"),
        (json!({"cycle": [1, 2, 3]}), "cycle"),
        (json!({"sample": bad_sample}), "sample.VS1"),
        (
            json!({"equipment": "rig-9", "sample": sample.clone()}),
            "equipment",
        ),
        (
            json!({"cycle": recorded_cycle(RigCondition::Healthy, 0), "sample": sample}),
            "body",
        ),
        (json!({}), "cycle"),
        (json!({"cycles": 1}), "body"),
    ];
    for (body, field) in cases {
        let Reply {
            status, body: v, ..
        } = detect(&engineer, body).await;
        assert_eq!(status, 422, "{field}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    // Not JSON at all.
    let resp = send(
        engineer
            .request(reqwest::Method::POST, "/api/v1/detect")
            .header("content-type", "application/json")
            .body("{\"cycle\": "),
    )
    .await;
    assert!((400..500).contains(&resp.status), "{}", resp.status);
    let body = resp.body;
    assert!(body["error"]["code"].is_string(), "{body}");

    // Readiness reports the models and their versions.
    let ready = viewer.get("/health/ready").await.body;
    assert!(
        ready["models"]["members"]["random_forest"].is_string(),
        "{ready}"
    );
    assert!(ready["models"]["members"]["xgboost"].is_string(), "{ready}");
    assert_eq!(ready["models"]["unavailable"], json!({}), "{ready}");
    app.stop().await;
}

/// The verdict in a snapshot or delta frame, if it carries one.
fn condition_of(frame: &Value) -> Option<&Value> {
    let c = match frame["type"].as_str()? {
        "snapshot" => &frame["snapshot"]["condition"],
        "delta" => &frame["condition"],
        _ => return None,
    };
    (!c.is_null()).then_some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_rig_shows_on_the_websocket_within_two_cycles() {
    // TS1's oil limit moved to 1 °C (raised after 0.5 s): the recorded oil
    // is always warmer, so the sensor actor's limit detector must fire.
    let app = TestApp::start(fast_plant_config_with(&TS1_LIMIT_AT_1C, &[])).await;
    let viewer = app.viewer().await;
    let engineer = app.engineer().await;
    let mut ws = app.ws(&viewer).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1"]}))
        .await;

    // The healthy rig is judged healthy.
    let mut healthy_cycles = 0;
    while healthy_cycles < 2 {
        let frame = ws
            .next_json(Duration::from_secs(30))
            .await
            .expect("frames keep coming");
        if let Some(c) = condition_of(&frame) {
            assert_eq!(c["verdict"]["is_anomaly"], false, "healthy rig: {c}");
            healthy_cycles += 1;
        }
    }

    // Switch to a lagging valve; count cycles from now.
    let resp = engineer
        .put(
            "/api/v1/admin/simulators/rig-1/condition",
            json!({"condition": "valve_lag"}),
        )
        .await;
    assert_eq!(resp.status, 200);
    let snap = viewer.get("/api/v1/equipment/rig-1").await.body;
    let scored_at_switch = snap["condition"]["cycles_scored"]
        .as_u64()
        .expect("scored cycles");

    let seen = loop {
        let frame = ws
            .next_json(Duration::from_secs(30))
            .await
            .expect("frames keep coming");
        let Some(c) = condition_of(&frame) else {
            continue;
        };
        let scored = c["cycles_scored"].as_u64().unwrap();
        if c["verdict"]["affected_component"] == "valve" {
            break c.clone();
        }
        // The cycle running at the switch is mixed; the next one is all
        // valve lag and must be called.
        assert!(
            scored < scored_at_switch + 2,
            "cycle {scored} not called valve lag: {c}"
        );
    };
    assert!(
        seen["cycles_scored"].as_u64().unwrap() <= scored_at_switch + 2,
        "{seen}"
    );
    let valve = seen["verdict"]["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["component"] == "valve")
        .unwrap()
        .clone();
    assert_eq!(valve["degraded"], true);
    assert_eq!(
        valve["level"], 80,
        "valve lag of the recording is 80 %: {valve}"
    );
    assert_eq!(valve["severity"], "major");

    // It is kept: the anomalies list and the trend show it.
    let mut listed = Value::Null;
    eventually(
        Duration::from_secs(10),
        "the anomaly is stored",
        async || {
            listed = viewer
                .get("/api/v1/equipment/rig-1/anomalies?severity=major")
                .await
                .body;
            listed["total"].as_i64().unwrap_or(0) > 0
        },
    )
    .await;
    let first = &listed["items"][0];
    assert_eq!(first["component"], "valve", "{listed}");
    assert_eq!(first["severity"], "major");
    assert_eq!(first["level"], 80);
    assert!(first["model_version"]
        .as_str()
        .unwrap()
        .starts_with("random_forest@"));
    let critical = viewer
        .get("/api/v1/equipment/rig-1/anomalies?severity=critical")
        .await
        .body;
    assert_eq!(critical["total"], 0, "{critical}");
    let trend = viewer
        .get("/api/v1/equipment/rig-1/anomaly-trend?range=1h")
        .await
        .body;
    assert_eq!(trend["bucket_ms"], 60_000);
    let buckets = trend["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60, "{trend}");
    let counted: i64 = buckets
        .iter()
        .map(|b| b["by_component"]["valve"].as_i64().unwrap_or(0))
        .sum();
    assert!(counted >= 1, "{trend}");

    // The sensor actors' detectors report through the same picture.
    let snap = viewer.get("/api/v1/equipment/rig-1").await.body;
    let sensor = |id: &str| {
        snap["sensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["findings"]
            .clone()
    };
    assert_eq!(sensor("TS1")["limits"], json!([true]), "{snap}");
    assert_eq!(sensor("PS1")["limits"], json!([]), "{snap}");
    assert_eq!(
        sensor("PS1")["warming_up"],
        true,
        "600 samples to learn: {snap}"
    );
    assert_eq!(sensor("PS1")["stuck"], false, "{snap}");

    // Bad parameters and unknown equipment.
    let resp = viewer
        .get("/api/v1/equipment/rig-1/anomalies?severity=dire")
        .await;
    assert_eq!(resp.status, 422);
    let body = resp.body;
    assert_eq!(body["error"]["details"]["field"], "severity");
    let resp = viewer
        .get("/api/v1/equipment/rig-1/anomaly-trend?range=2y")
        .await;
    assert_eq!(resp.status, 422);
    let resp = viewer.get("/api/v1/equipment/rig-9/anomalies").await;
    assert_eq!(resp.status, 404);
    app.stop().await;
}
