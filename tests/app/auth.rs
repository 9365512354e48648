//! Sign-in end to end: users with argon2id passwords under a policy, login
//! that tells nobody which e-mails exist, access tokens checked against a
//! live session, refresh tokens rotated on every use (a replayed one ends
//! the session), lockout, the per-user session limit, logout.

use crate::common;

use serde_json::{json, Value};

use common::*;
use hydrowatch::auth::roles::Role;
use hydrowatch::auth::{AuthError, NewUser};

const PASSWORD: &str = "a long enough secret";

async fn refresh(app: &TestApp, token: &Value) -> Reply {
    app.anonymous()
        .post("/api/v1/auth/refresh", json!({"refresh_token": token}))
        .await
}

async fn me(app: &TestApp, access: &Value) -> Reply {
    app.client(access.as_str()).get("/api/v1/auth/me").await
}

fn user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.into(),
        name: "Ana Operator".into(),
        role,
        password: PASSWORD.into(),
        must_change_password: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_rotation_reuse_and_logout_on_sqlite() {
    login_refresh_rotation_reuse_and_logout(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_rotation_reuse_and_logout_on_postgres() {
    let db = TestDatabase::create("auth_flow").await;
    let url = db.url();
    login_refresh_rotation_reuse_and_logout(&[("HYDROWATCH_STORAGE__URL", url.as_str())]).await;
    db.drop_now().await;
}

async fn login_refresh_rotation_reuse_and_logout(env: &[(&str, &str)]) {
    let app = TestApp::start(demo_config(env)).await;
    let auth = app.state.auth.clone();
    auth.users
        .add(&user("Ana@Plant.example", Role::Engineer), None)
        .await
        .expect("user");
    // The policy holds for every new user, and an e-mail is taken once.
    let mut weak = user("bo@plant.example", Role::Viewer);
    weak.password = "qwerty123456".into();
    assert!(matches!(
        auth.users.add(&weak, None).await,
        Err(AuthError::Password(_))
    ));
    assert!(matches!(
        auth.users
            .add(&user("ana@plant.example", Role::Viewer), None)
            .await,
        Err(AuthError::EmailTaken)
    ));

    // A wrong password and an unknown e-mail get the very same answer.
    let wrong = app
        .login("ana@plant.example", "not the password at all")
        .await;
    let unknown = app
        .login("nobody@plant.example", "not the password at all")
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    assert_eq!(wrong.body["error"]["code"], "invalid_credentials");

    // Logged in (the e-mail in any case): who am I.
    let Reply {
        status,
        body: first,
        ..
    } = app.login(" ANA@plant.example", PASSWORD).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let Reply {
        status, body: who, ..
    } = me(&app, &first["access_token"]).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["email"], "ana@plant.example");
    assert_eq!(who["role"], "ENGINEER");
    assert!(who["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("alerts:act")));
    assert!(!who["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("users:manage")));
    // No token, or a forged one.
    let Reply { status, body, .. } = app.anonymous().get("/api/v1/auth/me").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let Reply { status, .. } = me(&app, &json!("eyJhbGciOiJub25lIn0.e30.")).await;
    assert_eq!(status, 401);

    // A refresh hands out a new pair of the same session.
    let Reply {
        status,
        body: second,
        ..
    } = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(me(&app, &second["access_token"]).await.status, 200);

    // The first refresh token again: someone holds a copy. The session ends:
    // its newest refresh token and its access tokens stop working.
    let Reply { status, body, .. } = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    let Reply { status, body, .. } = refresh(&app, &second["refresh_token"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert_eq!(me(&app, &second["access_token"]).await.status, 401);
    assert_eq!(refresh(&app, &json!("not-a-token")).await.status, 401);

    // Logout ends a session the same way.
    let Reply { body: third, .. } = app.login("ana@plant.example", PASSWORD).await;
    assert_eq!(me(&app, &third["access_token"]).await.status, 200);
    let Reply { status, .. } = app
        .client(third["access_token"].as_str())
        .post("/api/v1/auth/logout", json!({}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(me(&app, &third["access_token"]).await.status, 401);
    assert_eq!(refresh(&app, &third["refresh_token"]).await.status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_account_and_sessions_are_limited() {
    let app = TestApp::start(demo_config(&[
        ("HYDROWATCH_AUTH__MAX_FAILURES", "3"),
        ("HYDROWATCH_AUTH__LOCKOUT_SECS", "600"),
        ("HYDROWATCH_AUTH__MAX_SESSIONS_PER_USER", "2"),
    ]))
    .await;
    let auth = app.state.auth.clone();
    auth.users
        .add(&user("ana@plant.example", Role::Viewer), None)
        .await
        .expect("ana");
    auth.users
        .add(&user("bo@plant.example", Role::Admin), None)
        .await
        .expect("bo");
    for _ in 0..3 {
        assert_eq!(
            app.login("ana@plant.example", "guessing wrong again")
                .await
                .status,
            401
        );
    }
    // Locked: even the right password gets the answer a wrong one gets.
    let locked = app.login("ana@plant.example", PASSWORD).await;
    let wrong = app.login("nobody@plant.example", PASSWORD).await;
    assert_eq!((locked.status, &locked.body), (wrong.status, &wrong.body));
    // Another account is not affected.
    let Reply { status, .. } = app.login("bo@plant.example", PASSWORD).await;
    assert_eq!(status, 200);

    // Two sessions at most: each login beyond ends the oldest.
    let Reply { body: second, .. } = app.login("bo@plant.example", PASSWORD).await;
    let Reply { body: third, .. } = app.login("bo@plant.example", PASSWORD).await;
    let Reply { body: fourth, .. } = app.login("bo@plant.example", PASSWORD).await;
    assert_eq!(me(&app, &second["access_token"]).await.status, 401);
    assert_eq!(me(&app, &third["access_token"]).await.status, 200);
    assert_eq!(me(&app, &fourth["access_token"]).await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_keeps_to_the_policy_and_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    app.state
        .auth
        .users
        .add(&user("ana@plant.example", Role::Viewer), None)
        .await
        .expect("user");
    let Reply { body: laptop, .. } = app.login("ana@plant.example", PASSWORD).await;
    let Reply { body: phone, .. } = app.login("ana@plant.example", PASSWORD).await;
    let on_laptop = app.client(laptop["access_token"].as_str());
    let change = |current: &str, new: &str| {
        on_laptop.post(
            "/api/v1/auth/password",
            json!({"current_password": current, "new_password": new}),
        )
    };
    let field = |body: &Value| {
        body["error"]["details"]["field"]
            .as_str()
            .map(str::to_owned)
    };
    let Reply { status, body, .. } =
        change("not my password at all", "a fresh long passphrase").await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("current_password".into())),
        "{body}"
    );
    // The current password is the newest of the last five.
    let Reply { status, body, .. } = change(PASSWORD, PASSWORD).await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("password".into())),
        "{body}"
    );
    let Reply { status, body, .. } = change(PASSWORD, "short one").await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("password".into())),
        "{body}"
    );
    let Reply { status, .. } = change(PASSWORD, "a fresh long passphrase").await;
    assert_eq!(status, 204);
    // The phone's session is over; the laptop's goes on.
    assert_eq!(me(&app, &phone["access_token"]).await.status, 401);
    assert_eq!(me(&app, &laptop["access_token"]).await.status, 200);
    assert_eq!(app.login("ana@plant.example", PASSWORD).await.status, 401);
    assert_eq!(
        app.login("ana@plant.example", "a fresh long passphrase")
            .await
            .status,
        200
    );
    // And back to the old one: refused, it is among the last five.
    let Reply { status, body, .. } = change("a fresh long passphrase", PASSWORD).await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("password".into())),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("used recently"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_administrator_is_created_once_with_the_setup_code() {
    let app = TestApp::spawn().await;
    let code = app
        .state
        .auth
        .logins
        .setup_code()
        .await
        .expect("store")
        .expect("no users yet: a setup code");
    let anonymous = app.anonymous();
    let setup = |code: &str, password: &str| {
        anonymous.post(
            "/api/v1/auth/setup",
            json!({"code": code, "email": "root@plant.example",
                   "name": "Root", "password": password}),
        )
    };
    let Reply { status, body, .. } = setup("0000", PASSWORD).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("setup_refused"))
    );
    // A password the policy refuses does not use the code up.
    let Reply { status, body, .. } = setup(&code, "short").await;
    assert_eq!(status, 422, "{body}");
    let Reply {
        status,
        body: issued,
        ..
    } = setup(&code, PASSWORD).await;
    assert_eq!(status, 200, "{issued}");
    let Reply {
        status, body: who, ..
    } = me(&app, &issued["access_token"]).await;
    assert_eq!(status, 200);
    assert_eq!(who["role"], "ADMIN");
    assert_eq!(who["email"], "root@plant.example");
    // Once only.
    let Reply { status, .. } = setup(&code, "another long passphrase").await;
    assert_eq!(status, 403);
    assert_eq!(
        app.state.auth.logins.setup_code().await.expect("store"),
        None
    );
    app.stop().await;
}
