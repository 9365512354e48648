//! Webhooks: the notice as JSON, signed with HMAC-SHA256 over
//! `"{timestamp}.{body}"` so that a receiver can check both who sent it and
//! that it is fresh; and Slack-compatible incoming webhooks (`{"text": …}`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::{SlackSettings, WebhookSettings};
use super::{Failure, Notice};
use hydrowatch_actors::clock::now_ms;

/// Header with the signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-hydrowatch-signature";
/// Header with the signing instant, ms since the epoch.
pub const TIMESTAMP_HEADER: &str = "x-hydrowatch-timestamp";
/// Header with the notification's id: the same id twice is the same notice
/// (a retry after an outcome that could not be recorded).
pub const DELIVERY_HEADER: &str = "x-hydrowatch-delivery";

/// `sha256=<hex of HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", crate::hex(&bytes))
}

fn classify(e: reqwest::Error) -> Failure {
    Failure::Transient(if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    })
}

async fn outcome(response: reqwest::Response) -> Result<(), Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let why = format!("HTTP {status}: {body}");
    // 408, 429 and 5xx may pass later; other 4xx will not.
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(Failure::Transient(why))
    } else {
        Err(Failure::Permanent(why))
    }
}

/// POSTs the notice to a webhook, signed.
pub async fn post_signed(
    http: &reqwest::Client,
    hook: &WebhookSettings,
    delivery: i64,
    notice: &Notice,
) -> Result<(), Failure> {
    let body = serde_json::to_vec(notice).map_err(|e| Failure::Permanent(e.to_string()))?;
    let timestamp = now_ms();
    let response = http
        .post(&hook.url)
        .timeout(Duration::from_millis(hook.timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(DELIVERY_HEADER, delivery.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(hook.secret.as_bytes(), timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(classify)?;
    outcome(response).await
}

/// POSTs the notice to a Slack-compatible incoming webhook.
pub async fn post_slack(
    http: &reqwest::Client,
    hook: &SlackSettings,
    notice: &Notice,
) -> Result<(), Failure> {
    let mut text = format!("*{}*", notice.headline());
    for (label, value) in notice.facts() {
        text.push_str(&format!("\n{label}: {value}"));
    }
    text.push_str(&format!("\n<{}|Open the alert>", notice.link));
    let response = http
        .post(&hook.url)
        .timeout(Duration::from_millis(hook.timeout_ms))
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .map_err(classify)?;
    outcome(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature(b"Jefe", 0, b"");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // The timestamp is signed too: the same body later is another signature.
        assert_ne!(signature(b"k", 1, b"{}"), signature(b"k", 2, b"{}"));
    }
}
