//! API keys for integrations: shown once and stored hashed; they act as
//! the admin who made them, within their scopes; their uses are counted;
//! each has its own rate limit; revoking one, or deleting its maker, stops
//! it at once.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;

async fn make_key(base: &str, admin: &str, body: Value) -> (u16, Value) {
    legacy_send(
        anonymous()
            .post(format!("{base}/admin/api-keys"))
            .bearer_auth(admin)
            .json(&body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_shown_once_acts_within_its_scopes_and_stops_when_revoked() {
    let mut app = spawn_app().await;
    let base = format!("http://{}/api/v1", app.addr);
    let admin = sign_in(&app, "admin@plant.example", "admin").await;
    let admin_id = user_id(&app, "admin@plant.example").await;

    // Scopes are permissions the maker has, never user management.
    for (scopes, why) in [
        (json!([]), "none"),
        (json!(["fly"]), "not a permission"),
        (json!(["read", "users:manage"]), "keys do not manage users"),
    ] {
        let (status, body) = make_key(&base, &admin, json!({"name": "x", "scopes": scopes})).await;
        assert_eq!(
            (status, &body["error"]["details"]["field"]),
            (422, &json!("scopes")),
            "{why}: {body}"
        );
    }
    let (status, made) = make_key(
        &base,
        &admin,
        json!({"name": "scada-push", "scopes": ["ingest", "alerts:act"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["record"]["id"].as_i64().unwrap();
    assert!(key.starts_with("hwk_") && key.len() == 68, "{key}");
    assert_eq!(made["record"]["prefix"], key[..12]);
    assert_eq!(made["record"]["user_id"], admin_id);
    let days = (made["record"]["expires_at"].as_i64().unwrap()
        - made["record"]["created_at"].as_i64().unwrap())
        / 86_400_000;
    assert_eq!(days, 30);

    // Listed without the key or its hash.
    let (status, listed) = legacy_send(
        anonymous()
            .get(format!("{base}/admin/api-keys"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 200);
    let row = &listed[0];
    assert_eq!(row["id"], id);
    assert!(!row.to_string().contains(&key[12..]), "{row}");
    assert!(row.get("hash").is_none());

    // Within its scopes: samples in, an alert acted on (there is none).
    let now = hydrowatch_actors::clock::now_ms();
    let (status, body) = legacy_send(
        anonymous()
            .post(format!("{base}/ingest"))
            .bearer_auth(&key)
            .json(
                &json!({"rows": [{"equipment": "rig-1", "sensor": "PS1", "ts": now,
                                    "value": 151.2, "unit": "bar"}]}),
            ),
    )
    .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let (status, _) = legacy_send(
        anonymous()
            .post(format!("{base}/alerts/1/acknowledge"))
            .bearer_auth(&key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 404, "allowed: there is no alert 1");
    // Outside them: not even reading, and no session of a user.
    let (status, body) = legacy_send(
        anonymous()
            .get(format!("{base}/equipment"))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["details"]["required"]),
        (403, &json!("read"))
    );
    let (status, body) =
        legacy_send(anonymous().get(format!("{base}/auth/me")).bearer_auth(&key)).await;
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
        let (_, listed) = legacy_send(
            anonymous()
                .get(format!("{base}/admin/api-keys"))
                .bearer_auth(&admin),
        )
        .await;
        listed[0]["usage_count"] == 4 && listed[0]["last_used_at"].is_i64()
    })
    .await;

    // Revoked: refused at once.
    let (status, _) = legacy_send(
        anonymous()
            .delete(format!("{base}/admin/api-keys/{id}"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = legacy_send(
        anonymous()
            .post(format!("{base}/alerts/1/acknowledge"))
            .bearer_auth(&key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_token"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_has_its_own_rate_limit_and_dies_with_its_maker() {
    let mut app = spawn_app().await;
    let base = format!("http://{}/api/v1", app.addr);
    let admin = sign_in(&app, "admin@plant.example", "admin").await;
    let (status, made) = make_key(
        &base,
        &admin,
        json!({"name": "dashboard", "scopes": ["read"], "rate": {"burst": 3, "per_min": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, _) = legacy_send(
            anonymous()
                .get(format!("{base}/equipment"))
                .bearer_auth(&key),
        )
        .await;
        assert_eq!(status, 200);
    }
    let response = anonymous()
        .get(format!("{base}/equipment"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // Another key is not held back by this one's limit.
    let (_, other) = make_key(&base, &admin, json!({"name": "other", "scopes": ["read"]})).await;
    let other = other["key"].as_str().unwrap().to_owned();
    let (status, _) = legacy_send(
        anonymous()
            .get(format!("{base}/equipment"))
            .bearer_auth(&other),
    )
    .await;
    assert_eq!(status, 200);

    // Its maker deleted (by the break-glass admin): it stops.
    let admin_id = user_id(&app, "admin@plant.example").await;
    let (status, _) = legacy_send(http().delete(format!("{base}/admin/users/{admin_id}"))).await;
    assert_eq!(status, 204);
    let (status, _) = legacy_send(
        anonymous()
            .get(format!("{base}/equipment"))
            .bearer_auth(&other),
    )
    .await;
    assert_eq!(status, 401);
    app.shutdown().await;
}
