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

async fn login(base: &str, email: &str, password: &str) -> (u16, Value) {
    legacy_send(
        http()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

async fn refresh(base: &str, token: &Value) -> (u16, Value) {
    legacy_send(
        http()
            .post(format!("{base}/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": token})),
    )
    .await
}

async fn me(base: &str, access: &Value) -> (u16, Value) {
    legacy_send(
        http()
            .get(format!("{base}/api/v1/auth/me"))
            .bearer_auth(access.as_str().unwrap_or_default()),
    )
    .await
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
    let mut app = spawn_with(demo_config(env)).await;
    let base = format!("http://{}", app.addr);
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
    let wrong = login(&base, "ana@plant.example", "not the password at all").await;
    let unknown = login(&base, "nobody@plant.example", "not the password at all").await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.1["error"]["code"], "invalid_credentials");

    // Logged in (the e-mail in any case): who am I.
    let (status, first) = login(&base, " ANA@plant.example", PASSWORD).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let (status, who) = me(&base, &first["access_token"]).await;
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
    let (status, body) = legacy_send(anonymous().get(format!("{base}/api/v1/auth/me"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (status, _) = me(&base, &json!("eyJhbGciOiJub25lIn0.e30.")).await;
    assert_eq!(status, 401);

    // A refresh hands out a new pair of the same session.
    let (status, second) = refresh(&base, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(me(&base, &second["access_token"]).await.0, 200);

    // The first refresh token again: someone holds a copy. The session ends:
    // its newest refresh token and its access tokens stop working.
    let (status, body) = refresh(&base, &first["refresh_token"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    let (status, body) = refresh(&base, &second["refresh_token"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert_eq!(me(&base, &second["access_token"]).await.0, 401);
    assert_eq!(refresh(&base, &json!("not-a-token")).await.0, 401);

    // Logout ends a session the same way.
    let (_, third) = login(&base, "ana@plant.example", PASSWORD).await;
    assert_eq!(me(&base, &third["access_token"]).await.0, 200);
    let (status, _) = legacy_send(
        http()
            .post(format!("{base}/api/v1/auth/logout"))
            .bearer_auth(third["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(me(&base, &third["access_token"]).await.0, 401);
    assert_eq!(refresh(&base, &third["refresh_token"]).await.0, 401);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_account_and_sessions_are_limited() {
    let mut app = spawn_with(demo_config(&[
        ("HYDROWATCH_AUTH__MAX_FAILURES", "3"),
        ("HYDROWATCH_AUTH__LOCKOUT_SECS", "600"),
        ("HYDROWATCH_AUTH__MAX_SESSIONS_PER_USER", "2"),
    ]))
    .await;
    let base = format!("http://{}", app.addr);
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
            login(&base, "ana@plant.example", "guessing wrong again")
                .await
                .0,
            401
        );
    }
    // Locked: even the right password gets the answer a wrong one gets.
    let locked = login(&base, "ana@plant.example", PASSWORD).await;
    let wrong = login(&base, "nobody@plant.example", PASSWORD).await;
    assert_eq!(locked, wrong);
    // Another account is not affected.
    let (status, _) = login(&base, "bo@plant.example", PASSWORD).await;
    assert_eq!(status, 200);

    // Two sessions at most: each login beyond ends the oldest.
    let (_, second) = login(&base, "bo@plant.example", PASSWORD).await;
    let (_, third) = login(&base, "bo@plant.example", PASSWORD).await;
    let (_, fourth) = login(&base, "bo@plant.example", PASSWORD).await;
    assert_eq!(me(&base, &second["access_token"]).await.0, 401);
    assert_eq!(me(&base, &third["access_token"]).await.0, 200);
    assert_eq!(me(&base, &fourth["access_token"]).await.0, 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_keeps_to_the_policy_and_ends_the_other_sessions() {
    let mut app = spawn_app().await;
    let base = format!("http://{}", app.addr);
    app.state
        .auth
        .users
        .add(&user("ana@plant.example", Role::Viewer), None)
        .await
        .expect("user");
    let (_, laptop) = login(&base, "ana@plant.example", PASSWORD).await;
    let (_, phone) = login(&base, "ana@plant.example", PASSWORD).await;
    let change = |current: &str, new: &str| {
        http()
            .post(format!("{base}/api/v1/auth/password"))
            .bearer_auth(laptop["access_token"].as_str().unwrap())
            .json(&json!({"current_password": current, "new_password": new}))
    };
    let field = |body: &Value| {
        body["error"]["details"]["field"]
            .as_str()
            .map(str::to_owned)
    };
    let (status, body) =
        legacy_send(change("not my password at all", "a fresh long passphrase")).await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("current_password".into())),
        "{body}"
    );
    // The current password is the newest of the last five.
    let (status, body) = legacy_send(change(PASSWORD, PASSWORD)).await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("password".into())),
        "{body}"
    );
    let (status, body) = legacy_send(change(PASSWORD, "short one")).await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("password".into())),
        "{body}"
    );
    let (status, _) = legacy_send(change(PASSWORD, "a fresh long passphrase")).await;
    assert_eq!(status, 204);
    // The phone's session is over; the laptop's goes on.
    assert_eq!(me(&base, &phone["access_token"]).await.0, 401);
    assert_eq!(me(&base, &laptop["access_token"]).await.0, 200);
    assert_eq!(login(&base, "ana@plant.example", PASSWORD).await.0, 401);
    assert_eq!(
        login(&base, "ana@plant.example", "a fresh long passphrase")
            .await
            .0,
        200
    );
    // And back to the old one: refused, it is among the last five.
    let (status, body) = legacy_send(change("a fresh long passphrase", PASSWORD)).await;
    assert_eq!(
        (status, field(&body)),
        (422, Some("password".into())),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("used recently"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_administrator_is_created_once_with_the_setup_code() {
    let mut app = spawn_app().await;
    let base = format!("http://{}", app.addr);
    let code = app
        .state
        .auth
        .logins
        .setup_code()
        .await
        .expect("store")
        .expect("no users yet: a setup code");
    let setup = |code: &str, password: &str| {
        legacy_send(
            anonymous()
                .post(format!("{base}/api/v1/auth/setup"))
                .json(&json!({"code": code, "email": "root@plant.example",
                              "name": "Root", "password": password})),
        )
    };
    let (status, body) = setup("0000", PASSWORD).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("setup_refused"))
    );
    // A password the policy refuses does not use the code up.
    let (status, body) = setup(&code, "short").await;
    assert_eq!(status, 422, "{body}");
    let (status, issued) = setup(&code, PASSWORD).await;
    assert_eq!(status, 200, "{issued}");
    let (status, who) = me(&base, &issued["access_token"]).await;
    assert_eq!(status, 200);
    assert_eq!(who["role"], "ADMIN");
    assert_eq!(who["email"], "root@plant.example");
    // Once only.
    let (status, _) = setup(&code, "another long passphrase").await;
    assert_eq!(status, 403);
    assert_eq!(
        app.state.auth.logins.setup_code().await.expect("store"),
        None
    );
    app.shutdown().await;
}
