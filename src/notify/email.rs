//! E-mail over SMTP (lettre): a plain-text and an HTML part with the
//! product's branding, the alert's facts and a link to it; relays tried in
//! order until one accepts the message.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{EmailSettings, SmtpTls};
use super::{Failure, Notice};

/// Sends notices through the configured relays.
pub struct Mailer {
    from: Mailbox,
    relays: Vec<(String, AsyncSmtpTransport<Tokio1Executor>)>,
}

impl Mailer {
    /// Builds a transport per relay (connections open on first use).
    pub fn new(settings: EmailSettings) -> anyhow::Result<Mailer> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("notify.email.from {:?}: {e}", settings.from))?;
        let mut relays = Vec::new();
        for r in &settings.relays {
            let tls = match r.tls {
                SmtpTls::None => Tls::None,
                SmtpTls::Starttls => Tls::Required(TlsParameters::new(r.host.clone())?),
                SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(r.host.clone())?),
            };
            let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&r.host)
                .port(r.port)
                .tls(tls)
                .timeout(Some(Duration::from_millis(settings.timeout_ms)));
            if let (Some(user), Some(password)) = (&r.username, &r.password) {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            relays.push((format!("{}:{}", r.host, r.port), builder.build()));
        }
        Ok(Mailer { from, relays })
    }

    /// Sends one notice to `to`, trying each relay in turn.
    pub async fn send(&self, to: &str, notice: &Notice) -> Result<(), Failure> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| Failure::Permanent(format!("recipient {to:?}: {e}")))?;
        let message = compose(&self.from, to, notice)?;
        self.deliver(message).await
    }

    /// Sends a plain-text message to `to` (account e-mails: password reset,
    /// address verification).
    pub async fn send_text(&self, to: &str, subject: &str, text: &str) -> Result<(), Failure> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| Failure::Permanent(format!("recipient {to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| Failure::Permanent(format!("message: {e}")))?;
        self.deliver(message).await
    }

    /// Tries each relay in turn until one takes `message`.
    async fn deliver(&self, message: Message) -> Result<(), Failure> {
        let mut errors = Vec::new();
        for (name, transport) in &self.relays {
            match transport.send(message.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_permanent() => {
                    return Err(Failure::Permanent(format!("{name}: {e}")));
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(Failure::Transient(errors.join("; ")))
    }
}

/// The message: subject, plain text and HTML.
pub fn compose(from: &Mailbox, to: Mailbox, notice: &Notice) -> Result<Message, Failure> {
    let facts = notice.facts();
    let mut text = format!("{}\n\n", notice.headline());
    for (label, value) in &facts {
        text.push_str(&format!("{label}: {value}\n"));
    }
    text.push_str(&format!(
        "\nOpen the alert: {}\n\n-- \nhydrowatch, supervision of hydraulic equipment\n",
        notice.link
    ));
    let colour = match notice.alert.severity.as_str() {
        "critical" | "major" => "#c0392b",
        "minor" | "warning" => "#b7791f",
        _ => "#2b6cb0",
    };
    let rows: String = facts
        .iter()
        .map(|(label, value)| {
            format!(
                "<tr><th align=\"left\" style=\"padding:4px 12px 4px 0;color:#555\">{}</th><td style=\"padding:4px 0\">{}</td></tr>",
                escape(label),
                escape(value)
            )
        })
        .collect();
    let html = format!(
        "<!doctype html><html><body style=\"font-family:system-ui,Arial,sans-serif;color:#111\">\
         <div style=\"border-left:6px solid {colour};padding:8px 16px\">\
         <p style=\"margin:0;font-weight:700;letter-spacing:.05em;color:#0b3d5c\">hydrowatch</p>\
         <h1 style=\"font-size:18px;margin:8px 0\">{}</h1>\
         <table style=\"border-collapse:collapse\">{rows}</table>\
         <p><a href=\"{}\">Open the alert</a></p></div></body></html>",
        escape(&notice.headline()),
        escape(&notice.link)
    );
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(notice.headline())
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| Failure::Permanent(format!("message: {e}")))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
