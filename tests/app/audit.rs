//! The audit log: sign-in events are recorded with who, what and from
//! where, each row hash-chained to the one before; `hydrowatch audit verify`
//! and `AuditLog::verify` find a row edited, deleted or forged directly in
//! the database.

use crate::common;

use serde_json::{json, Value};

use common::*;
use hydrowatch::auth::roles::Role;
use hydrowatch::auth::NewUser;

const PASSWORD: &str = "a long enough secret";
const KEY: &str = "audit-chain-key-for-tests";

fn ana() -> NewUser {
    NewUser {
        email: "ana@plant.example".into(),
        name: "Ana".into(),
        role: Role::Engineer,
        password: PASSWORD.into(),
        must_change_password: false,
    }
}

fn verify_cli(url: &str) -> (bool, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hydrowatch"))
        .args(["audit", "verify"])
        .env_remove("RUST_LOG")
        .env("HYDROWATCH_STORAGE__URL", url)
        .env("HYDROWATCH_AUDIT__KEY", KEY)
        .output()
        .expect("hydrowatch runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("JSON: {text} {}", String::from_utf8_lossy(&out.stderr))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_events_are_chained_and_tampering_is_found() {
    let db = TestDatabase::create("audit").await;
    let url = db.url();
    let app = TestApp::start(demo_config(&[
        ("HYDROWATCH_STORAGE__URL", url.as_str()),
        ("HYDROWATCH_AUDIT__KEY", KEY),
        ("HYDROWATCH_AUTH__MAX_FAILURES", "2"),
    ]))
    .await;
    let ana = ana();
    app.state.auth.users.add(&ana, None).await.expect("user");
    assert_eq!(
        app.login("nobody@plant.example", PASSWORD).await.status,
        401
    );
    assert_eq!(app.login("ana@plant.example", PASSWORD).await.status, 200);
    assert_eq!(
        app.login("ana@plant.example", "wrong guess number 1")
            .await
            .status,
        401
    );
    assert_eq!(
        app.login("ana@plant.example", "wrong guess number 2")
            .await
            .status,
        401
    );

    let rows = app.state.audit.rows(0, 100).await.expect("rows");
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "login_failed",
            "login",
            "login_failed",
            "login_failed",
            "account_locked"
        ]
    );
    let login_row = &rows[2];
    assert_eq!(
        login_row.user_id,
        rows[0].resource_id.as_ref().and_then(|id| id.parse().ok())
    );
    assert_eq!(login_row.ip.as_deref(), Some("127.0.0.1"));
    assert!(rows[1].changes.contains("unknown_email"));
    assert_eq!(rows[0].prev_hash, hydrowatch::audit::GENESIS);
    for pair in rows.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let intact = app.state.audit.verify().await.expect("verify");
    assert_eq!(intact.problem, None);
    assert_eq!(intact.head, Some((6, rows[5].hash.clone())));
    let (ok, out) = verify_cli(&url);
    assert!(ok, "{out}");
    assert_eq!(out["rows"], 6);

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    // Edited: who failed to log in.
    sqlx::query("UPDATE audit_log SET changes = '{}' WHERE seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    let found = app.state.audit.verify().await.unwrap();
    assert_eq!(found.problem.as_ref().map(|p| p.0), Some(4), "{found:?}");
    assert!(found.problem.unwrap().1.contains("edited"));
    let (ok, out) = verify_cli(&url);
    assert!(!ok);
    assert_eq!(out["problem"][0], 4);
    // Put back, then deleted: the gap is found.
    sqlx::query("UPDATE audit_log SET changes = $1 WHERE seq = 4")
        .bind(&rows[3].changes)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(app.state.audit.verify().await.unwrap().problem, None);
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    let found = app.state.audit.verify().await.unwrap();
    assert_eq!(found.problem.as_ref().map(|p| p.0), Some(3), "{found:?}");
    assert!(found.problem.unwrap().1.contains("missing"));
    // Renumbered to close the gap: the chain no longer links.
    for seq in 4..=6_i64 {
        sqlx::query("UPDATE audit_log SET seq = seq - 1 WHERE seq = $1")
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
    }
    let found = app.state.audit.verify().await.unwrap();
    assert_eq!(found.problem.as_ref().map(|p| p.0), Some(3), "{found:?}");
    assert!(found.problem.unwrap().1.contains("not chained"));
    pool.close().await;
    app.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_row_appended_with_a_recomputed_plain_hash_is_found_under_a_key() {
    use sha2::{Digest, Sha256};
    let db = TestDatabase::create("audit_forge").await;
    let url = db.url();
    let store = hydrowatch::store::Store::connect(&url)
        .await
        .expect("PostgreSQL");
    store.migrate().await.expect("migrations");
    let settings: hydrowatch::audit::AuditSettings =
        serde_json::from_value(json!({"key": KEY})).unwrap();
    let log = hydrowatch::audit::AuditLog::new(store.clone(), &settings);
    for action in ["login", "logout"] {
        log.record(
            hydrowatch::audit::AuditEvent {
                user_id: Some(1),
                action: action.into(),
                resource_type: "session".into(),
                ..Default::default()
            },
            1_000,
        )
        .await
        .expect("recorded");
    }
    assert_eq!(log.verify().await.unwrap().problem, None);
    // Someone with database access appends a row and chains it with SHA-256,
    // as they would without the key.
    let last = log.rows(0, 10).await.unwrap().pop().unwrap();
    let content = json!([
        3,
        2_000,
        1,
        "user.promote",
        "user",
        "1",
        "{}",
        null,
        null,
        last.hash
    ])
    .to_string();
    let forged: String = Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (seq, ts, user_id, action, resource_type, resource_id, changes, \
         prev_hash, hash) VALUES (3, 2000, 1, 'user.promote', 'user', '1', '{}', $1, $2)",
    )
    .bind(&last.hash)
    .bind(&forged)
    .execute(&pool)
    .await
    .unwrap();
    let found = log.verify().await.unwrap();
    assert_eq!(found.problem.as_ref().map(|p| p.0), Some(3), "{found:?}");
    // A keyed chain cannot be checked (or extended) without the key: read
    // as plain SHA-256 it fails at its first row.
    let keyless = hydrowatch::audit::AuditLog::new(store.clone(), &Default::default());
    assert_eq!(
        keyless.verify().await.unwrap().problem.map(|p| p.0),
        Some(1)
    );
    pool.close().await;
    store.close().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_the_api_are_audited_with_who_and_the_outcome() {
    let app = TestApp::spawn().await;
    let ana = ana();
    let ana_id = app.state.auth.users.add(&ana, None).await.expect("user");
    let signed_in = app.login("ana@plant.example", PASSWORD).await;
    let ana = app.client(signed_in.body["access_token"].as_str());
    // The admin who reads the log signs in over HTTP too, so that every
    // row but a user's creation has an address.
    app.state
        .auth
        .users
        .add(&new_user("admin@plant.example", "admin"), None)
        .await
        .expect("admin");
    let signed_in = app.login("admin@plant.example", common::PASSWORD).await;
    let admin = app.client(signed_in.body["access_token"].as_str());
    let now = hydrowatch_actors::clock::now_ms();
    let created = ana
        .post(
            "/api/v1/silences",
            json!({"matchers": {"equipment": "rig-1"},
                   "window": {"type": "fixed", "starts": now, "ends": now + 60_000},
                   "comment": "pump swap"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let silence = created.body["id"].as_i64().unwrap();
    // Refused, and without a token: recorded all the same.
    let refused = app
        .anonymous()
        .post("/api/v1/alert-rules", json!({"rule": {"id": "x"}}))
        .await;
    assert_eq!(refused.status, 401);
    // Signed in but not allowed: recorded with who tried.
    let refused = ana.post("/api/v1/admin/storage/cleanup", json!({})).await;
    assert_eq!(refused.status, 403);
    // Reads are not changes.
    assert_eq!(ana.get("/api/v1/alerts").await.body["total"], 0);
    let ended = ana.delete(&format!("/api/v1/silences/{silence}")).await;
    assert_eq!(ended.status, 204);

    let rows = app.state.audit.rows(0, 100).await.unwrap();
    // Action, who, resource type, resource, outcome.
    type Audited = (String, Option<i64>, String, Option<String>, Value);
    let requests: Vec<Audited> = rows
        .iter()
        .filter(|r| r.action.contains(' '))
        .map(|r| {
            (
                r.action.clone(),
                r.user_id,
                r.resource_type.clone(),
                r.resource_id.clone(),
                serde_json::from_str(&r.changes).expect("JSON"),
            )
        })
        .collect();
    assert_eq!(
        requests,
        [
            (
                "POST /api/v1/silences".to_owned(),
                Some(ana_id),
                "silences".to_owned(),
                Some("/api/v1/silences".to_owned()),
                json!({"status": 201, "credential": "session", "request": {
                    "matchers": {"equipment": "rig-1"},
                    "window": {"type": "fixed", "starts": now, "ends": now + 60_000},
                    "comment": "pump swap"}})
            ),
            (
                "POST /api/v1/alert-rules".to_owned(),
                None,
                "alert-rules".to_owned(),
                Some("/api/v1/alert-rules".to_owned()),
                json!({"status": 401, "request": {"rule": {"id": "x"}}})
            ),
            (
                "POST /api/v1/admin/storage/cleanup".to_owned(),
                Some(ana_id),
                "admin/storage".to_owned(),
                Some("/api/v1/admin/storage/cleanup".to_owned()),
                json!({"status": 403, "credential": "session", "request": {}})
            ),
            (
                "DELETE /api/v1/silences/{id}".to_owned(),
                Some(ana_id),
                "silences".to_owned(),
                Some(format!("/api/v1/silences/{silence}")),
                json!({"status": 204, "credential": "session"})
            ),
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r.ip.as_deref() == Some("127.0.0.1") || r.action == "user.create"));
    // Admins read the log a page at a time, as stored; an engineer may not.
    let page = admin.get("/api/v1/admin/audit?limit=2").await.body;
    assert_eq!(page["rows"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["rows"][0]["seq"], 1);
    assert_eq!(page["rows"][1]["prev_hash"], page["rows"][0]["hash"]);
    assert_eq!(page["next_after"], 2);
    let rest = admin
        .get("/api/v1/admin/audit?after=2&limit=1000")
        .await
        .body;
    assert_eq!(rest["rows"].as_array().unwrap().len() + 2, rows.len());
    assert_eq!(rest["next_after"], Value::Null);
    let refused = ana.get("/api/v1/admin/audit").await;
    assert_eq!(refused.status, 403);
    assert_eq!(app.state.audit.verify().await.unwrap().problem, None);
    app.stop().await;
}
