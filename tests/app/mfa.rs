//! The second factor and account e-mails, end to end: TOTP enrolment with
//! codes computed here (an RFC 6238 implementation of the test's own),
//! sign-in with a code or a backup code (each once), turning it off, an
//! admin's reset; password reset and address verification through a real
//! SMTP server (the sink in `common`), with the same answer for known and
//! unknown addresses.

use crate::common;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;

use common::*;

/// RFC 6238 as the test knows it: HMAC-SHA1 of the 30 s step, dynamic
/// truncation, six digits.
fn totp(secret_base32: &str, unix_secs: u64) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut key = Vec::new();
    let (mut acc, mut bits) = (0u64, 0);
    for c in secret_base32.bytes() {
        acc = (acc << 5) | alphabet.iter().position(|a| *a == c).expect("base32") as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key.push((acc >> bits) as u8);
        }
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&(unix_secs / 30).to_be_bytes());
    let d = mac.finalize().into_bytes();
    let o = (d[19] & 15) as usize;
    let n = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]) % 1_000_000;
    format!("{n:06}")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Ana signs in over HTTP, with a second-factor `code` or without.
async fn login(app: &TestApp, password: &str, code: Option<&str>) -> Reply {
    let mut body = json!({"email": "ana@plant.example", "password": password});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    app.anonymous().post("/api/v1/auth/login", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrolment_sign_in_with_codes_and_backup_codes_once_each() {
    // More sign-ins than a person makes in a minute.
    let app = TestApp::start(demo_config(&[(
        "HYDROWATCH_AUTH__LOGIN_PER_USER__BURST",
        "100",
    )]))
    .await;
    let ana = app.user("ana@plant.example", "viewer").await;
    let ana_id = app.user_id("ana@plant.example").await;

    let Reply {
        status,
        body: enrolment,
        ..
    } = ana.post("/api/v1/auth/mfa/enrol", json!({})).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/hydrowatch:ana@plant.example?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")) && uri.contains("issuer=hydrowatch"));
    // Not on until confirmed with a current code.
    assert_eq!(login(&app, PASSWORD, None).await.status, 200);
    let Reply { status, body, .. } = ana
        .post("/api/v1/auth/mfa/confirm", json!({"code": "000000"}))
        .await;
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (422, &json!("code"))
    );
    let now = unix_now();
    let Reply { status, body, .. } = ana
        .post(
            "/api/v1/auth/mfa/confirm",
            json!({"code": totp(&secret, now)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let backup: Vec<String> = body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(backup.len(), 10);

    // The password alone no longer signs in; a wrong code counts.
    let Reply { status, body, .. } = login(&app, PASSWORD, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("mfa_required"))
    );
    let Reply { status, body, .. } = login(&app, "wrong password!", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_credentials")),
        "a wrong password says nothing of the second factor"
    );
    let Reply { status, body, .. } = login(&app, PASSWORD, Some("123456")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_mfa_code"))
    );
    // The next step's code (the confirming one is spent): works once.
    let next = totp(&secret, now + 30);
    let Reply {
        status,
        body: issued,
        ..
    } = login(&app, PASSWORD, Some(&next)).await;
    assert_eq!(status, 200, "{issued}");
    let Reply { status, body, .. } = login(&app, PASSWORD, Some(&next)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_mfa_code")),
        "a code works once"
    );
    // A backup code, typed loosely, works once.
    let loose = backup[0].to_uppercase().replace('-', " ");
    assert_eq!(login(&app, PASSWORD, Some(&loose)).await.status, 200);
    assert_eq!(login(&app, PASSWORD, Some(&backup[0])).await.status, 401);

    // Turning it off needs the password and a code.
    let signed_in = app.client(issued["access_token"].as_str());
    let Reply { status, .. } = signed_in
        .post(
            "/api/v1/auth/mfa/disable",
            json!({"password": PASSWORD, "code": "999999"}),
        )
        .await;
    assert_eq!(status, 401);
    let Reply { status, .. } = signed_in
        .post(
            "/api/v1/auth/mfa/disable",
            json!({"password": PASSWORD, "code": backup[1]}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(login(&app, PASSWORD, None).await.status, 200);

    // On again, then an admin resets it (a lost phone).
    let Reply {
        body: enrolment, ..
    } = signed_in.post("/api/v1/auth/mfa/enrol", json!({})).await;
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let Reply { status, .. } = signed_in
        .post(
            "/api/v1/auth/mfa/confirm",
            json!({"code": totp(&secret, unix_now())}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(login(&app, PASSWORD, None).await.status, 401);
    let Reply { status, .. } = app
        .admin()
        .await
        .post(
            &format!("/api/v1/admin/users/{ana_id}/mfa/reset"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(login(&app, PASSWORD, None).await.status, 200);

    let rows = app.state.audit.rows(0, 1000).await.unwrap();
    for action in [
        "mfa.enable",
        "mfa.disable",
        "mfa.backup_code_used",
        "mfa.reset",
    ] {
        assert!(rows.iter().any(|r| r.action == action), "{action} audited");
    }
    assert!(rows
        .iter()
        .any(|r| r.action == "login_failed" && r.changes.contains("wrong_mfa_code")));
    app.stop().await;
}

/// A mail's text as a mail client shows it: quoted-printable decoded
/// (soft line breaks joined, `=XX` bytes restored).
fn text_of(mail: &Mail) -> String {
    let joined = mail.data.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The one link in a mail's body after `marker` (`#reset=`, `#verify=`).
fn token_in(mail: &Mail, marker: &str) -> String {
    let text = text_of(mail);
    let at = text.find(marker).expect("a link") + marker.len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_and_verification_go_by_email_and_tell_nobody_which_addresses_exist() {
    let (smtp, mails) = smtp_sink().await;
    let settings = format!(
        "[notify]\nbase_url = \"http://hydrowatch.test\"\n\
         [notify.email]\nfrom = \"hydrowatch@plant.example\"\n\
         relays = [{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n",
        smtp.port()
    );
    let app = TestApp::start(fast_plant_config_full(&[], &settings, &[])).await;
    let old = app.user("ana@plant.example", "viewer").await;
    let anonymous = app.anonymous();
    let ask = |email: &str| anonymous.post("/api/v1/auth/password-reset", json!({"email": email}));
    let known = ask("ana@plant.example").await;
    let unknown = ask("nobody@plant.example").await;
    assert_eq!(known.status, 202);
    assert_eq!(
        (known.status, &known.body),
        (unknown.status, &unknown.body),
        "the same answer for every address"
    );
    eventually(Duration::from_secs(5), "the reset mail", async || {
        !mails.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = mails.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "only the known address gets a mail");
    assert!(sent[0].to[0].contains("ana@plant.example"));
    assert!(text_of(&sent[0]).contains("http://hydrowatch.test/#reset="));
    let token = token_in(&sent[0], "#reset=");
    assert_eq!(token.len(), 64, "256 random bits");

    let confirm = |token: &str, password: &str| {
        anonymous.post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": token, "new_password": password}),
        )
    };
    // The policy holds, and a refused password does not use the link up.
    let Reply { status, body, .. } = confirm(&token, PASSWORD).await;
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (422, &json!("password")),
        "one of the last five"
    );
    let Reply { status, .. } = confirm(&token, "a brand new passphrase for ana").await;
    assert_eq!(status, 204);
    let Reply { status, body, .. } = confirm(&token, "yet another passphrase here").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_token")),
        "used once"
    );
    // Every session ended; the new password signs in.
    let Reply { status, .. } = old.get("/api/v1/auth/me").await;
    assert_eq!(status, 401);
    let Reply {
        status,
        body: issued,
        ..
    } = app
        .login("ana@plant.example", "a brand new passphrase for ana")
        .await;
    assert_eq!(status, 200);

    // Address verification: a link to the signed-in user's address.
    let signed_in = app.client(issued["access_token"].as_str());
    let Reply { status, .. } = signed_in.post("/api/v1/auth/verify-email", json!({})).await;
    assert_eq!(status, 202);
    eventually(
        Duration::from_secs(5),
        "the verification mail",
        async || mails.lock().unwrap().len() == 2,
    )
    .await;
    let mail = mails.lock().unwrap()[1].clone();
    let verify = token_in(&mail, "#verify=");
    let Reply { status, .. } = app
        .anonymous()
        .post(
            "/api/v1/auth/verify-email/confirm",
            json!({"token": verify}),
        )
        .await;
    assert_eq!(status, 204);
    let user = app
        .state
        .store
        .user_by_email("ana@plant.example")
        .await
        .unwrap()
        .unwrap();
    assert!(user.email_verified_at.is_some());
    let Reply { status, .. } = app
        .anonymous()
        .post(
            "/api/v1/auth/verify-email/confirm",
            json!({"token": verify}),
        )
        .await;
    assert_eq!(status, 401, "used once");
    let rows = app.state.audit.rows(0, 1000).await.unwrap();
    let requests: Vec<bool> = rows
        .iter()
        .filter(|r| r.action == "password_reset.request")
        .map(|r| r.changes.contains("\"known\":true"))
        .collect();
    assert_eq!(requests, [true, false], "both requests audited");
    assert!(rows.iter().any(|r| r.action == "password_reset"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_email_a_reset_says_so_for_every_address() {
    let app = TestApp::spawn().await;
    app.user("ana@plant.example", "viewer").await;
    for email in ["ana@plant.example", "nobody@plant.example"] {
        let Reply { status, body, .. } = app
            .anonymous()
            .post("/api/v1/auth/password-reset", json!({"email": email}))
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (501, &json!("unsupported"))
        );
    }
    app.stop().await;
}
