//! Who may call what, over real HTTP: every operation of the OpenAPI
//! document, called by each role, with no token, an expired token, a token
//! signed by another key, an `alg: none` token, the token of an ended
//! session, a revoked and an expired API key, an API key scoped to `read`,
//! and the break-glass token. The expected access of each route is
//! written out here, independently of the server's own table, and the test
//! fails when the document has an operation this list does not know.

use crate::common;

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{json, Value};

use common::*;
use hydrowatch::auth::roles::Role;
use hydrowatch::auth::tokens::{Claims, SigningKey, TokenKeys};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Anyone, without a token.
    Public,
    /// The WebSocket: a header token is checked like any other; without
    /// one the upgrade goes ahead and the client signs in in band.
    InBand,
    /// Any signed-in user (not the break-glass token: it has no session).
    User,
    /// This role and those above it.
    AtLeast(Role),
}

use Expect::*;

const V: Expect = AtLeast(Role::Viewer);
const E: Expect = AtLeast(Role::Engineer);
const A: Expect = AtLeast(Role::Admin);

/// Every operation and who may call it: VIEWER reads; ENGINEER also sends
/// samples, acts on alerts and manages rules, policies, silences and
/// simulated conditions; ADMIN also manages actors, storage and the audit
/// log.
const EXPECTED: &[(&str, &str, Expect)] = &[
    ("post", "/api/v1/auth/login", Public),
    ("post", "/api/v1/auth/refresh", Public),
    ("post", "/api/v1/auth/setup", Public),
    ("post", "/api/v1/auth/logout", User),
    ("get", "/api/v1/auth/me", User),
    ("patch", "/api/v1/auth/me", User),
    ("post", "/api/v1/auth/password", User),
    ("get", "/api/v1/auth/sessions", User),
    ("post", "/api/v1/auth/mfa/enrol", User),
    ("post", "/api/v1/auth/mfa/confirm", User),
    ("post", "/api/v1/auth/mfa/disable", User),
    ("post", "/api/v1/auth/password-reset", Public),
    ("post", "/api/v1/auth/password-reset/confirm", Public),
    ("post", "/api/v1/auth/verify-email", User),
    ("post", "/api/v1/auth/verify-email/confirm", Public),
    ("delete", "/api/v1/auth/sessions/{id}", User),
    ("get", "/api/v1/openapi.json", Public),
    ("get", "/api/v1/docs", Public),
    ("get", "/api/v1/ws", InBand),
    ("get", "/api/v1/equipment", V),
    ("get", "/api/v1/equipment/{id}", V),
    ("get", "/api/v1/equipment/{id}/series", V),
    ("get", "/api/v1/equipment/{id}/stats", V),
    ("get", "/api/v1/equipment/{id}/anomalies", V),
    ("get", "/api/v1/equipment/{id}/anomaly-trend", V),
    ("get", "/api/v1/equipment/{id}/setpoints", V),
    ("put", "/api/v1/equipment/{id}/setpoints/{setpoint}", E),
    ("post", "/api/v1/ingest", E),
    ("post", "/api/v1/detect", E),
    ("get", "/api/v1/alerts", V),
    ("get", "/api/v1/alerts/{id}", V),
    ("post", "/api/v1/alerts/{id}/acknowledge", E),
    ("post", "/api/v1/alerts/{id}/clear", E),
    ("get", "/api/v1/silences", V),
    ("post", "/api/v1/silences", E),
    ("delete", "/api/v1/silences/{id}", E),
    ("get", "/api/v1/alert-rules", V),
    ("post", "/api/v1/alert-rules", E),
    ("get", "/api/v1/alert-rules/{id}", V),
    ("put", "/api/v1/alert-rules/{id}", E),
    ("delete", "/api/v1/alert-rules/{id}", E),
    ("get", "/api/v1/escalation-policies", V),
    ("post", "/api/v1/escalation-policies", E),
    ("get", "/api/v1/escalation-policies/{name}", V),
    ("put", "/api/v1/escalation-policies/{name}", E),
    ("delete", "/api/v1/escalation-policies/{name}", E),
    ("get", "/api/v1/admin/simulators", E),
    ("put", "/api/v1/admin/simulators/{id}/condition", E),
    ("post", "/api/v1/admin/simulators/{id}/{action}", E),
    ("get", "/api/v1/admin/simulators/{id}/faults", E),
    ("put", "/api/v1/admin/simulators/{id}/faults", E),
    ("get", "/api/v1/admin/actors", A),
    ("post", "/api/v1/admin/actors/{path}/{action}", A),
    ("get", "/api/v1/admin/storage/stats", A),
    ("get", "/api/v1/admin/storage/timescale", A),
    ("post", "/api/v1/admin/storage/partitions", A),
    ("post", "/api/v1/admin/storage/cleanup", A),
    ("post", "/api/v1/admin/storage/compress", A),
    ("get", "/api/v1/admin/quarantine", A),
    ("get", "/api/v1/admin/audit", A),
    ("get", "/api/v1/admin/api-keys", A),
    ("post", "/api/v1/admin/api-keys", A),
    ("delete", "/api/v1/admin/api-keys/{id}", A),
    ("post", "/api/v1/admin/users/{id}/mfa/reset", A),
    ("get", "/api/v1/admin/users", A),
    ("post", "/api/v1/admin/users", A),
    ("delete", "/api/v1/admin/users/{id}", A),
    ("put", "/api/v1/admin/users/{id}/role", A),
    ("put", "/api/v1/admin/users/{id}/equipment", A),
    ("get", "/api/v1/admin/users/{id}/sessions", A),
    ("post", "/api/v1/admin/users/{id}/logout", A),
    ("delete", "/api/v1/admin/sessions/{id}", A),
];

