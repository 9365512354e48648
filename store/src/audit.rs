//! The audit log's rows: the chain's head read and the next row appended in
//! one transaction, so that each row follows the one before it. The hash
//! itself is the caller's (the application's audit log holds the key).

use sqlx::Row;

use super::{Store, StoreError};

/// One stored row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRow {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When, ms since the epoch.
    pub ts_ms: i64,
    /// The user id, if anybody signed in.
    pub user_id: Option<i64>,
    /// What happened, e.g. `login` or `alert_rule.create`.
    pub action: String,
    /// On what kind of thing.
    pub resource_type: String,
    /// Which one.
    pub resource_id: Option<String>,
    /// JSON, as stored.
    pub changes: String,
    /// Client address.
    pub ip: Option<String>,
    /// Client software.
    pub user_agent: Option<String>,
    /// The previous row's hash.
    pub prev_hash: String,
    /// This row's hash.
    pub hash: String,
}

/// The hash before the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const COLUMNS: &str =
    "seq, ts, user_id, action, resource_type, resource_id, changes, ip, user_agent, prev_hash, hash";

/// Advisory lock id of the chain's head on PostgreSQL.
const HEAD_LOCK: i64 = 0x0068_7761_7564_6974; // "hwaudit"

impl Store {
    /// Appends the row `next` makes of the position and hash that follow the
    /// current head; returns its position. Writers in other processes wait
    /// for each other (PostgreSQL: an advisory lock; SQLite: the write lock
    /// taken at once).
    pub async fn append_audit(
        &self,
        next: impl FnOnce(i64, String) -> AuditRow,
    ) -> Result<i64, StoreError> {
        let head = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1".to_owned();
        let insert = format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        run!(self, |q, exec| {
            // SQLite: take the write lock at once; a transaction that reads
            // the head first and writes later fails instead of waiting when
            // another connection wrote in between.
            let mut tx = if matches!(self, Store::Sqlite(_)) {
                exec.begin_with("BEGIN IMMEDIATE").await?
            } else {
                exec.begin().await?
            };
            if matches!(self, Store::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(HEAD_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            let last = sqlx::query(q(head)).fetch_optional(&mut *tx).await?;
            let (seq, prev_hash) = match last {
                Some(r) => (r.try_get::<i64, _>(0)? + 1, r.try_get::<String, _>(1)?),
                None => (1, GENESIS.to_owned()),
            };
            let row = next(seq, prev_hash);
            sqlx::query(q(insert))
                .bind(row.seq)
                .bind(row.ts_ms)
                .bind(row.user_id)
                .bind(&row.action)
                .bind(&row.resource_type)
                .bind(&row.resource_id)
                .bind(&row.changes)
                .bind(&row.ip)
                .bind(&row.user_agent)
                .bind(&row.prev_hash)
                .bind(&row.hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row.seq)
        })
    }

    /// Rows from `after` (exclusive), oldest first, at most `limit`.
    pub async fn audit_rows(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let text = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(after)
                .bind(limit)
                .fetch_all(exec)
                .await?
                .iter()
                .map(|r| {
                    Ok(AuditRow {
                        seq: r.try_get(0)?,
                        ts_ms: r.try_get(1)?,
                        user_id: r.try_get(2)?,
                        action: r.try_get(3)?,
                        resource_type: r.try_get(4)?,
                        resource_id: r.try_get(5)?,
                        changes: r.try_get(6)?,
                        ip: r.try_get(7)?,
                        user_agent: r.try_get(8)?,
                        prev_hash: r.try_get(9)?,
                        hash: r.try_get(10)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }
}
