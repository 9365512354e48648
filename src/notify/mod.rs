//! Delivery of alert notifications: a worker drains the durable outbox
//! (`alert_notifications`, written by the alerting actor with each alert
//! change) to e-mail, webhooks and Slack-compatible webhooks — with
//! exponential backoff and jitter, a maximum number of attempts and then a
//! dead letter with the reason, and a rate limit per channel. One channel
//! failing never holds back another: every row is its own delivery.

pub mod config;
pub mod email;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

pub use config::NotifySettings;

use crate::store::alerts::{AlertRow, DeliveryOutcome, DueNotification};
use crate::store::Store;
use hydrowatch_actors::clock::now_ms;

/// Where a notification goes, parsed from a policy step's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The live push; delivered when the alert was stored.
    Wallboard,
    /// An e-mail to this address.
    Email(String),
    /// The named webhook.
    Webhook(String),
    /// The named Slack-compatible webhook.
    Slack(String),
}

impl Target {
    /// Parses `wallboard`, `email:ADDRESS`, `webhook:NAME` or `slack:NAME`.
    pub fn parse(channel: &str) -> Result<Target, String> {
        match channel.split_once(':') {
            None if channel == "wallboard" => Ok(Target::Wallboard),
            Some(("email", to)) if to.contains('@') => Ok(Target::Email(to.to_owned())),
            Some(("webhook", name)) if !name.is_empty() => Ok(Target::Webhook(name.to_owned())),
            Some(("slack", name)) if !name.is_empty() => Ok(Target::Slack(name.to_owned())),
            _ => Err(format!(
                "channel {channel:?}: expected wallboard, email:ADDRESS, webhook:NAME or slack:NAME"
            )),
        }
    }

    /// Parses a channel and checks that what it names is configured: a
    /// policy taken through the API must not send to nowhere.
    pub fn check(channel: &str, settings: &NotifySettings) -> Result<Target, String> {
        let target = Target::parse(channel)?;
        let configured = match &target {
            Target::Wallboard => true,
            Target::Email(_) => settings.email.is_some(),
            Target::Webhook(name) => settings.webhooks.contains_key(name),
            Target::Slack(name) => settings.slack.contains_key(name),
        };
        if configured {
            Ok(target)
        } else {
            Err(format!(
                "channel {channel:?}: not configured in [notify] of hydrowatch.toml"
            ))
        }
    }

    /// The rate-limit bucket it counts against.
    fn bucket(&self) -> String {
        match self {
            Target::Wallboard => "wallboard".into(),
            Target::Email(_) => "email".into(),
            Target::Webhook(name) => format!("webhook:{name}"),
            Target::Slack(name) => format!("slack:{name}"),
        }
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try (timeout, connection refused, 5xx, 429).
    Transient(String),
    /// Never going to work (unknown channel, 4xx, bad address).
    Permanent(String),
}

/// What every channel's message says about an alert.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notice {
    pub alert: AlertRow,
    /// Escalation step.
    pub step: i64,
    /// 0, or the repeat of the last step.
    pub repeat: i64,
    /// When it fell due, ms.
    pub due_at_ms: i64,
    /// Where to look at it.
    pub link: String,
}

impl Notice {
    /// One line for subjects and chat, ASCII so that mail subjects stay
    /// readable everywhere: `[MAJOR] oil-hot on rig-1/TS1 - active, not acknowledged`.
    pub fn headline(&self) -> String {
        let a = &self.alert;
        let rule = a.kind.split_once(':').map_or(a.kind.as_str(), |(_, r)| r);
        let place = [a.equipment.as_deref(), a.sensor.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
        let repeat = if self.repeat > 0 {
            format!(" (reminder {})", self.repeat)
        } else {
            String::new()
        };
        format!(
            "[{}] {rule} on {} - {}{repeat}",
            a.severity.as_str().to_uppercase(),
            if place.is_empty() { &a.source } else { &place },
            state_words(&a.state)
        )
    }

    /// The facts, as label–value pairs, for every format.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let a = &self.alert;
        let mut facts = vec![
            ("Severity", a.severity.as_str().to_uppercase()),
            ("State", state_words(&a.state).to_owned()),
            ("Rule", a.kind.clone()),
            ("Source", a.source.clone()),
            ("Site", a.site.clone()),
        ];
        if let Some(e) = &a.equipment {
            facts.push(("Equipment", e.clone()));
        }
        if let Some(s) = &a.sensor {
            facts.push(("Sensor", s.clone()));
        }
        if let Some(v) = a.last_value {
            facts.push(("Last value", format!("{v:.3}")));
        }
        facts.push(("Triggers", a.count.to_string()));
        facts.push(("First seen", rfc3339(a.first_seen_ms)));
        if let Some(at) = a.activated_at_ms {
            facts.push(("Firing since", rfc3339(at)));
        }
        facts.push(("Escalation step", (self.step + 1).to_string()));
        facts
    }
}

