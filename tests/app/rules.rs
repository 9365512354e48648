//! Alert rules and escalation policies through the API: those of
//! plant.toml are read-only, new ones are checked against the plant and the
//! notification channels, stored, and in force at once on live data from
//! the simulated rigs; an edited rule re-evaluates its open alert, a deleted
//! one clears it; stored rules survive a process restart.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;

fn error(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default(),
    )
}

/// rig-1's open alert of `kind`, once it is in `state`.
async fn alert_in(viewer: &Client, kind: &str, state: &str) -> Value {
    let mut found = Value::Null;
    eventually(
        Duration::from_secs(20),
        &format!("rig-1's {kind} alert in {state}"),
        async || {
            let page = viewer.get("/api/v1/alerts?equipment=rig-1").await.body;
            let alert = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["kind"] == kind && a["state"] == state);
            if let Some(a) = alert {
                found = a.clone();
            }
            alert.is_some()
        },
    )
    .await;
    found
}

/// A threshold rule on rig-1's oil (TS1): the recorded oil is always warmer
/// than 1 °C and never warmer than 1000 °C.
fn warm_rule(max: f64, severity: &str) -> Value {
    json!({
        "id": "ts1-warm", "equipment": "rig-1", "severity": severity, "policy": "night",
        "when": {"threshold": {"sensor": "TS1", "max": max, "hysteresis": 0.5}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_policies_are_created_edited_and_deleted_through_the_api() {
    let app = TestApp::start(fast_plant_config(&[])).await;
    let viewer = app.viewer().await;
    let ana = app.user("ana@plant.example", "engineer").await;
    let bo = app.user("bo@plant.example", "engineer").await;
    let rules_url = "/api/v1/alert-rules";
    let policies_url = "/api/v1/escalation-policies";

    // plant.toml's rules and policies are listed, and read-only.
    let rules = viewer.get(rules_url).await.body;
    let oil = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"]["id"] == "oil-hot")
        .expect("oil-hot listed");
    assert_eq!(oil["defined_in"], "config");
    assert_eq!(oil["provenance"], Value::Null);
    let mut edited = oil["rule"].clone();
    edited["severity"] = json!("critical");
    let Reply { status, body, .. } = ana
        .put(&format!("{rules_url}/oil-hot"), json!({"rule": edited}))
        .await;
    assert_eq!((status, error(&body).0), (409, "provisioned"), "{body}");
    let Reply { status, body, .. } = ana.delete(&format!("{rules_url}/oil-hot")).await;
    assert_eq!((status, error(&body).0), (409, "provisioned"));
    let Reply { status, body, .. } = ana.delete(&format!("{policies_url}/default")).await;
    assert_eq!((status, error(&body).0), (409, "provisioned"));

    // A policy may only name channels that are configured.
    let Reply { status, body, .. } = ana
        .post(
            policies_url,
            json!({"name": "night", "policy": {"steps": [
            {"after_ms": 0, "channels": ["wallboard"]},
            {"after_ms": 60000, "channels": ["webhook:nowhere"]}]}}),
        )
        .await;
    assert_eq!(
        (status, error(&body)),
        (422, ("invalid_request", "policy.steps[1].channels[0]")),
        "{body}"
    );
    let Reply { status, body, .. } = ana
        .post(
            policies_url,
            json!({"name": "night", "policy": {"steps": [
            {"after_ms": 0, "channels": ["wallboard"]}], "repeat_critical_ms": 600000}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["defined_in"], "api");
    assert_eq!(body["provenance"]["version"], 1);
    assert_eq!(body["provenance"]["created_by"], "ana@plant.example");

    // A rule is checked against the plant and the policies, field by field.
    let mut bad = warm_rule(1.0, "minor");
    bad["policy"] = json!("weekend");
    let Reply { status, body, .. } = ana.post(rules_url, json!({"rule": bad})).await;
    assert_eq!((status, error(&body).1), (422, "policy"), "{body}");
    let mut bad = warm_rule(1.0, "minor");
    bad["equipment"] = json!("rig-9");
    let Reply { status, body, .. } = ana.post(rules_url, json!({"rule": bad})).await;
    assert_eq!((status, error(&body).1), (422, "equipment"), "{body}");
    let mut bad = warm_rule(1.0, "minor");
    bad["when"]["threshold"]["sensor"] = json!("XX9");
    let Reply { status, body, .. } = ana.post(rules_url, json!({"rule": bad})).await;
    assert_eq!((status, error(&body).1), (422, "when"), "{body}");
    let mut bad = warm_rule(1.0, "minor");
    bad["channels"] = json!(["wallboard", "webhook:nowhere"]);
    let Reply { status, body, .. } = ana.post(rules_url, json!({"rule": bad})).await;
    assert_eq!((status, error(&body).1), (422, "channels[1]"), "{body}");
    // A viewer reads rules but may not make them.
    let Reply { status, body, .. } = viewer
        .post(rules_url, json!({"rule": warm_rule(1.0, "minor")}))
        .await;
    assert_eq!((status, error(&body).0), (403, "forbidden"), "{body}");
    // Nothing of that was stored or put in force.
    assert_eq!(
        viewer.get(&format!("{rules_url}/ts1-warm")).await.body["error"]["code"],
        "not_found"
    );

    // A new rule is in force at once: rig-1's oil fires it.
    let Reply { status, body, .. } = ana
        .post(rules_url, json!({"rule": warm_rule(1.0, "minor")}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["provenance"]["version"], 1);
    let alert = alert_in(&viewer, "threshold:ts1-warm", "ACTIVE_UNACK").await;
    assert_eq!(alert["sensor"], "TS1");
    assert_eq!(alert["severity"], "minor");
    let id = alert["id"].as_i64().unwrap();
    let Reply { status, body, .. } = bo
        .post(rules_url, json!({"rule": warm_rule(1.0, "minor")}))
        .await;
    assert_eq!((status, error(&body).0), (409, "already_exists"));

    // Replacing names the version it replaces; a stale one is refused.
    let Reply { status, body, .. } = bo
        .put(
            &format!("{rules_url}/ts1-warm"),
            json!({"rule": warm_rule(1000.0, "minor"), "version": 7}),
        )
        .await;
    assert_eq!(
        (status, error(&body).0),
        (409, "version_conflict"),
        "{body}"
    );
    let Reply { status, body, .. } = bo
        .put(
            &format!("{rules_url}/other"),
            json!({"rule": warm_rule(1000.0, "minor")}),
        )
        .await;
    assert_eq!((status, error(&body).1), (422, "rule.id"), "{body}");
    // The band moves above the oil: the alert's condition is gone.
    let Reply { status, body, .. } = bo
        .put(
            &format!("{rules_url}/ts1-warm"),
            json!({"rule": warm_rule(1000.0, "minor"), "version": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provenance"]["version"], 2);
    assert_eq!(body["provenance"]["created_by"], "ana@plant.example");
    assert_eq!(body["provenance"]["updated_by"], "bo@plant.example");
    let cleared = alert_in(&viewer, "threshold:ts1-warm", "CLEARED_UNACK").await;
    assert_eq!(cleared["id"], id);
    // And back below it, graver: the same alert fires again.
    let Reply { status, body, .. } = bo
        .put(
            &format!("{rules_url}/ts1-warm"),
            json!({"rule": warm_rule(1.0, "major")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let again = alert_in(&viewer, "threshold:ts1-warm", "ACTIVE_UNACK").await;
    assert_eq!(again["id"], id);
    assert_eq!(again["severity"], "major");

    // A policy in use cannot go; the rule can, and its alert is cleared
    // with the reason in its history.
    let Reply { status, body, .. } = ana.delete(&format!("{policies_url}/night")).await;
    assert_eq!((status, error(&body).0), (409, "in_use"), "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ts1-warm"));
    let Reply { status, .. } = ana.delete(&format!("{rules_url}/ts1-warm")).await;
    assert_eq!(status, 204);
    let Reply { status, .. } = ana.delete(&format!("{rules_url}/ts1-warm")).await;
    assert_eq!(status, 404);
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    assert_eq!(detail["state"], "CLEARED_UNACK", "{detail}");
    let last = detail["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "cleared_manually");
    assert_eq!(last["by"], "hydrowatch");
    assert!(last["note"].as_str().unwrap().contains("ts1-warm"));
    // No new alert of the deleted rule opens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = viewer.get("/api/v1/alerts?equipment=rig-1").await.body;
    let of_rule = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "threshold:ts1-warm")
        .count();
    assert_eq!(of_rule, 1, "{page}");
    let Reply { status, .. } = ana.delete(&format!("{policies_url}/night")).await;
    assert_eq!(status, 204);
    let policies = viewer.get(policies_url).await.body;
    assert!(
        policies
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "night"),
        "{policies}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rules_and_policies_survive_a_process_restart() {
    let db = TestDatabase::create("rules_restart").await;
    let url = db.url();
    let env = [("HYDROWATCH_STORAGE__URL", url.as_str())];
    let first = TestApp::start(fast_plant_config(&env)).await;
    let viewer = first.viewer().await;
    let ana = first.user("ana@plant.example", "engineer").await;
    let Reply { status, body, .. } = ana
        .post(
            "/api/v1/escalation-policies",
            json!({"name": "night", "policy": {"steps": [
            {"after_ms": 0, "channels": ["wallboard"]}]}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let Reply { status, body, .. } = ana
        .post(
            "/api/v1/alert-rules",
            json!({"rule": warm_rule(1.0, "minor")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let created = body["rule"].clone();
    assert_eq!(created["when"]["threshold"]["max"], 1.0);
    let id = alert_in(&viewer, "threshold:ts1-warm", "ACTIVE_UNACK").await["id"].clone();
    first.stop().await;

    let second = TestApp::start(fast_plant_config(&env)).await;
    let viewer = second.viewer().await;
    let rule = viewer.get("/api/v1/alert-rules/ts1-warm").await.body;
    assert_eq!(rule["defined_in"], "api", "{rule}");
    assert_eq!(rule["rule"], created);
    assert_eq!(rule["provenance"]["created_by"], "ana@plant.example");
    let policy = viewer.get("/api/v1/escalation-policies/night").await.body;
    assert_eq!(policy["policy"]["steps"][0]["channels"][0], "wallboard");
    // The alert is the same one, still firing under the stored rule.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = alert_in(&viewer, "threshold:ts1-warm", "ACTIVE_UNACK").await;
    assert_eq!(again["id"], id);
    second.stop().await;
    db.drop_now().await;
}
