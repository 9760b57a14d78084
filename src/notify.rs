//! Notifications of a nightly `run`: a webhook (a JSON body with a `text`
//! field, which Slack and Microsoft Teams incoming webhooks accept)
//! and/or an email over SMTP, configured in `[notify]`.
//!
//! A message carries counts, file names and reasons, never patron data:
//! callers build it from `summary.json`'s counters and error messages,
//! which hold no names, emails or addresses.

use std::time::Duration;

use serde::Deserialize;

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Incoming-webhook URL (Slack, Teams, or anything taking
    /// `{"text": ...}`).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Email over SMTP.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// When to send: `failure`, `guard`, `rejects`, `always`, one or a
    /// list. Default: failures, tripped guards and reject rates over the
    /// threshold.
    #[serde(default = "default_on", deserialize_with = "one_or_many")]
    pub on: Vec<When>,
}

/// `[notify.smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// SMTP server.
    pub host: String,
    /// Port (587 for submission with STARTTLS).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address.
    pub from: String,
    /// Recipients.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Upgrade the connection with STARTTLS (required when true).
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// Login name, if the server wants one.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the password (never in a file).
    #[serde(default)]
    pub password_env: Option<String>,
}

/// An occasion to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Every run.
    Always,
    /// The run failed (conversion or delivery).
    Failure,
    /// A state guard tripped (too many users would change).
    Guard,
    /// The reject rate exceeded its threshold, or an encoding is suspect.
    Rejects,
}

fn default_on() -> Vec<When> {
    vec![When::Failure, When::Guard, When::Rejects]
}
fn default_smtp_port() -> u16 {
    587
}
fn default_true() -> bool {
    true
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

impl NotifyConfig {
    /// Checks what can be checked without sending.
    pub fn check(&self) -> Result<(), String> {
        if self.webhook_url.is_none() && self.smtp.is_none() {
            return Err("give webhook_url and/or [notify.smtp]".into());
        }
        if let Some(u) = &self.webhook_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err("webhook_url must be an http(s) URL".into());
            }
        }
        if let Some(s) = &self.smtp {
            if s.to.is_empty() {
                return Err("[notify.smtp] to is empty".into());
            }
            if s.password_env.is_some() && s.user.is_none() {
                return Err("[notify.smtp] password_env needs user".into());
            }
        }
        Ok(())
    }

    /// Whether a run that ended as `event` is notified.
    pub fn wants(&self, event: When) -> bool {
        self.on.contains(&When::Always) || self.on.contains(&event)
    }
}

/// A notification: one line for a subject, then counts and reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What happened ([`When::Always`] for a plain success).
    pub event: When,
    /// One line.
    pub subject: String,
    /// The body, plain text.
    pub body: String,
}

/// Sends `msg` on every configured channel; returns one error line per
/// channel that failed (the run's exit status does not depend on them).
pub fn send(config: &NotifyConfig, msg: &Message) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(url) = &config.webhook_url {
        if let Err(e) = send_webhook(url, msg) {
            errors.push(format!("webhook: {e}"));
        }
    }
    if let Some(smtp) = &config.smtp {
        if let Err(e) = send_email(smtp, msg) {
            errors.push(format!("email: {e}"));
        }
    }
    errors
}

/// POSTs `{"text": "<subject>\n<body>"}` to an incoming webhook.
pub fn send_webhook(url: &str, msg: &Message) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let body = serde_json::json!({ "text": format!("{}\n{}", msg.subject, msg.body) });
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map(|_| ())
        // The URL of a webhook is its secret: never echoed.
        .map_err(|e| e.to_string())
}

/// Sends `msg` as a plain-text email.
pub fn send_email(cfg: &SmtpConfig, msg: &Message) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message as Email, SmtpTransport, Transport};

    let mut email = Email::builder()
        .from(cfg.from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(&msg.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &cfg.to {
        email = email.to(to.parse().map_err(|e| format!("to: {e}"))?);
    }
    let email = email.body(msg.body.clone()).map_err(|e| e.to_string())?;
    let mut builder = if cfg.starttls {
        SmtpTransport::starttls_relay(&cfg.host).map_err(|e| e.to_string())?
    } else {
        SmtpTransport::builder_dangerous(&cfg.host)
    }
    .port(cfg.port)
    .timeout(Some(Duration::from_secs(30)));
    if let Some(user) = &cfg.user {
        let password = match &cfg.password_env {
            Some(var) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} (password_env) is not set"))?,
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    builder
        .build()
        .send(&email)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NotifyConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn on_defaults_and_forms() {
        let c = parse("webhook_url = \"https://hooks.example.org/x\"");
        assert!(c.wants(When::Failure) && c.wants(When::Guard) && c.wants(When::Rejects));
        assert!(!c.wants(When::Always));
        let c = parse("webhook_url = \"https://h/x\"\non = \"always\"");
        assert!(c.wants(When::Always) && c.wants(When::Rejects));
        let c = parse("webhook_url = \"https://h/x\"\non = [\"failure\"]");
        assert!(c.wants(When::Failure) && !c.wants(When::Rejects));
        assert!(toml::from_str::<NotifyConfig>("on = \"sometimes\"").is_err());
    }

    #[test]
    fn check_needs_a_channel() {
        assert!(parse("on = \"always\"").check().is_err());
        assert!(parse("webhook_url = \"ftp://x\"").check().is_err());
        let c = parse(
            "[smtp]\nhost = \"mail\"\nfrom = \"a@example.edu\"\nto = \"b@example.edu\"\n\
             password_env = \"P\"",
        );
        assert!(c.check().unwrap_err().contains("needs user"));
    }
}
