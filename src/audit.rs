//! The audit log: who did what, when, from where — each row chained to the
//! one before by a hash over its content and the previous hash, so that
//! `hydrowatch audit verify` finds a row edited, inserted or deleted in the
//! database afterwards.
//!
//! With `audit.key` set the chain is an HMAC-SHA256 under that key (kept
//! outside the database): then even a row appended with a recomputed hash
//! is found. Without it the chain is plain SHA-256: edits and deletions
//! inside the log are still found; deleting the newest rows is found only
//! against a head (`seq`, `hash`) recorded elsewhere, which `verify` prints.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

pub use crate::store::audit::{AuditRow, GENESIS};
use crate::store::{Store, StoreError};

/// `[audit]` of `hydrowatch.toml`.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// HMAC key of the chain (16+ bytes; `HYDROWATCH_AUDIT__KEY`). Empty:
    /// plain SHA-256.
    pub key: String,
}

impl std::fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSettings")
            .field("key", &if self.key.is_empty() { "" } else { "…" })
            .finish()
    }
}

impl AuditSettings {
    /// Checks the settings (at start-up).
    pub fn validate(&self) -> Result<(), String> {
        if !self.key.is_empty() && self.key.len() < 16 {
            return Err("audit.key: at least 16 bytes (or leave it empty)".into());
        }
        Ok(())
    }
}

/// Something that happened, to record.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// Who (a user id), if anybody signed in.
    pub user_id: Option<i64>,
    /// What: `login`, `login_failed`, `account_locked`, `refresh_token_reuse`,
    /// `logout`, `alert_rule.create`, `actor.restart`…
    pub action: String,
    /// On what kind of thing: `session`, `user`, `alert_rule`, `actor`…
    pub resource_type: String,
    /// Which one.
    pub resource_id: Option<String>,
    /// What changed or further facts (JSON).
    pub changes: serde_json::Value,
    /// Client address.
    pub ip: Option<String>,
    /// Client software.
    pub user_agent: Option<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Rows read.
    pub rows: i64,
    /// The newest row's position and hash (record it elsewhere to detect
    /// the deletion of the newest rows later).
    pub head: Option<(i64, String)>,
    /// The first problem, if any: the position and what is wrong.
    pub problem: Option<(i64, String)>,
}

/// Appends to the hash chain, one row at a time, and verifies it.
pub struct AuditLog {
    store: Store,
    key: Vec<u8>,
    /// One append at a time within the process (PostgreSQL also takes an
    /// advisory lock, for several processes).
    append: Mutex<()>,
}

impl AuditLog {
    /// The log in `store`.
    pub fn new(store: Store, settings: &AuditSettings) -> AuditLog {
        if settings.key.is_empty() {
            tracing::warn!("audit.key is not set: the audit chain is plain SHA-256 (appended forgeries are not detectable)");
        }
        AuditLog {
            store,
            key: settings.key.as_bytes().to_vec(),
            append: Mutex::new(()),
        }
    }

    /// The hash of a row's content chained to `prev_hash`.
    fn hash(&self, row: &AuditRow) -> String {
        let content = serde_json::json!([
            row.seq,
            row.ts_ms,
            row.user_id,
            row.action,
            row.resource_type,
            row.resource_id,
            row.changes,
            row.ip,
            row.user_agent,
            row.prev_hash,
        ])
        .to_string();
        let bytes: Vec<u8> = if self.key.is_empty() {
            Sha256::digest(content.as_bytes()).to_vec()
        } else {
            match Hmac::<Sha256>::new_from_slice(&self.key) {
                Ok(mut mac) => {
                    mac.update(content.as_bytes());
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Sha256::digest(content.as_bytes()).to_vec(),
            }
        };
        crate::hex(&bytes)
    }

    /// Appends an event; returns its position. A failure is logged by the
    /// caller: the action it records has happened.
    pub async fn record(&self, event: AuditEvent, now_ms: i64) -> Result<i64, StoreError> {
        let _one = self.append.lock().await;
        let changes = event.changes.to_string();
        self.store
            .append_audit(|seq, prev_hash| {
                let mut row = AuditRow {
                    seq,
                    ts_ms: now_ms,
                    user_id: event.user_id,
                    action: event.action,
                    resource_type: event.resource_type,
                    resource_id: event.resource_id,
                    changes,
                    ip: event.ip,
                    user_agent: event.user_agent,
                    prev_hash,
                    hash: String::new(),
                };
                row.hash = self.hash(&row);
                row
            })
            .await
    }

    /// Rows from `after` (exclusive), oldest first, at most `limit`.
    pub async fn rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        self.store.audit_rows(after, limit).await
    }

    /// Walks the whole chain: positions without gaps from 1, each row's
    /// hash over its content, each row chained to the one before.
    pub async fn verify(&self) -> Result<Verification, StoreError> {
        let mut expected_seq = 1;
        let mut prev = GENESIS.to_owned();
        let mut rows = 0;
        loop {
            let page = self.rows(expected_seq - 1, 1000).await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for row in page {
                rows += 1;
                let problem = if row.seq != expected_seq {
                    Some(format!(
                        "row {expected_seq} is missing (deleted), next is {}",
                        row.seq
                    ))
                } else if row.prev_hash != prev {
                    Some("not chained to the row before (a row was inserted or removed)".to_owned())
                } else if self.hash(&row) != row.hash {
                    Some("its content does not match its hash (edited or forged)".to_owned())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Ok(Verification {
                        rows,
                        head: None,
                        problem: Some((expected_seq, problem)),
                    });
                }
                prev = row.hash.clone();
                expected_seq += 1;
            }
            if last.seq < expected_seq - 1 {
                break;
            }
        }
        Ok(Verification {
            rows,
            head: (expected_seq > 1).then(|| (expected_seq - 1, prev)),
            problem: None,
        })
    }
}
