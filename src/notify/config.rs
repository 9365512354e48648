//! `[notify]` of `hydrowatch.toml`: where alert notifications go and how
//! hard the outbox worker tries.
//!
//! ```toml
//! [notify]
//! base_url = "https://hydrowatch.plant.example"   # links in messages
//!
//! [notify.email]
//! from = "hydrowatch@plant.example"
//! relays = [{ host = "smtp1.plant.example", port = 587, tls = "starttls" },
//!           { host = "smtp2.plant.example", port = 587, tls = "starttls" }]
//!
//! [notify.webhooks.ops]
//! url = "https://ops.plant.example/hooks/hydrowatch"
//! secret = "…"            # HMAC-SHA256 key (HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET)
//!
//! [notify.slack.shift]
//! url = "https://hooks.slack.com/services/…"
//! ```
//!
//! A policy step names channels as `email:ADDRESS`, `webhook:NAME`,
//! `slack:NAME` or `wallboard`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[notify]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// The address people reach hydrowatch at, for links in messages.
    pub base_url: String,
    /// Attempts before a notification is given up (dead letter).
    pub max_attempts: u32,
    /// First retry delay, ms; doubled per attempt, with ±20 % jitter.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, ms.
    pub backoff_max_ms: u64,
    /// How often the worker looks for due notifications, ms.
    pub poll_ms: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// E-mail; none: `email:` channels fail (and end as dead letters).
    pub email: Option<EmailSettings>,
    /// Webhooks by name.
    pub webhooks: BTreeMap<String, WebhookSettings>,
    /// Slack-compatible incoming webhooks by name.
    pub slack: BTreeMap<String, SlackSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            base_url: "http://127.0.0.1:8080".into(),
            max_attempts: 8,
            backoff_initial_ms: 2_000,
            backoff_max_ms: 600_000,
            poll_ms: 500,
            concurrency: 8,
            email: None,
            webhooks: BTreeMap::new(),
            slack: BTreeMap::new(),
        }
    }
}

/// How to reach an SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or a trusted network).
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// One SMTP relay.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Host name or address.
    pub host: String,
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// User name, when the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// `[notify.email]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// Sender address.
    pub from: String,
    /// Relays in order: the next is tried when one fails.
    pub relays: Vec<RelaySettings>,
    /// Per relay and message, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Messages per minute at most (all recipients together).
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
}

/// `[notify.webhooks.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST.
    pub url: String,
    /// Key of the HMAC-SHA256 signature (`X-Hydrowatch-Signature`).
    pub secret: String,
    /// Per request, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests per minute at most.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
}

/// `[notify.slack.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The incoming-webhook URL.
    pub url: String,
    /// Per request, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests per minute at most.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_rate() -> u32 {
    60
}

impl NotifySettings {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err("notify.base_url: must start with http:// or https://".into());
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err("notify.max_attempts: 1 to 100".into());
        }
        if self.backoff_initial_ms == 0 || self.backoff_initial_ms > self.backoff_max_ms {
            return Err("notify.backoff_initial_ms: at least 1 and at most backoff_max_ms".into());
        }
        if !(10..=60_000).contains(&self.poll_ms) {
            return Err("notify.poll_ms: 10 to 60000".into());
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err("notify.concurrency: 1 to 256".into());
        }
        if let Some(e) = &self.email {
            if !e.from.contains('@') {
                return Err("notify.email.from: an e-mail address".into());
            }
            if e.relays.is_empty() {
                return Err("notify.email.relays: at least one relay".into());
            }
            if e.timeout_ms == 0 || e.rate_per_minute == 0 {
                return Err(
                    "notify.email: timeout_ms and rate_per_minute must be at least 1".into(),
                );
            }
        }
        for (name, w) in &self.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!(
                    "notify.webhooks.{name}.url: must start with http:// or https://"
                ));
            }
            if w.secret.len() < 16 {
                return Err(format!(
                    "notify.webhooks.{name}.secret: at least 16 characters"
                ));
            }
            if w.timeout_ms == 0 || w.rate_per_minute == 0 {
                return Err(format!(
                    "notify.webhooks.{name}: timeout_ms and rate_per_minute must be at least 1"
                ));
            }
        }
        for (name, s) in &self.slack {
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                return Err(format!(
                    "notify.slack.{name}.url: must start with http:// or https://"
                ));
            }
            if s.timeout_ms == 0 || s.rate_per_minute == 0 {
                return Err(format!(
                    "notify.slack.{name}: timeout_ms and rate_per_minute must be at least 1"
                ));
            }
        }
        Ok(())
    }
}
