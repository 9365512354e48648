//! Two server instances sharing PostgreSQL and Redis: a logout, a role
//! change, the lockout and the login rate limit on one hold on the other
//! at once. Without Redis the limits hold in the process; when Redis goes
//! away, sign-in falls back to the database and keeps working.

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};

use common::*;
use hydrowatch::auth::AuthError;

const REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix of this test's own in the shared Redis.
fn prefix(test: &str) -> String {
    format!("hwtest:{test}:{}:", std::process::id())
}

async fn login(base: &str, email: &str, password: &str) -> (u16, Value) {
    legacy_send(
        anonymous()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
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
    let mut a = spawn_with(fast_plant_config_full(&[], keys, &env)).await;
    let mut b = spawn_with(fast_plant_config_full(&[], keys, &env)).await;
    let (on_a, on_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
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
    let (status, issued) = login(&on_a, "ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200, "{issued}");
    let token = issued["access_token"].as_str().unwrap().to_owned();
    let sid = issued["session_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, _) = legacy_send(
            http()
                .get(format!("{on_b}/api/v1/auth/me"))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 200);
    }
    let acknowledge = |base: &str| {
        http()
            .post(format!("{base}/api/v1/alerts/1/acknowledge"))
            .bearer_auth(&token)
            .json(&json!({}))
    };
    let (status, _) = legacy_send(acknowledge(&on_b)).await;
    assert_eq!(
        status, 404,
        "an engineer may acknowledge (there is no alert 1)"
    );

    // A role taken away on A holds on B at the next request.
    let (status, _) = legacy_send(
        http()
            .put(format!("{on_a}/api/v1/admin/users/{ana_id}/role"))
            .json(&json!({"role": "VIEWER"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = legacy_send(acknowledge(&on_b)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );

    // A logout on A holds on B at once, through Redis.
    let (status, _) = legacy_send(
        http()
            .post(format!("{on_a}/api/v1/auth/logout"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 204);
    assert!(redis_has(&format!("{prefix}revoked:{sid}")).await);
    let (status, _) = legacy_send(
        http()
            .get(format!("{on_b}/api/v1/auth/me"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 401);

    // The address's login bucket (5) is one bucket on both nodes: four
    // more attempts, whichever node, then 429 on either.
    for n in 0..4 {
        let base = if n % 2 == 0 { &on_a } else { &on_b };
        let (status, _) = login(base, &format!("nobody{n}@plant.example"), "wrong password!").await;
        assert_eq!(status, 401, "attempt {n}");
    }
    for base in [&on_a, &on_b] {
        let response = anonymous()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": "nobody9@plant.example", "password": "wrong password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "retry after {wait} s");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
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
    a.shutdown().await;
    b.shutdown().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_login_limits_hold_in_the_process() {
    let mut app = spawn_with(demo_config(&[
        ("HYDROWATCH_AUTH__LOGIN_PER_USER__BURST", "3"),
        ("HYDROWATCH_AUTH__LOGIN_PER_USER__PER_MIN", "1"),
    ]))
    .await;
    let base = format!("http://{}", app.addr);
    app.state
        .auth
        .users
        .add(&new_user("ana@plant.example", "engineer"), None)
        .await
        .expect("user");
    // The e-mail's bucket, whatever the password: three, then none.
    for password in ["wrong password!", PASSWORD, "wrong again!"] {
        let (status, _) = login(&base, "ana@plant.example", password).await;
        assert_ne!(status, 429);
    }
    let (status, body) = login(&base, "ana@plant.example", PASSWORD).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited"))
    );
    // An unknown e-mail has a bucket of its own, and answers the same way.
    for _ in 0..3 {
        assert_eq!(login(&base, "nobody@plant.example", PASSWORD).await.0, 401);
    }
    assert_eq!(login(&base, "nobody@plant.example", PASSWORD).await.0, 429);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_goes_away_sign_in_falls_back_to_the_database() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let redis_url = format!("redis://{}", proxy.addr);
    let prefix = prefix("redis-away");
    let mut app = spawn_with(demo_config(&[
        ("HYDROWATCH_REDIS__URL", redis_url.as_str()),
        ("HYDROWATCH_REDIS__KEY_PREFIX", prefix.as_str()),
        ("HYDROWATCH_REDIS__TIMEOUT_MS", "200"),
    ]))
    .await;
    let base = format!("http://{}", app.addr);
    app.state
        .auth
        .users
        .add(&new_user("ana@plant.example", "engineer"), None)
        .await
        .expect("user");
    let (status, issued) = login(&base, "ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200);
    let token = issued["access_token"].as_str().unwrap().to_owned();
    let me = || {
        legacy_send(
            http()
                .get(format!("{base}/api/v1/auth/me"))
                .bearer_auth(&token),
        )
    };
    assert_eq!(me().await.0, 200);

    proxy.cut();
    assert_eq!(me().await.0, 200, "checked in the database instead");
    let (status, _) = legacy_send(
        http()
            .post(format!("{base}/api/v1/auth/logout"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        me().await.0,
        401,
        "the ended session is refused all the same"
    );
    let (status, _) = login(&base, "ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200, "the rate limit falls back to this process");

    proxy.restore();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = login(&base, "ana@plant.example", PASSWORD).await;
    assert_eq!(status, 200);
    app.shutdown().await;
}
