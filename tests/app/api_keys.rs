//! API keys for integrations: shown once and stored hashed; they act as
//! the admin who made them, within their scopes; their uses are counted;
//! each has its own rate limit; revoking one, or deleting its maker, stops
//! it at once.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;

async fn make_key(admin: &Client, body: Value) -> Reply {
    admin.post("/api/v1/admin/api-keys", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_shown_once_acts_within_its_scopes_and_stops_when_revoked() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@plant.example", "admin").await;
    let admin_id = app.user_id("admin@plant.example").await;

    // Scopes are permissions the maker has, never user management.
    for (scopes, why) in [
        (json!([]), "none"),
        (json!(["fly"]), "not a permission"),
        (json!(["read", "users:manage"]), "keys do not manage users"),
    ] {
        let Reply { status, body, .. } =
            make_key(&admin, json!({"name": "x", "scopes": scopes})).await;
        assert_eq!(
            (status, &body["error"]["details"]["field"]),
            (422, &json!("scopes")),
            "{why}: {body}"
        );
    }
    let Reply {
        status, body: made, ..
    } = make_key(
        &admin,
        json!({"name": "scada-push", "scopes": ["ingest", "alerts:act"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let as_key = app.client(Some(&key));
    let id = made["record"]["id"].as_i64().unwrap();
    assert!(key.starts_with("hwk_") && key.len() == 68, "{key}");
    assert_eq!(made["record"]["prefix"], key[..12]);
    assert_eq!(made["record"]["user_id"], admin_id);
    let days = (made["record"]["expires_at"].as_i64().unwrap()
        - made["record"]["created_at"].as_i64().unwrap())
        / 86_400_000;
    assert_eq!(days, 30);

    // Listed without the key or its hash.
    let Reply {
        status,
        body: listed,
        ..
    } = admin.get("/api/v1/admin/api-keys").await;
    assert_eq!(status, 200);
    let row = &listed[0];
    assert_eq!(row["id"], id);
    assert!(!row.to_string().contains(&key[12..]), "{row}");
    assert!(row.get("hash").is_none());

    // Within its scopes: samples in, an alert acted on (there is none).
    let now = hydrowatch_actors::clock::now_ms();
    let Reply { status, body, .. } = as_key
        .post(
            "/api/v1/ingest",
            json!({"rows": [{"equipment": "rig-1", "sensor": "PS1", "ts": now,
                                    "value": 151.2, "unit": "bar"}]}),
        )
        .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let Reply { status, .. } = as_key.post("/api/v1/alerts/1/acknowledge", json!({})).await;
    assert_eq!(status, 404, "allowed: there is no alert 1");
    // Outside them: not even reading, and no session of a user.
    let Reply { status, body, .. } = as_key.get("/api/v1/equipment").await;
    assert_eq!(
        (status, &body["error"]["details"]["required"]),
        (403, &json!("read"))
    );
    let Reply { status, body, .. } = as_key.get("/api/v1/auth/me").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("user_session_required"))
    );

    // Its changes are audited as the key's.
    let rows = app.state.audit.rows(0, 1000).await.unwrap();
    let acted = rows
        .iter()
        .find(|r| r.action == "POST /api/v1/alerts/{id}/acknowledge")
        .expect("audited");
    assert_eq!(acted.user_id, Some(admin_id));
    let changes: Value = serde_json::from_str(&acted.changes).unwrap();
    assert_eq!(changes["credential"], "api_key");
    assert_eq!(changes["api_key"], id);
    assert!(rows.iter().any(|r| r.action == "api_key.create"));

    // Four uses, counted (written within about a second).
    eventually(Duration::from_secs(5), "uses counted", async || {
        let Reply { body: listed, .. } = admin.get("/api/v1/admin/api-keys").await;
        listed[0]["usage_count"] == 4 && listed[0]["last_used_at"].is_i64()
    })
    .await;

    // Revoked: refused at once.
    let Reply { status, .. } = admin.delete(&format!("/api/v1/admin/api-keys/{id}")).await;
    assert_eq!(status, 204);
    let Reply { status, body, .. } = as_key.post("/api/v1/alerts/1/acknowledge", json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_token"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_has_its_own_rate_limit_and_dies_with_its_maker() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@plant.example", "admin").await;
    let Reply {
        status, body: made, ..
    } = make_key(
        &admin,
        json!({"name": "dashboard", "scopes": ["read"], "rate": {"burst": 3, "per_min": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let as_key = app.client(Some(&key));
    for _ in 0..3 {
        let Reply { status, .. } = as_key.get("/api/v1/equipment").await;
        assert_eq!(status, 200);
    }
    let response = as_key.get("/api/v1/equipment").await;
    assert_eq!(response.status, 429);
    assert!(response.headers.contains_key("retry-after"));
    // Another key is not held back by this one's limit.
    let Reply { body: other, .. } =
        make_key(&admin, json!({"name": "other", "scopes": ["read"]})).await;
    let as_other = app.client(other["key"].as_str());
    let Reply { status, .. } = as_other.get("/api/v1/equipment").await;
    assert_eq!(status, 200);

    // Its maker deleted (by another admin): it stops.
    let admin_id = app.user_id("admin@plant.example").await;
    let Reply { status, .. } = app
        .admin()
        .await
        .delete(&format!("/api/v1/admin/users/{admin_id}"))
        .await;
    assert_eq!(status, 204);
    let Reply { status, .. } = as_other.get("/api/v1/equipment").await;
    assert_eq!(status, 401);
    app.stop().await;
}
