//! Alert notifications end to end: a rule fires on a simulated rig, its
//! escalation policy puts notifications in the outbox, and the worker
//! delivers them to a real SMTP server (a small sink written here, on
//! loopback, behind a first relay that is down), a webhook receiver that
//! checks the HMAC signature, and a Slack-compatible receiver. With the SMTP
//! relays down, e-mail is retried and then dead-lettered while the webhook
//! goes out regardless.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;

use common::*;

const SECRET: &str = "0123456789abcdef-webhook-secret";

/// Requests a receiver got: path, headers, body.
type Received = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// Webhook and Slack receivers on one port.
async fn receivers() -> (SocketAddr, Received) {
    let got: Received = Arc::default();
    async fn hook(State(got): State<Received>, headers: HeaderMap, body: String) -> &'static str {
        got.lock().unwrap().push(("/hook".into(), headers, body));
        "ok"
    }
    async fn slack(State(got): State<Received>, headers: HeaderMap, body: String) -> &'static str {
        got.lock().unwrap().push(("/slack".into(), headers, body));
        "ok"
    }
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .route("/slack", post(slack))
        .with_state(got.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got)
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Plant edits: the oil rule at 1 °C on rig-1 only, escalating by `steps`.
fn plant_edits(steps: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut edits = OIL_ALERT_AT_1C.to_vec();
    edits.push((
        "id = \"oil-hot\"\n",
        "id = \"oil-hot\"\nequipment = \"rig-1\"\n",
    ));
    edits.push((
        "[[alerting.policies.default.steps]]\nafter_ms = 0\nchannels = [\"wallboard\"]",
        steps,
    ));
    edits.push(("tick_ms = 1000", "tick_ms = 100"));
    edits
}

async fn oil_alert(viewer: &Client) -> Value {
    let mut found = Value::Null;
    eventually(
        Duration::from_secs(20),
        "rig-1's oil alert fires",
        async || {
            let page = viewer
                .get("/api/v1/alerts?equipment=rig-1&state=open")
                .await
                .body;
            match page["items"]
                .as_array()
                .and_then(|items| items.iter().find(|a| a["kind"] == "threshold:oil-hot"))
            {
                Some(a) => {
                    found = a.clone();
                    true
                }
                None => false,
            }
        },
    )
    .await;
    found
}

