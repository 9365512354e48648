//! Signed-in sessions as actors: each login runs a login actor under the
//! sessions supervisor; an admin's forced logout ends the sessions and
//! closes the user's live WebSockets with code 4001; users list and end
//! their own sessions; an idle session ends by itself; admins manage users.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_logout_ends_every_session_and_closes_the_live_websocket() {
    let app = TestApp::spawn().await;
    let ana = app.user("ana@plant.example", "engineer").await;
    let ana_id = app.user_id("ana@plant.example").await;
    let admin = app.user("admin@plant.example", "admin").await;
    let admin_id = app.user_id("admin@plant.example").await;

    let mut ws = app.ws(&ana).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1"]}))
        .await;
    assert!(ws
        .next_of("snapshot", Duration::from_secs(10))
        .await
        .is_some());
    // The session is an actor in the tree, and knows its WebSocket.
    let tree = admin.get("/api/v1/admin/actors").await.body;
    let logins: Vec<&Value> = tree["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "login")
        .collect();
    assert_eq!(logins.len(), 2, "ana's and the admin's: {tree}");
    assert!(logins
        .iter()
        .all(|a| a["path"].as_str().unwrap().starts_with("sessions/login-")));
    let Reply {
        status,
        body: sessions,
        ..
    } = admin
        .get(&format!("/api/v1/admin/users/{ana_id}/sessions"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["websockets"], 1, "{sessions}");

    // An engineer may not throw anyone out.
    let Reply { status, .. } = ana
        .post(&format!("/api/v1/admin/users/{admin_id}/logout"), json!({}))
        .await;
    assert_eq!(status, 403);
    let Reply { status, body, .. } = admin
        .post(&format!("/api/v1/admin/users/{ana_id}/logout"), json!({}))
        .await;
    assert_eq!(
        (status, &body["sessions_ended"]),
        (200, &json!(1)),
        "{body}"
    );
    let close = ws.next_close(Duration::from_secs(5)).await;
    assert_eq!(u16::from(close.code), 4001);
    assert!(
        close.reason.as_str().contains("forced_logout"),
        "{}",
        close.reason
    );
    let Reply { status, .. } = ana.get("/api/v1/auth/me").await;
    assert_eq!(
        status, 401,
        "the token of the ended session no longer works"
    );
    let rows = app.state.audit.rows(0, 1000).await.unwrap();
    let forced = rows
        .iter()
        .find(|r| r.action == "forced_logout")
        .expect("audited");
    assert_eq!(forced.user_id, Some(admin_id));
    assert_eq!(forced.resource_id, Some(ana_id.to_string()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_list_and_end_their_own_sessions_only() {
    let app = TestApp::spawn().await;
    app.user("bo@plant.example", "viewer").await;
    let login = |agent: &'static str| {
        send(
            app.anonymous()
                .request(reqwest::Method::POST, "/api/v1/auth/login")
                .header("user-agent", agent)
                .json(&json!({"email": "ana@plant.example", "password": PASSWORD})),
        )
    };
    let new = new_user("ana@plant.example", "viewer");
    app.state.auth.users.add(&new, None).await.unwrap();
    let Reply { body: phone, .. } = login("phone").await;
    let Reply { body: laptop, .. } = login("laptop").await;
    let as_laptop = app.client(laptop["access_token"].as_str());
    let Reply {
        status, body: mine, ..
    } = as_laptop.get("/api/v1/auth/sessions").await;
    assert_eq!(status, 200);
    let mine = mine.as_array().unwrap().clone();
    assert_eq!(mine.len(), 2);
    let current: Vec<&Value> = mine.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "laptop");
    assert_eq!(current[0]["id"], laptop["session_id"]);
    assert!(
        current[0]["last_activity_ms"].as_i64().unwrap()
            >= current[0]["started_ms"].as_i64().unwrap()
    );

    // Someone else's session is not theirs to end.
    let bo_sessions = app
        .state
        .auth
        .sessions
        .list(app.user_id("bo@plant.example").await)
        .await
        .unwrap();
    let Reply { status, .. } = as_laptop
        .delete(&format!("/api/v1/auth/sessions/{}", bo_sessions[0].id))
        .await;
    assert_eq!(status, 404);
    let Reply { status, .. } = as_laptop
        .delete(&format!(
            "/api/v1/auth/sessions/{}",
            phone["session_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 204);
    let Reply { status, .. } = app
        .client(Some(phone["access_token"].as_str().unwrap()))
        .get("/api/v1/auth/me")
        .await;
    assert_eq!(status, 401, "the phone is signed out");
    let Reply { status, .. } = as_laptop.get("/api/v1/auth/me").await;
    assert_eq!(status, 200, "the laptop is not");
    // The phone's refresh token died with its session.
    let Reply { status, .. } = app
        .anonymous()
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": phone["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_requests_ends_when_idle() {
    let app = TestApp::start(demo_config(&[("HYDROWATCH_AUTH__IDLE_TIMEOUT_SECS", "1")])).await;
    let ana = app.user("ana@plant.example", "viewer").await;
    let mut ws = app.ws(&ana).await;
    // A live WebSocket is not activity: requests (and token renewals) are.
    let close = ws.next_close(Duration::from_secs(5)).await;
    assert_eq!(u16::from(close.code), 4001);
    assert!(close.reason.as_str().contains("idle"), "{}", close.reason);
    let Reply { status, .. } = ana.get("/api/v1/auth/me").await;
    assert_eq!(status, 401);
    let rows = app.state.audit.rows(0, 1000).await.unwrap();
    assert!(rows
        .iter()
        .any(|r| r.action == "session.end" && r.changes.contains("idle")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_users_change_roles_and_delete_them() {
    let app = TestApp::spawn().await;
    let admin = app.user("admin@plant.example", "admin").await;
    let admin_id = app.user_id("admin@plant.example").await;

    let Reply { status, body, .. } = admin
        .post(
            "/api/v1/admin/users",
            json!({
        "email": "cy@plant.example", "name": "Cy", "role": "viewer", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let cy_id = body["id"].as_i64().unwrap();
    let Reply { status, body, .. } = admin
        .post(
            "/api/v1/admin/users",
            json!({
        "email": "cy@plant.example", "name": "Cy", "role": "viewer", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("already_exists"))
    );
    let Reply { status, body, .. } = admin
        .post(
            "/api/v1/admin/users",
            json!({
        "email": "dee@plant.example", "name": "Dee", "role": "root", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (422, &json!("role"))
    );
    let Reply {
        status,
        body: users,
        ..
    } = admin.get("/api/v1/admin/users").await;
    assert_eq!(status, 200);
    let cy = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == cy_id)
        .expect("listed");
    assert_eq!(cy["role"], "VIEWER");
    assert_eq!(
        cy["must_change_password"], true,
        "an admin's password is a first one"
    );
    assert!(cy.get("password_hash").is_none());

    let cy = app.log_in("cy@plant.example").await;
    let Reply { status, .. } = admin
        .put(
            &format!("/api/v1/admin/users/{cy_id}/role"),
            json!({"role": "ENGINEER"}),
        )
        .await;
    assert_eq!(status, 204);
    let Reply {
        status, body: me, ..
    } = cy.get("/api/v1/auth/me").await;
    assert_eq!((status, &me["role"]), (200, &json!("ENGINEER")));

    let Reply { status, body, .. } = admin
        .delete(&format!("/api/v1/admin/users/{admin_id}"))
        .await;
    assert_eq!(status, 422, "nobody deletes themselves: {body}");
    let Reply { status, .. } = admin.delete(&format!("/api/v1/admin/users/{cy_id}")).await;
    assert_eq!(status, 204);
    let Reply { status, .. } = cy.get("/api/v1/auth/me").await;
    assert_eq!(status, 401, "a deleted user's sessions end");
    let Reply { status, .. } = admin.delete(&format!("/api/v1/admin/users/{cy_id}")).await;
    assert_eq!(status, 404);
    let rows = app.state.audit.rows(0, 1000).await.unwrap();
    // The request is in the log, its password is not.
    let created = rows
        .iter()
        .find(|r| r.action == "POST /api/v1/admin/users")
        .expect("audited");
    let changes: Value = serde_json::from_str(&created.changes).unwrap();
    assert_eq!(changes["request"]["email"], "cy@plant.example");
    assert_eq!(changes["request"]["password"], "[redacted]");
    assert!(!created.changes.contains(PASSWORD));
    for action in ["user.create", "user.role", "user.delete"] {
        assert!(
            rows.iter()
                .any(|r| r.action == action && r.user_id == Some(admin_id)),
            "{action} audited with the admin"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_own_profile() {
    let app = TestApp::spawn().await;
    let ana = app.user("ana@plant.example", "viewer").await;
    let patch = |body: Value| ana.patch("/api/v1/auth/me", body);
    let Reply {
        status, body: user, ..
    } = patch(json!({"company": "Rig Works", "phone": "+49 681 302-0",
        "timezone": "Europe/Berlin", "attributes": {"shift": "B"}}))
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["company"], "Rig Works");
    assert_eq!(user["timezone"], "Europe/Berlin");
    assert_eq!(user["attributes"]["shift"], "B");
    assert_eq!(user["name"], "ana", "left out: kept");
    let Reply {
        status, body: user, ..
    } = patch(json!({"company": null})).await;
    assert_eq!(
        (status, &user["company"]),
        (200, &Value::Null),
        "null: cleared"
    );
    assert_eq!(user["phone"], "+49 681 302-0");
    for (body, field) in [
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"phone": "call me"}), "phone"),
        (json!({"attributes": [1, 2]}), "attributes"),
        (json!({"name": " "}), "name"),
    ] {
        let Reply {
            status,
            body: error,
            ..
        } = patch(body).await;
        assert_eq!(
            (status, &error["error"]["details"]["field"]),
            (422, &json!(field))
        );
    }
    let Reply { status, .. } = patch(json!({"role": "ADMIN"})).await;
    assert_eq!(status, 422, "the role is an admin's to change");
    app.stop().await;
}
