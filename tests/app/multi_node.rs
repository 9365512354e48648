//! Two server instances sharing PostgreSQL and Redis: a logout, a role
//! change, the lockout and the login rate limit on one hold on the other
//! at once. Without Redis the limits hold in the process; when Redis goes
//! away, sign-in falls back to the database and keeps working.

use crate::common;

use std::time::Duration;

use serde_json::json;

use common::*;
use hydrowatch::auth::AuthError;

const REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix of this test's own in the shared Redis.
fn prefix(test: &str) -> String {
    format!("hwtest:{test}:{}:", std::process::id())
}

async fn redis_has(key: &str) -> bool {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("local Redis on 127.0.0.1:6379 (scripts/test starts it)");
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_logouts_role_changes_lockout_and_rate_limits() {
    let db = TestDatabase::create("two_nodes").await;
    let url = db.url();
    let prefix = prefix("two-nodes");
    let env = [
        ("HYDROWATCH_STORAGE__URL", url.as_str()),
        ("HYDROWATCH_REDIS__URL", REDIS),
        ("HYDROWATCH_REDIS__KEY_PREFIX", prefix.as_str()),
        ("HYDROWATCH_AUTH__LOGIN_PER_IP__BURST", "5"),
        ("HYDROWATCH_AUTH__LOGIN_PER_IP__PER_MIN", "1"),
        ("HYDROWATCH_AUTH__MAX_FAILURES", "3"),
        ("HYDROWATCH_AUTH__ACTIVE_KEY", "k1"),
    ];
    // Nodes that accept each other's tokens share the signing keys.
    let keys =
        "[[auth.keys]]\nid = \"k1\"\nsecret = \"a signing key both nodes share, 32+ bytes\"\n";
    let a = TestApp::start(fast_plant_config_full(&[], keys, &env)).await;
    let b = TestApp::start(fast_plant_config_full(&[], keys, &env)).await;
    let ana_id = a
        .state
        .auth
        .users
        .add(&new_user("ana@plant.example", "engineer"), None)
        .await
        .expect("user");

    // Signed in on A (one of five logins from this address), used on B:
    // B reads the session from the database once, then trusts its cache
    // while Redis vouches for it.
    let Reply {
        status,
        body: issued,
        ..
    } = a.login("ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200, "{issued}");
    let ana_on_a = a.client(issued["access_token"].as_str());
    let ana_on_b = b.client(issued["access_token"].as_str());
    let sid = issued["session_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(ana_on_b.get("/api/v1/auth/me").await.status, 200);
    }
    let acknowledge = || ana_on_b.post("/api/v1/alerts/1/acknowledge", json!({}));
    let Reply { status, .. } = acknowledge().await;
    assert_eq!(
        status, 404,
        "an engineer may acknowledge (there is no alert 1)"
    );

    // A role taken away on A holds on B at the next request.
    let Reply { status, .. } = a
        .admin()
        .await
        .put(
            &format!("/api/v1/admin/users/{ana_id}/role"),
            json!({"role": "VIEWER"}),
        )
        .await;
    assert_eq!(status, 204);
    let Reply { status, body, .. } = acknowledge().await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );

    // A logout on A holds on B at once, through Redis.
    let Reply { status, .. } = ana_on_a.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, 204);
    assert!(redis_has(&format!("{prefix}revoked:{sid}")).await);
    assert_eq!(ana_on_b.get("/api/v1/auth/me").await.status, 401);

    // The address's login bucket (5) is one bucket on both nodes: four
    // more attempts, whichever node, then 429 on either.
    for n in 0..4 {
        let node = if n % 2 == 0 { &a } else { &b };
        let Reply { status, .. } = node
            .login(&format!("nobody{n}@plant.example"), "wrong password!")
            .await;
        assert_eq!(status, 401, "attempt {n}");
    }
    for node in [&a, &b] {
        let response = node.login("nobody9@plant.example", "wrong password!").await;
        assert_eq!(response.status, 429);
        let wait: u64 = response.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "retry after {wait} s");
        assert_eq!(response.body["error"]["code"], "rate_limited");
    }

    // The lockout counts failures on both nodes together.
    for node in [&a, &b, &a] {
        let failed = node
            .state
            .auth
            .logins
            .login("ana@plant.example", "not the password", None, None)
            .await;
        assert!(matches!(failed, Err(AuthError::InvalidCredentials)));
    }
    let locked = b
        .state
        .auth
        .logins
        .login("ana@plant.example", PASSWORD, None, None)
        .await;
    assert!(
        matches!(locked, Err(AuthError::InvalidCredentials)),
        "locked on the other node too"
    );
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_login_limits_hold_in_the_process() {
    let app = TestApp::start(demo_config(&[
        ("HYDROWATCH_AUTH__LOGIN_PER_USER__BURST", "3"),
        ("HYDROWATCH_AUTH__LOGIN_PER_USER__PER_MIN", "1"),
    ]))
    .await;
    app.state
        .auth
        .users
        .add(&new_user("ana@plant.example", "engineer"), None)
        .await
        .expect("user");
    // The e-mail's bucket, whatever the password: three, then none.
    for password in ["wrong password!", PASSWORD, "wrong again!"] {
        let Reply { status, .. } = app.login("ana@plant.example", password).await;
        assert_ne!(status, 429);
    }
    let Reply { status, body, .. } = app.login("ana@plant.example", PASSWORD).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited"))
    );
    // An unknown e-mail has a bucket of its own, and answers the same way.
    for _ in 0..3 {
        assert_eq!(
            app.login("nobody@plant.example", PASSWORD).await.status,
            401
        );
    }
    assert_eq!(
        app.login("nobody@plant.example", PASSWORD).await.status,
        429
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_goes_away_sign_in_falls_back_to_the_database() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let redis_url = format!("redis://{}", proxy.addr);
    let prefix = prefix("redis-away");
    let app = TestApp::start(demo_config(&[
        ("HYDROWATCH_REDIS__URL", redis_url.as_str()),
        ("HYDROWATCH_REDIS__KEY_PREFIX", prefix.as_str()),
        ("HYDROWATCH_REDIS__TIMEOUT_MS", "200"),
    ]))
    .await;
    app.state
        .auth
        .users
        .add(&new_user("ana@plant.example", "engineer"), None)
        .await
        .expect("user");
    let Reply {
        status,
        body: issued,
        ..
    } = app.login("ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200);
    let ana = app.client(issued["access_token"].as_str());
    let me = || ana.get("/api/v1/auth/me");
    assert_eq!(me().await.status, 200);

    proxy.cut();
    assert_eq!(me().await.status, 200, "checked in the database instead");
    let Reply { status, .. } = ana.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, 204);
    assert_eq!(
        me().await.status,
        401,
        "the ended session is refused all the same"
    );
    let Reply { status, .. } = app.login("ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200, "the rate limit falls back to this process");

    proxy.restore();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Reply { status, .. } = app.login("ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200);
    app.stop().await;
}