fn state_words(state: &str) -> &'static str {
    match state {
        "PENDING" => "pending",
        "ACTIVE_UNACK" => "active, not acknowledged",
        "ACTIVE_ACK" => "active, acknowledged",
        "CLEARED_UNACK" => "cleared, not acknowledged",
        "CLEARED_ACK" => "cleared",
        "CANCELLED" => "cancelled",
        _ => "unknown",
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A token bucket per channel: `rate` per minute, bursts up to `rate`.
struct Buckets {
    state: Mutex<HashMap<String, (f64, i64)>>,
}

impl Buckets {
    /// Takes a token for `bucket` at `now`; `Err(at)` = none until `at`.
    fn take(&self, bucket: &str, rate_per_minute: u32, now: i64) -> Result<(), i64> {
        let rate = f64::from(rate_per_minute.max(1));
        let per_ms = rate / 60_000.0;
        let mut map = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (tokens, at) = map.entry(bucket.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + (now - *at).max(0) as f64 * per_ms).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(now + ((1.0 - *tokens) / per_ms).ceil() as i64)
        }
    }
}

/// The outbox worker.
pub struct Notifier {
    settings: NotifySettings,
    store: Store,
    http: reqwest::Client,
    email: Option<email::Mailer>,
    buckets: Buckets,
}