fn deliveries(detail: &Value) -> Vec<(String, String, i64)> {
    detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["attempts"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_gets_the_alert_once_signed_and_through_a_second_relay() {
    let (smtp, mails) = smtp_sink().await;
    let down = closed_port().await;
    let (http, got) = receivers().await;
    let settings = format!(
        "[notify]\nbase_url = \"http://hydrowatch.test\"\npoll_ms = 50\n\
         [notify.email]\nfrom = \"hydrowatch@plant.example\"\n\
         relays = [{{ host = \"127.0.0.1\", port = {down}, tls = \"none\" }}, \
                   {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}]\n\
         [notify.webhooks.ops]\nurl = \"http://{http}/hook\"\nsecret = \"{SECRET}\"\n\
         [notify.slack.shift]\nurl = \"http://{http}/slack\"\n",
        smtp.port()
    );
    let steps = "[[alerting.policies.default.steps]]\nafter_ms = 0\n\
                 channels = [\"wallboard\", \"webhook:ops\", \"slack:shift\"]\n\
                 [[alerting.policies.default.steps]]\nafter_ms = 1000\n\
                 channels = [\"email:oncall@plant.example\"]";
    let app = TestApp::start(fast_plant_config_full(&plant_edits(steps), &settings, &[])).await;
    let viewer = app.viewer().await;
    let alert = oil_alert(&viewer).await;
    let id = alert["id"].as_i64().unwrap();
    eventually(
        Duration::from_secs(15),
        "every channel delivered",
        async || {
            let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
            let d = deliveries(&detail);
            d.len() == 4 && d.iter().all(|(_, status, _)| status == "sent")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The webhook: once, signed over timestamp and body with the shared secret.
    let requests = got.lock().unwrap().clone();
    let hooks: Vec<_> = requests.iter().filter(|(p, _, _)| p == "/hook").collect();
    assert_eq!(hooks.len(), 1, "{requests:?}");
    let (_, headers, body) = hooks[0];
    let timestamp = headers["x-hydrowatch-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        headers["x-hydrowatch-signature"].to_str().unwrap(),
        format!("sha256={expected}")
    );
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["alert"]["id"], id);
    assert_eq!(json["alert"]["kind"], "threshold:oil-hot");
    assert_eq!(json["alert"]["source"], "plant/rig-1/TS1");
    assert_eq!(json["step"], 0);
    assert_eq!(
        json["link"],
        format!("http://hydrowatch.test/api/v1/alerts/{id}")
    );

    // Slack: once, the headline and the link.
    let slacks: Vec<_> = requests.iter().filter(|(p, _, _)| p == "/slack").collect();
    assert_eq!(slacks.len(), 1);
    let text = serde_json::from_str::<Value>(&slacks[0].2).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("[MAJOR] oil-hot on rig-1/TS1"), "{text}");
    assert!(text.contains(&format!("/api/v1/alerts/{id}")), "{text}");

    // E-mail: the first relay is down, the second takes it, in one attempt.
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.from, "<hydrowatch@plant.example>");
    assert_eq!(mail.to, ["<oncall@plant.example>"]);
    assert!(
        mail.data
            .contains("Subject: [MAJOR] oil-hot on rig-1/TS1 - active, not acknowledged"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("multipart/alternative"));
    assert!(mail.data.contains("text/html"));
    assert!(mail.data.contains("Sensor: TS1"), "{}", mail.data);
    assert!(mail.data.contains(&format!(
        "Open the alert: http://hydrowatch.test/api/v1/alerts/{id}"
    )));
    let detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
    // One attempt each; the wallboard's is the live push, stored as sent.
    for (channel, _, attempts) in deliveries(&detail) {
        assert_eq!(attempts, i64::from(channel != "wallboard"), "{channel}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_smtp_down_email_is_retried_then_dead_lettered_and_the_webhook_still_goes_out() {
    let down = closed_port().await;
    let (http, got) = receivers().await;
    let settings = format!(
        "[notify]\npoll_ms = 50\nmax_attempts = 3\nbackoff_initial_ms = 100\nbackoff_max_ms = 200\n\
         [notify.email]\nfrom = \"hydrowatch@plant.example\"\n\
         relays = [{{ host = \"127.0.0.1\", port = {down}, tls = \"none\" }}]\ntimeout_ms = 1000\n\
         [notify.webhooks.ops]\nurl = \"http://{http}/hook\"\nsecret = \"{SECRET}\"\n"
    );
    let steps = "[[alerting.policies.default.steps]]\nafter_ms = 0\n\
                 channels = [\"email:oncall@plant.example\", \"webhook:ops\"]";
    let app = TestApp::start(fast_plant_config_full(&plant_edits(steps), &settings, &[])).await;
    let viewer = app.viewer().await;
    let id = oil_alert(&viewer).await["id"].as_i64().unwrap();
    let mut detail = Value::Null;
    eventually(
        Duration::from_secs(20),
        "the e-mail is given up",
        async || {
            detail = viewer.get(&format!("/api/v1/alerts/{id}")).await.body;
            deliveries(&detail)
                .iter()
                .any(|(c, s, _)| c.starts_with("email:") && s == "dead")
        },
    )
    .await;
    let d = deliveries(&detail);
    assert!(
        d.contains(&("email:oncall@plant.example".into(), "dead".into(), 3)),
        "{d:?}"
    );
    assert!(
        d.contains(&("webhook:ops".into(), "sent".into(), 1)),
        "{d:?}"
    );
    let email = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["channel"] == "email:oncall@plant.example")
        .unwrap();
    let error = email["last_error"].as_str().unwrap();
    assert!(error.contains("after 3 attempts"), "{error}");
    assert_eq!(got.lock().unwrap().len(), 1);
    app.stop().await;
}