const KEY_ID: &str = "k1";
const KEY_SECRET: &str = "access-matrix-signing-key-0123456789";

/// A concrete path for a documented one: ids that name nothing, so that
/// an allowed call changes nothing (it answers 404 or 422).
fn concrete(path: &str) -> String {
    path.replace("{id}", "no-such-thing")
        .replace("{name}", "no-such-policy")
        .replace("{path}", "no/such/actor")
        .replace("{action}", "no-such-action")
}

/// `method path` (a documented path) as `who`, with an empty JSON body
/// where the method takes one.
async fn call(who: &Client, method: &str, path: &str) -> Reply {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut request = who.request(method.clone(), &concrete(path));
    if [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ]
    .contains(&method)
    {
        request = request.json(&json!({}));
    }
    send(request).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn claims(user_id: i64, role: Role, sid: &str, exp_in_secs: i64) -> Claims {
    let now = hydrowatch_actors::clock::now_ms() / 1000;
    Claims::new(user_id, role, sid, now - 60, now + exp_in_secs)
}

fn signed(secret: &str, claims: &Claims) -> String {
    let keys = TokenKeys::new(
        &[SigningKey {
            id: KEY_ID.into(),
            secret: secret.into(),
        }],
        KEY_ID,
    )
    .expect("keys");
    keys.sign(claims)
}

fn alg_none(claims: &Claims) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"alg": "none", "typ": "JWT", "kid": KEY_ID});
    let body = serde_json::to_value(claims).expect("claims");
    format!("{}.{}.", b64(&header), b64(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_and_every_bad_credential_as_it_should() {
    let settings = format!("[[auth.keys]]\nid = \"{KEY_ID}\"\nsecret = \"{KEY_SECRET}\"\n");
    let app = TestApp::start(fast_plant_config_full(
        &[],
        &settings,
        &[
            ("HYDROWATCH_AUTH__ACTIVE_KEY", KEY_ID),
            // Sessions pile up below; none may end for the limit.
            ("HYDROWATCH_AUTH__MAX_SESSIONS_PER_USER", "1000"),
            // As are logins: each call below signs in afresh.
            ("HYDROWATCH_AUTH__LOGIN_PER_USER__BURST", "1000"),
        ],
    ))
    .await;

    // The list above is the document's, no more, no less.
    let doc = app.anonymous().get("/api/v1/openapi.json").await.body;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let documented: BTreeSet<(String, String)> = documented
        .into_iter()
        .filter(|(_, p)| p.starts_with("/api/v1/"))
        .collect();
    let listed: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, listed,
        "every documented operation needs its expected access here"
    );

    let roles = [
        ("viewer@plant.example", Role::Viewer),
        ("engineer@plant.example", Role::Engineer),
        ("admin@plant.example", Role::Admin),
    ];
    for (email, role) in roles {
        app.user(email, role.as_str()).await;
    }
    // Bad credentials, each wrong in one way only: the claims are those of
    // a live admin session.
    let admin_id = app
        .state
        .auth
        .logins
        .login("admin@plant.example", PASSWORD, None, None)
        .await
        .expect("login");
    let admin_user = app.user_id("admin@plant.example").await;
    let live_sid = admin_id.session_id.clone();
    let expired = signed(KEY_SECRET, &claims(admin_user, Role::Admin, &live_sid, -5));
    let foreign = signed(
        "another-key-entirely-0123456789abcdef",
        &claims(admin_user, Role::Admin, &live_sid, 600),
    );
    let none = alg_none(&claims(admin_user, Role::Admin, &live_sid, 600));
    // The same key and a live-looking claim set, but a session that ended.
    let ended = app.log_in("admin@plant.example").await;
    let Reply { status, .. } = call(&ended, "post", "/api/v1/auth/logout").await;
    assert_eq!(status, 204);
    // A genuine token of our key still works (the forged ones differ only
    // in what is tested).
    let genuine = signed(KEY_SECRET, &claims(admin_user, Role::Admin, &live_sid, 600));
    let Reply { status, body, .. } =
        call(&app.client(Some(&genuine)), "get", "/api/v1/auth/me").await;
    assert_eq!(status, 200, "the claims are right: {body}");
    assert_eq!(body["email"], "admin@plant.example");
    // API keys: one that reads, one revoked, one expired.
    let read_key = app.api_key(&["read"]).await;
    let admin = app.log_in("admin@plant.example").await;
    let make_key = async |scopes: Value| {
        let made = admin
            .post(
                "/api/v1/admin/api-keys",
                json!({"name": "matrix", "scopes": scopes,
                       "rate": {"burst": 10000, "per_min": 10000}}),
            )
            .await
            .body;
        (
            made["key"].as_str().expect("a key").to_owned(),
            made["record"]["id"].as_i64().unwrap(),
        )
    };
    let (revoked_key, revoked_id) = make_key(json!(["read"])).await;
    let revoked = admin
        .delete(&format!("/api/v1/admin/api-keys/{revoked_id}"))
        .await;
    assert_eq!(revoked.status, 204);
    let expired_key = format!("hwk_{}", "e".repeat(64));
    let now = hydrowatch_actors::clock::now_ms();
    app.state
        .store
        .create_api_key(&hydrowatch::store::api_keys::NewApiKey {
            user_id: admin_user,
            name: "expired",
            prefix: &expired_key[..12],
            hash: &hydrowatch::auth::tokens::digest(&expired_key),
            scopes: &["read".to_owned()],
            rate_burst: 10,
            rate_per_min: 10,
            created_at: now - 86_400_000,
            expires_at: Some(now - 1),
        })
        .await
        .expect("stored");
    let bad: [(&str, Client); 7] = [
        ("no token", app.anonymous()),
        ("expired", app.client(Some(&expired))),
        ("foreign key", app.client(Some(&foreign))),
        ("alg none", app.client(Some(&none))),
        ("ended session", ended),
        ("revoked API key", app.client(Some(&revoked_key))),
        ("expired API key", app.client(Some(&expired_key))),
    ];
    let break_glass = app.break_glass();

    let mut checked = 0;
    for (method, path, expect) in EXPECTED {
        // Each role with a session of its own (logout ends it).
        for (email, role) in roles {
            let user = app.log_in(email).await;
            let Reply { status, body, .. } = call(&user, method, path).await;
            let allowed = match expect {
                Public | InBand | User => true,
                AtLeast(lowest) => role >= *lowest,
            };
            if allowed {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} as {role:?}: allowed, but {status} {body}"
                );
            } else {
                assert_eq!(
                    (status, code(&body)),
                    (403, "forbidden"),
                    "{method} {path} as {role:?}: {body}"
                );
            }
            checked += 1;
        }
        for (what, who) in &bad {
            let Reply { status, body, .. } = call(who, method, path).await;
            match (expect, who.token()) {
                (Public, _) | (InBand, None) => assert!(
                    status != 401 && status != 403,
                    "{method} {path} with {what}: public, but {status} {body}"
                ),
                _ => {
                    assert_eq!(status, 401, "{method} {path} with {what}: {body}");
                    assert_eq!(code(&body), "invalid_token", "{method} {path} with {what}");
                }
            }
            checked += 1;
        }
        // A key scoped to `read` reads, and does nothing else.
        let Reply { status, body, .. } = call(&read_key, method, path).await;
        match expect {
            Public | InBand | AtLeast(Role::Viewer) => assert!(
                status != 401 && status != 403,
                "{method} {path} with a read key: {status} {body}"
            ),
            User => assert_eq!(
                (status, code(&body)),
                (403, "user_session_required"),
                "{method} {path} with a read key"
            ),
            AtLeast(_) => assert_eq!(
                (status, code(&body)),
                (403, "forbidden"),
                "{method} {path} with a read key"
            ),
        }
        checked += 1;
        // The break-glass token is an administrator without a user.
        let Reply { status, body, .. } = call(&break_glass, method, path).await;
        match expect {
            User => {
                assert_eq!(
                    (status, code(&body)),
                    (403, "user_session_required"),
                    "{method} {path} with break-glass: {body}"
                );
            }
            _ => assert!(
                status != 401 && status != 403,
                "{method} {path} with break-glass: {status} {body}"
            ),
        }
        checked += 1;
    }
    assert_eq!(checked, EXPECTED.len() * 12);

    // Outside the API: health and the wallboard's files are public.
    for path in [
        "/",
        "/wallboard.js",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        let status = app.anonymous().get(path).await.status;
        assert!((200..300).contains(&status), "{path}: {status}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_password_change_comes_before_anything_else_and_roles_hold_at_once() {
    let app = TestApp::spawn().await;
    let new = hydrowatch::auth::NewUser {
        must_change_password: true,
        ..new_user("new@plant.example", "engineer")
    };
    let id = app.state.auth.users.add(&new, None).await.expect("user");
    let newcomer = app.log_in("new@plant.example").await;
    let Reply { status, body, .. } = call(&newcomer, "get", "/api/v1/equipment").await;
    assert_eq!(
        (status, code(&body)),
        (403, "password_change_required"),
        "{body}"
    );
    let Reply { status, body, .. } = call(&newcomer, "get", "/api/v1/auth/me").await;
    assert_eq!(status, 200);
    assert_eq!(body["must_change_password"], true);
    let changed = newcomer
        .post(
            "/api/v1/auth/password",
            json!({"current_password": PASSWORD,
                   "new_password": "a brand new passphrase for the rig"}),
        )
        .await;
    assert_eq!(changed.status, 204);
    let Reply { status, .. } = call(&newcomer, "get", "/api/v1/equipment").await;
    assert_eq!(status, 200, "the same session goes on after the change");

    // A role taken away holds for the next request, not when the token
    // expires: the token says ENGINEER, the database now VIEWER.
    let Reply { status, .. } = call(&newcomer, "post", "/api/v1/alerts/1/acknowledge").await;
    assert_eq!(
        status, 404,
        "an engineer may acknowledge (there is no alert 1)"
    );
    app.state
        .store
        .set_role(id, "VIEWER")
        .await
        .expect("role changed");
    let Reply { status, body, .. } = call(&newcomer, "post", "/api/v1/alerts/1/acknowledge").await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_signs_in_with_a_header_or_its_first_frame() {
    use std::time::Duration;
    use tokio_tungstenite::tungstenite;

    let app = TestApp::spawn().await;
    let viewer = app.user("viewer@plant.example", "viewer").await;

    // A browser: no header, an `auth` frame first, then the protocol.
    let mut ws = app.ws(&app.anonymous()).await;
    ws.send_json(json!({"type": "auth", "token": viewer.token()}))
        .await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1"]}))
        .await;
    let hello = ws.next_of("hello", Duration::from_secs(5)).await;
    assert!(hello.is_some(), "signed in, the session starts");
    let snapshot = ws.next_of("snapshot", Duration::from_secs(10)).await;
    assert!(snapshot.is_some(), "and the subscription is served");

    // Anything else first, or a bad token: closed with 4401.
    let mut ws = app.ws(&app.anonymous()).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1"]}))
        .await;
    let close = ws.next_close(Duration::from_secs(5)).await;
    assert_eq!(u16::from(close.code), 4401);
    let mut ws = app.ws(&app.anonymous()).await;
    ws.send_json(json!({"type": "auth", "token": "not-a-token"}))
        .await;
    let close = ws.next_close(Duration::from_secs(5)).await;
    assert_eq!(u16::from(close.code), 4401);
    assert_eq!(close.reason.as_str(), "invalid_token");

    // A header is checked before upgrading: a plain 401.
    let refused = tokio_tungstenite::connect_async({
        use tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/api/v1/ws", app.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", "Bearer not-a-token".parse().unwrap());
        request
    })
    .await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    let mut ws = app.ws(&viewer).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-2"]}))
        .await;
    assert!(ws
        .next_of("snapshot", Duration::from_secs(10))
        .await
        .is_some());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_limited_to_some_equipment_sees_and_subscribes_to_those_only() {
    use std::time::Duration;

    let app = TestApp::spawn().await;
    let rig1 = app.user("rig1@plant.example", "viewer").await;
    let id = app.user_id("rig1@plant.example").await;
    let admin = app.admin().await;
    let scope = |equipment: Value| {
        admin.put(
            &format!("/api/v1/admin/users/{id}/equipment"),
            json!({ "equipment": equipment }),
        )
    };
    let refused = scope(json!(["rig-9"])).await;
    assert_eq!(refused.status, 422, "an unknown unit");
    assert_eq!(scope(json!(["rig-1"])).await.status, 204);

    let Reply {
        status, body: list, ..
    } = call(&rig1, "get", "/api/v1/equipment").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["equipment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["rig-1"]);
    let Reply { status, .. } = call(&rig1, "get", "/api/v1/equipment/rig-1/stats").await;
    assert_eq!(status, 200);
    let Reply { status, body, .. } = call(&rig1, "get", "/api/v1/equipment/rig-2/stats").await;
    assert_eq!(
        (status, code(&body)),
        (403, "forbidden_equipment"),
        "{body}"
    );

    let mut ws = app.ws(&rig1).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-1", "rig-2"]}))
        .await;
    let error = ws
        .next_of("error", Duration::from_secs(5))
        .await
        .expect("refused");
    assert_eq!(error["error"]["code"], "forbidden_equipment");
    assert_eq!(error["error"]["details"]["equipment"], json!(["rig-2"]));
    let subscribed = ws
        .next_of("subscribed", Duration::from_secs(5))
        .await
        .expect("subscribed");
    assert_eq!(subscribed["equipment"], json!(["rig-1"]));

    // Lifted: every unit again, at the next request; the open WebSocket,
    // authorised under the old scope, closes so that it connects again.
    assert_eq!(scope(Value::Null).await.status, 204);
    let close = ws.next_close(Duration::from_secs(5)).await;
    assert_eq!(u16::from(close.code), 4001);
    assert!(close.reason.as_str().contains("permissions changed"));
    let mut ws = app.ws(&rig1).await;
    ws.send_json(json!({"type": "subscribe", "equipment": ["rig-2"]}))
        .await;
    assert!(ws
        .next_of("snapshot", Duration::from_secs(10))
        .await
        .is_some());
    let Reply { status, .. } = call(&rig1, "get", "/api/v1/equipment/rig-2/stats").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_limited_to_some_equipment_sees_and_acts_on_their_alerts_only() {
    use std::time::Duration;

    // The oil alert fires on every rig within seconds.
    let app = TestApp::start(fast_plant_config_with(&OIL_ALERT_AT_1C, &[])).await;
    let rig1 = app.user("rig1@plant.example", "engineer").await;
    let id = app.user_id("rig1@plant.example").await;
    let set = app
        .admin()
        .await
        .put(
            &format!("/api/v1/admin/users/{id}/equipment"),
            json!({"equipment": ["rig-1"]}),
        )
        .await;
    assert_eq!(set.status, 204);
    let viewer = app.viewer().await;
    eventually(
        Duration::from_secs(20),
        "oil alerts on rig-1 and rig-2",
        async || {
            let all = viewer.get("/api/v1/alerts?state=open").await.body;
            let units: Vec<&str> = all["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a["equipment"].as_str())
                .collect();
            units.contains(&"rig-1") && units.contains(&"rig-2")
        },
    )
    .await;
    let all = viewer.get("/api/v1/alerts?state=open").await.body;
    let rig2_alert = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["equipment"] == "rig-2")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    let Reply {
        status, body: mine, ..
    } = call(&rig1, "get", "/api/v1/alerts?state=open").await;
    assert_eq!(status, 200);
    let units: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["equipment"].as_str().unwrap_or("plant"))
        .collect();
    assert!(units.contains(&"rig-1"), "{mine}");
    assert!(
        units.iter().all(|u| *u == "rig-1" || *u == "plant"),
        "{units:?}"
    );
    assert_eq!(mine["total"].as_i64().unwrap() as usize, units.len());
    let Reply { status, body, .. } = call(&rig1, "get", "/api/v1/alerts?equipment=rig-2").await;
    assert_eq!((status, code(&body)), (403, "forbidden_equipment"));
    let path = format!("/api/v1/alerts/{rig2_alert}");
    let Reply { status, .. } = call(&rig1, "get", &path).await;
    assert_eq!(status, 403);
    let path = format!("/api/v1/alerts/{rig2_alert}/acknowledge");
    let Reply { status, body, .. } = call(&rig1, "post", &path).await;
    assert_eq!((status, code(&body)), (403, "forbidden_equipment"));
    app.stop().await;
}