impl Notifier {
    /// A worker over `store` with `settings`.
    pub fn new(settings: NotifySettings, store: Store) -> anyhow::Result<Notifier> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hydrowatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let email = settings.email.clone().map(email::Mailer::new).transpose()?;
        Ok(Notifier {
            settings,
            store,
            http,
            email,
            buckets: Buckets {
                state: Mutex::new(HashMap::new()),
            },
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period = Duration::from_millis(self.settings.poll_ms);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "notification outbox unavailable; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Delivers what is due now; returns how many were handled.
    pub async fn run_once(&self) -> Result<usize, crate::store::StoreError> {
        let due = self.store.due_notifications(now_ms(), 100).await?;
        let n = due.len();
        futures::stream::iter(due)
            .for_each_concurrent(self.settings.concurrency, |row| async move {
                let outcome = self.deliver(&row).await;
                match &outcome {
                    DeliveryOutcome::Sent(_) => {
                        metrics::counter!("hydrowatch_notifications_sent_total").increment(1);
                        tracing::info!(alert = row.alert.id, channel = %row.channel, step = row.step, "notification sent");
                    }
                    DeliveryOutcome::Retry { error, .. } => {
                        metrics::counter!("hydrowatch_notification_failures_total").increment(1);
                        tracing::warn!(alert = row.alert.id, channel = %row.channel, attempt = row.attempts + 1, %error, "notification failed; will retry");
                    }
                    DeliveryOutcome::Dead(error) => {
                        metrics::counter!("hydrowatch_notifications_dead_total").increment(1);
                        tracing::error!(alert = row.alert.id, channel = %row.channel, attempts = row.attempts + 1, %error, "notification given up (dead letter)");
                    }
                    DeliveryOutcome::Deferred(_) => {
                        metrics::counter!("hydrowatch_notifications_deferred_total").increment(1);
                    }
                }
                if let Err(e) = self.store.record_delivery(row.id, &outcome).await {
                    // Delivered but not recorded: sent again later (at least
                    // once); the receivers get the notification id to tell.
                    tracing::warn!(error = %e, id = row.id, "delivery outcome not recorded");
                }
            })
            .await;
        Ok(n)
    }

    fn notice(&self, row: &DueNotification) -> Notice {
        Notice {
            alert: row.alert.clone(),
            step: row.step,
            repeat: row.repeat,
            due_at_ms: row.due_at_ms,
            link: format!(
                "{}/api/v1/alerts/{}",
                self.settings.base_url.trim_end_matches('/'),
                row.alert.id
            ),
        }
    }

    async fn deliver(&self, row: &DueNotification) -> DeliveryOutcome {
        let now = now_ms();
        let target = match Target::parse(&row.channel) {
            Ok(t) => t,
            Err(e) => return DeliveryOutcome::Dead(e),
        };
        let rate = match &target {
            Target::Wallboard => None,
            Target::Email(_) => self.settings.email.as_ref().map(|e| e.rate_per_minute),
            Target::Webhook(n) => self.settings.webhooks.get(n).map(|w| w.rate_per_minute),
            Target::Slack(n) => self.settings.slack.get(n).map(|s| s.rate_per_minute),
        };
        if let Some(rate) = rate {
            if let Err(at) = self.buckets.take(&target.bucket(), rate, now) {
                return DeliveryOutcome::Deferred(at);
            }
        }
        let notice = self.notice(row);
        let result = match &target {
            Target::Wallboard => Ok(()),
            Target::Email(to) => match &self.email {
                Some(mailer) => mailer.send(to, &notice).await,
                None => Err(Failure::Permanent(
                    "no [notify.email] configured for email: channels".into(),
                )),
            },
            Target::Webhook(name) => match self.settings.webhooks.get(name) {
                Some(w) => webhook::post_signed(&self.http, w, row.id, &notice).await,
                None => Err(Failure::Permanent(format!("no [notify.webhooks.{name}]"))),
            },
            Target::Slack(name) => match self.settings.slack.get(name) {
                Some(s) => webhook::post_slack(&self.http, s, &notice).await,
                None => Err(Failure::Permanent(format!("no [notify.slack.{name}]"))),
            },
        };
        match result {
            Ok(()) => DeliveryOutcome::Sent(now_ms()),
            Err(Failure::Permanent(e)) => DeliveryOutcome::Dead(e),
            Err(Failure::Transient(e)) => {
                let attempts = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
                if attempts >= self.settings.max_attempts {
                    DeliveryOutcome::Dead(format!("{e} (after {attempts} attempts)"))
                } else {
                    DeliveryOutcome::Retry {
                        error: e,
                        next_attempt_at_ms: now_ms() + self.backoff(attempts),
                    }
                }
            }
        }
    }

    /// Delay before attempt `attempts + 1`: doubling from the initial delay,
    /// capped, with ±20 % jitter so that retries do not arrive in lockstep.
    fn backoff(&self, attempts: u32) -> i64 {
        let base = self
            .settings
            .backoff_initial_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
            .min(self.settings.backoff_max_ms) as f64;
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        (base * jitter) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_or_say_what_is_expected() {
        assert_eq!(Target::parse("wallboard"), Ok(Target::Wallboard));
        assert_eq!(
            Target::parse("email:oncall@plant.example"),
            Ok(Target::Email("oncall@plant.example".into()))
        );
        assert_eq!(
            Target::parse("webhook:ops"),
            Ok(Target::Webhook("ops".into()))
        );
        assert_eq!(
            Target::parse("slack:shift"),
            Ok(Target::Slack("shift".into()))
        );
        assert!(Target::parse("email:nobody").is_err());
        assert!(Target::parse("pager:ops").unwrap_err().contains("expected"));
    }

    #[test]
    fn a_bucket_allows_its_rate_and_says_when_the_next_token_comes() {
        let b = Buckets {
            state: Mutex::new(HashMap::new()),
        };
        for _ in 0..2 {
            assert!(b.take("x", 2, 0).is_ok());
        }
        let next = b.take("x", 2, 0).unwrap_err();
        assert_eq!(next, 30_000);
        assert!(b.take("x", 2, 30_000).is_ok());
        assert!(b.take("y", 2, 0).is_ok(), "buckets are per channel");
    }
}
