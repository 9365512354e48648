//! Alerts, their history and the notification outbox: the alerting actor's
//! [`AlertStore`] port, and the reads of the alert API.
//!
//! The SQL is written once with `$n` placeholders; SQLite gets the same text
//! with `?n` (its numbered parameters). Both backends take `ON CONFLICT DO
//! NOTHING` and `RETURNING`.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::Row;

use hydrowatch_actors::alerting::{AlertStore, AlertWrite, StoredAlert};
use hydrowatch_actors::storage::StoreFailure;
use hydrowatch_models::alert::engine::Origin;
use hydrowatch_models::alert::silence::{Matchers, WindowSpec};
use hydrowatch_models::alert::{Alert, AlertState};
use hydrowatch_models::ensemble::Severity;

use super::{Store, StoreError};

/// States of an open alert, as stored.
const OPEN: &str = "state NOT IN ('CLEARED_ACK', 'CANCELLED')";

/// The channel whose notifications are the live push itself: stored as sent.
const WALLBOARD: &str = "wallboard";

/// The SQL for SQLite: `$n` placeholders become `?n`. Every statement here
/// is a constant or built from fixed lists, never from input.
fn sqlite_sql(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.replace('$', "?"))
}

fn failure(e: sqlx::Error) -> StoreFailure {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            StoreFailure::Rejected(db.to_string())
        }
        other => StoreFailure::Unavailable(other.to_string()),
    }
}

const INSERT_ALERT: &str =
    "INSERT INTO alerts (source, kind, rule_id, site, equipment_id, sensor, \
     state, severity, peak_severity, count, last_value, first_seen, last_seen, activated_at, \
     cleared_at, acknowledged_by, acknowledged_at, flapping, body, updated_at, held_back) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21) RETURNING id";

const UPDATE_ALERT: &str = "UPDATE alerts SET source = $1, kind = $2, rule_id = $3, site = $4, \
     equipment_id = $5, sensor = $6, state = $7, severity = $8, peak_severity = $9, count = $10, \
     last_value = $11, first_seen = $12, last_seen = $13, activated_at = $14, cleared_at = $15, \
     acknowledged_by = $16, acknowledged_at = $17, flapping = $18, body = $19, updated_at = $20, \
     held_back = $21 WHERE id = $22";

const INSERT_EVENT: &str = "INSERT INTO alert_events (alert_id, seq, at, kind, state, severity, \
     actor, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";

const INSERT_NOTIFICATION: &str = "INSERT INTO alert_notifications (alert_id, activation, step, \
     repetition, channel, due_at, status, next_attempt_at, sent_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";

/// The columns of an alert row, in the order of [`INSERT_ALERT`].
struct AlertColumns {
    source: String,
    kind: String,
    rule: String,
    site: String,
    equipment: Option<String>,
    sensor: Option<String>,
    state: &'static str,
    severity: &'static str,
    peak: &'static str,
    count: i64,
    last_value: Option<f64>,
    first_seen: i64,
    last_seen: i64,
    activated_at: Option<i64>,
    cleared_at: Option<i64>,
    acknowledged_by: Option<String>,
    acknowledged_at: Option<i64>,
    flapping: bool,
    body: String,
    updated_at: i64,
    held_back: Option<&'static str>,
}

impl AlertColumns {
    fn of(w: &AlertWrite) -> Result<AlertColumns, StoreFailure> {
        let a = &w.alert;
        Ok(AlertColumns {
            source: a.key.source.clone(),
            kind: a.key.kind.clone(),
            rule: w.rule.clone(),
            site: w.origin.site.clone(),
            equipment: w.origin.equipment.clone(),
            sensor: w.origin.sensor.clone(),
            state: a.state.as_str(),
            severity: a.severity.as_str(),
            peak: a.peak_severity.as_str(),
            count: i64::try_from(a.count).unwrap_or(i64::MAX),
            last_value: a.last_value.filter(|v| v.is_finite()),
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            activated_at: a.activated_at,
            cleared_at: a.cleared_at,
            acknowledged_by: a.acknowledged.as_ref().map(|(by, _)| by.clone()),
            acknowledged_at: a.acknowledged.as_ref().map(|(_, at)| *at),
            flapping: a.flapping,
            body: serde_json::to_string(a).map_err(|e| StoreFailure::Rejected(e.to_string()))?,
            updated_at: a.history.last().map_or(a.last_seen, |e| e.at),
            held_back: w.held_back,
        })
    }
}

/// Binds the alert columns to a query of either backend.
macro_rules! bind_alert {
    ($q:expr, $c:expr) => {{
        let c = $c;
        $q.bind(&c.source)
            .bind(&c.kind)
            .bind(&c.rule)
            .bind(&c.site)
            .bind(&c.equipment)
            .bind(&c.sensor)
            .bind(c.state)
            .bind(c.severity)
            .bind(c.peak)
            .bind(c.count)
            .bind(c.last_value)
            .bind(c.first_seen)
            .bind(c.last_seen)
            .bind(c.activated_at)
            .bind(c.cleared_at)
            .bind(&c.acknowledged_by)
            .bind(c.acknowledged_at)
            .bind(c.flapping)
            .bind(&c.body)
            .bind(c.updated_at)
            .bind(c.held_back)
    }};
}

/// Saves alerts' changes in one transaction of either backend.
macro_rules! save_in {
    ($pool:expr, $sql:expr, $writes:expr) => {{
        let writes: &[AlertWrite] = $writes;
        let mut tx = $pool.begin().await.map_err(failure)?;
        let mut ids = Vec::with_capacity(writes.len());
        for w in writes {
            let columns = AlertColumns::of(w)?;
            let id: i64 = match w.id {
                None => sqlx::query_scalar($sql(INSERT_ALERT))
                    .pipe(|q| bind_alert!(q, &columns))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failure)?,
                Some(id) => {
                    sqlx::query($sql(UPDATE_ALERT))
                        .pipe(|q| bind_alert!(q, &columns))
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(failure)?;
                    id
                }
            };
            for (seq, e) in w.alert.history.iter().enumerate().skip(w.events_stored) {
                sqlx::query($sql(INSERT_EVENT))
                    .bind(id)
                    .bind(seq as i64)
                    .bind(e.at)
                    .bind(e.kind.as_str())
                    .bind(e.state.as_str())
                    .bind(e.severity.as_str())
                    .bind(&e.by)
                    .bind(&e.note)
                    .execute(&mut *tx)
                    .await
                    .map_err(failure)?;
            }
            for n in &w.notifications {
                let live = n.channel == WALLBOARD;
                sqlx::query($sql(INSERT_NOTIFICATION))
                    .bind(id)
                    .bind(n.activation)
                    .bind(n.step as i64)
                    .bind(i64::from(n.repeat))
                    .bind(&n.channel)
                    .bind(n.due_at)
                    .bind(if live { "sent" } else { "pending" })
                    .bind(n.due_at)
                    .bind(live.then_some(n.due_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(failure)?;
            }
            ids.push(id);
        }
        tx.commit().await.map_err(failure)?;
        Ok(ids)
    }};
}

/// Reads the open alerts of either backend.
macro_rules! load_open_in {
    ($pool:expr, $sql:expr) => {{
        let rows = sqlx::query($sql(&format!(
            "SELECT id, rule_id, body, site, equipment_id, sensor FROM alerts WHERE {OPEN}"
        )))
        .fetch_all($pool)
        .await
        .map_err(failure)?;
        let mut open = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0).map_err(failure)?;
            let body: String = r.try_get(2).map_err(failure)?;
            let alert: Alert = serde_json::from_str(&body)
                .map_err(|e| StoreFailure::Rejected(format!("alert {id}: {e}")))?;
            let notified: Vec<(i64, i64)> = sqlx::query_as($sql(
                "SELECT DISTINCT step, repetition FROM alert_notifications \
                 WHERE alert_id = $1 AND activation = $2",
            ))
            .bind(id)
            .bind(alert.activated_at.unwrap_or(i64::MIN))
            .fetch_all($pool)
            .await
            .map_err(failure)?;
            open.push(StoredAlert {
                id,
                rule: r.try_get(1).map_err(failure)?,
                events_stored: alert.history.len(),
                origin: Origin {
                    site: r.try_get(3).map_err(failure)?,
                    equipment: r.try_get(4).map_err(failure)?,
                    sensor: r.try_get(5).map_err(failure)?,
                },
                notified: notified
                    .into_iter()
                    .map(|(s, r)| (s as usize, r as u32))
                    .collect::<BTreeSet<_>>(),
                alert,
            });
        }
        Ok(open)
    }};
}

/// `value.pipe(f)` = `f(value)`: keeps the bind chains readable.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}

impl<T> Pipe for T {}

/// The SQL for PostgreSQL, as written.
fn same(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_owned())
}

impl AlertStore for Store {
    fn load_open(&self) -> BoxFuture<'_, Result<Vec<StoredAlert>, StoreFailure>> {
        Box::pin(async move {
            match self {
                Store::Postgres(pg) => load_open_in!(&pg.pool, same),
                Store::Sqlite(pool) => load_open_in!(pool, sqlite_sql),
            }
        })
    }

    fn save<'a>(
        &'a self,
        writes: &'a [AlertWrite],
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreFailure>> {
        Box::pin(async move {
            match self {
                Store::Postgres(pg) => save_in!(pg.pool, same, writes),
                Store::Sqlite(pool) => save_in!(pool, sqlite_sql, writes),
            }
        })
    }

    fn silences(&self) -> BoxFuture<'_, Result<Vec<(Matchers, WindowSpec)>, StoreFailure>> {
        Box::pin(async move {
            let rows = Store::silences(self, false)
                .await
                .map_err(|e| StoreFailure::Unavailable(e.to_string()))?;
            Ok(rows.into_iter().map(|r| (r.matchers, r.window)).collect())
        })
    }
}

/// An alert as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRow {
    pub id: i64,
    /// The actor path it comes from.
    pub source: String,
    /// Its type: `<rule kind>:<rule id>`.
    pub kind: String,
    /// The rule that raised it.
    pub rule: String,
    pub site: String,
    /// Equipment unit, if any.
    pub equipment: Option<String>,
    /// Sensor, if any.
    pub sensor: Option<String>,
    /// `PENDING`, `ACTIVE_UNACK`, `ACTIVE_ACK`, `CLEARED_UNACK`,
    /// `CLEARED_ACK` or `CANCELLED`.
    pub state: String,
    /// Severity now.
    pub severity: Severity,
    /// Highest severity reached.
    pub peak_severity: Severity,
    /// Triggers while open.
    pub count: i64,
    /// The last value that triggered it.
    pub last_value: Option<f64>,
    /// First seen, ms since the epoch.
    pub first_seen_ms: i64,
    /// Last trigger.
    pub last_seen_ms: i64,
    /// When it (last) started firing.
    pub activated_at_ms: Option<i64>,
    /// When it was cleared.
    pub cleared_at_ms: Option<i64>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<i64>,
    /// Held back for flapping.
    pub flapping: bool,
    /// Why it is not notified although open: `silenced`, `inhibited` or
    /// `flapping` (as the alerting actor last judged it); `null` when not
    /// held back.
    pub held_back: Option<String>,
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertEventRow {
    /// Position in the history.
    pub seq: i64,
    pub at_ms: i64,
    /// What happened (`triggered`, `activated`, `acknowledged`, …).
    pub kind: String,
    /// State after it.
    pub state: String,
    /// Severity after it.
    pub severity: String,
    /// Who, if a person.
    pub by: Option<String>,
    /// Comment or value.
    pub note: Option<String>,
}

/// One notification in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryRow {
    /// Escalation step.
    pub step: i64,
    /// 0, or the repeat of the last step.
    pub repeat: i64,
    /// Channel and recipient.
    pub channel: String,
    /// When it fell due, ms.
    pub due_at_ms: i64,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub sent_at_ms: Option<i64>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only these states (empty: all).
    pub states: Vec<AlertState>,
    /// At least this severe.
    pub min_severity: Option<Severity>,
    /// Only this equipment unit.
    pub equipment: Option<String>,
    /// Only alerts of these units and plant-wide ones (a user's equipment
    /// scope; `None`: any). The ids must come from the plant's
    /// configuration, never from a request: they are spliced as literals.
    pub within: Option<Vec<String>>,
    /// First seen from (inclusive), ms.
    pub from_ms: Option<i64>,
    /// First seen before, ms.
    pub to_ms: Option<i64>,
    /// 1-based.
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertPage {
    /// Alerts matching, in all pages.
    pub total: i64,
    /// This page (1-based).
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
    /// Newest first.
    pub items: Vec<AlertRow>,
}

const ALERT_COLUMNS: &str = "id, source, kind, rule_id, site, equipment_id, sensor, state, \
     severity, peak_severity, count, last_value, first_seen, last_seen, activated_at, cleared_at, \
     acknowledged_by, acknowledged_at, flapping, held_back";

macro_rules! decode_alert_row {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<AlertRow, sqlx::Error> {
            let severity: String = r.try_get(8)?;
            let peak: String = r.try_get(9)?;
            Ok(AlertRow {
                id: r.try_get(0)?,
                source: r.try_get(1)?,
                kind: r.try_get(2)?,
                rule: r.try_get(3)?,
                site: r.try_get(4)?,
                equipment: r.try_get(5)?,
                sensor: r.try_get(6)?,
                state: r.try_get(7)?,
                severity: Severity::parse(&severity).unwrap_or(Severity::Warning),
                peak_severity: Severity::parse(&peak).unwrap_or(Severity::Warning),
                count: r.try_get(10)?,
                last_value: r.try_get(11)?,
                first_seen_ms: r.try_get(12)?,
                last_seen_ms: r.try_get(13)?,
                activated_at_ms: r.try_get(14)?,
                cleared_at_ms: r.try_get(15)?,
                acknowledged_by: r.try_get(16)?,
                acknowledged_at_ms: r.try_get(17)?,
                flapping: r.try_get(18)?,
                held_back: r.try_get(19)?,
            })
        })()
    }};
}

/// The WHERE clause of a filter and its text arguments, in placeholder
/// order after none: states and severities as literals from fixed lists
/// (never from input), the rest bound.
fn filter_sql(f: &AlertFilter) -> (String, Vec<i64>, Option<String>) {
    let mut clauses = vec!["1 = 1".to_owned()];
    if !f.states.is_empty() {
        let list: Vec<String> = f
            .states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        clauses.push(format!("state IN ({})", list.join(", ")));
    }
    if let Some(min) = f.min_severity {
        let list: Vec<String> = Severity::ALL
            .iter()
            .filter(|s| **s >= min)
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        clauses.push(format!("severity IN ({})", list.join(", ")));
    }
    if let Some(within) = &f.within {
        let list: Vec<String> = within
            .iter()
            .map(|id| format!("'{}'", id.replace('\'', "''")))
            .collect();
        clauses.push(if list.is_empty() {
            "equipment_id IS NULL".to_owned()
        } else {
            format!(
                "(equipment_id IS NULL OR equipment_id IN ({}))",
                list.join(", ")
            )
        });
    }
    clauses.push("first_seen >= $1 AND first_seen < $2".to_owned());
    let equipment = f.equipment.clone();
    if equipment.is_some() {
        clauses.push("equipment_id = $3".to_owned());
    }
    (
        clauses.join(" AND "),
        vec![f.from_ms.unwrap_or(i64::MIN), f.to_ms.unwrap_or(i64::MAX)],
        equipment,
    )
}

macro_rules! list_in {
    ($pool:expr, $sql:expr, $f:expr) => {{
        let f: &AlertFilter = $f;
        let (clause, range, equipment) = filter_sql(f);
        let n = if equipment.is_some() { 3 } else { 2 };
        let total: i64 = sqlx::query_scalar($sql(&format!("SELECT count(*) FROM alerts WHERE {clause}")))
            .bind(range[0])
            .bind(range[1])
            .pipe(|q| match &equipment {
                Some(e) => q.bind(e.clone()),
                None => q,
            })
            .fetch_one($pool)
            .await?;
        let rows = sqlx::query($sql(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {clause} ORDER BY first_seen DESC, id DESC \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        )))
        .bind(range[0])
        .bind(range[1])
        .pipe(|q| match &equipment {
            Some(e) => q.bind(e.clone()),
            None => q,
        })
        .bind(f.page_size)
        .bind((f.page - 1).max(0) * f.page_size)
        .fetch_all($pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| decode_alert_row!(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AlertPage {
            total,
            page: f.page,
            page_size: f.page_size,
            items,
        })
    }};
}

macro_rules! detail_in {
    ($pool:expr, $sql:expr, $id:expr) => {{
        let id: i64 = $id;
        let Some(row) = sqlx::query($sql(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional($pool)
        .await?
        else {
            return Ok(None);
        };
        let alert = decode_alert_row!(&row)?;
        let events = sqlx::query($sql(
            "SELECT seq, at, kind, state, severity, actor, note FROM alert_events \
             WHERE alert_id = $1 ORDER BY seq",
        ))
        .bind(id)
        .fetch_all($pool)
        .await?
        .iter()
        .map(|r| -> Result<AlertEventRow, sqlx::Error> {
            Ok(AlertEventRow {
                seq: r.try_get(0)?,
                at_ms: r.try_get(1)?,
                kind: r.try_get(2)?,
                state: r.try_get(3)?,
                severity: r.try_get(4)?,
                by: r.try_get(5)?,
                note: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let deliveries = sqlx::query($sql(
            "SELECT step, repetition, channel, due_at, status, attempts, last_error, sent_at \
             FROM alert_notifications WHERE alert_id = $1 ORDER BY due_at, step, repetition, channel",
        ))
        .bind(id)
        .fetch_all($pool)
        .await?
        .iter()
        .map(|r| -> Result<DeliveryRow, sqlx::Error> {
            Ok(DeliveryRow {
                step: r.try_get::<i64, _>(0)?,
                repeat: r.try_get::<i64, _>(1)?,
                channel: r.try_get(2)?,
                due_at_ms: r.try_get(3)?,
                status: r.try_get(4)?,
                attempts: r.try_get::<i64, _>(5)?,
                last_error: r.try_get(6)?,
                sent_at_ms: r.try_get(7)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(AlertDetail {
            alert,
            history: events,
            deliveries,
        }))
    }};
}

/// An alert with its history and deliveries.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: AlertRow,
    /// Everything that happened to it, oldest first.
    pub history: Vec<AlertEventRow>,
    /// Its notifications and their delivery.
    pub deliveries: Vec<DeliveryRow>,
}

impl Store {
    /// A page of alerts matching `filter`, newest first.
    pub async fn alerts(&self, filter: &AlertFilter) -> Result<AlertPage, StoreError> {
        match self {
            Store::Postgres(pg) => list_in!(&pg.pool, same, filter),
            Store::Sqlite(pool) => list_in!(pool, sqlite_sql, filter),
        }
    }

    /// One alert with its history and deliveries.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertDetail>, StoreError> {
        match self {
            Store::Postgres(pg) => detail_in!(&pg.pool, same, id),
            Store::Sqlite(pool) => detail_in!(pool, sqlite_sql, id),
        }
    }

    /// The unit of alert `id` (`Some(None)`: a plant-wide alert; `None`:
    /// no such alert), without its history and deliveries.
    pub async fn alert_equipment(&self, id: i64) -> Result<Option<Option<String>>, StoreError> {
        let text = "SELECT equipment_id FROM alerts WHERE id = $1".to_owned();
        super::run!(self, |q, exec| {
            match sqlx::query(q(text)).bind(id).fetch_optional(exec).await? {
                Some(r) => Ok(Some(sqlx::Row::try_get(&r, 0)?)),
                None => Ok(None),
            }
        })
    }
}

/// A notification due for delivery, with its alert.
#[derive(Debug, Clone)]
pub struct DueNotification {
    /// Its row id.
    pub id: i64,
    /// The alert it is about.
    pub alert: AlertRow,
    /// Escalation step.
    pub step: i64,
    /// 0, or the repeat of the last step.
    pub repeat: i64,
    /// Channel and recipient.
    pub channel: String,
    /// When it fell due, ms.
    pub due_at_ms: i64,
    /// Attempts so far.
    pub attempts: i64,
}

macro_rules! due_in {
    ($pool:expr, $sql:expr, $now:expr, $limit:expr) => {{
        let columns: Vec<String> = ALERT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{}", c.trim()))
            .collect();
        let rows = sqlx::query($sql(&format!(
            "SELECT {}, n.id, n.step, n.repetition, n.channel, n.due_at, n.attempts \
             FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id \
             WHERE n.status = 'pending' AND n.next_attempt_at <= $1 \
             ORDER BY n.next_attempt_at, n.id LIMIT $2",
            columns.join(", ")
        )))
        .bind($now)
        .bind($limit)
        .fetch_all($pool)
        .await?;
        rows.iter()
            .map(|r| -> Result<DueNotification, StoreError> {
                Ok(DueNotification {
                    alert: decode_alert_row!(r)?,
                    id: r.try_get(20)?,
                    step: r.try_get(21)?,
                    repeat: r.try_get(22)?,
                    channel: r.try_get(23)?,
                    due_at_ms: r.try_get(24)?,
                    attempts: r.try_get(25)?,
                })
            })
            .collect()
    }};
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// Delivered at this instant.
    Sent(i64),
    /// Failed; try again at `next_attempt_at_ms`.
    Retry {
        error: String,
        /// When to try again.
        next_attempt_at_ms: i64,
    },
    /// Failed for the last time: a dead letter.
    Dead(String),
    /// Not attempted (rate limit): try at this instant, no attempt counted.
    Deferred(i64),
}

macro_rules! record_in {
    ($pool:expr, $sql:expr, $id:expr, $outcome:expr) => {{
        let id: i64 = $id;
        let q = match $outcome {
            DeliveryOutcome::Sent(at) => sqlx::query($sql(
                "UPDATE alert_notifications SET status = 'sent', attempts = attempts + 1, \
                 sent_at = $2, last_error = NULL WHERE id = $1",
            ))
            .bind(id)
            .bind(*at),
            DeliveryOutcome::Retry {
                error,
                next_attempt_at_ms,
            } => sqlx::query($sql(
                "UPDATE alert_notifications SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_at = $3 WHERE id = $1",
            ))
            .bind(id)
            .bind(error.clone())
            .bind(*next_attempt_at_ms),
            DeliveryOutcome::Dead(error) => sqlx::query($sql(
                "UPDATE alert_notifications SET status = 'dead', attempts = attempts + 1, \
                 last_error = $2 WHERE id = $1",
            ))
            .bind(id)
            .bind(error.clone()),
            DeliveryOutcome::Deferred(at) => sqlx::query($sql(
                "UPDATE alert_notifications SET next_attempt_at = $2 WHERE id = $1",
            ))
            .bind(id)
            .bind(*at),
        };
        q.execute($pool).await?;
        Ok(())
    }};
}

impl Store {
    /// Pending notifications due by `now_ms`, oldest first, at most `limit`.
    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueNotification>, StoreError> {
        match self {
            Store::Postgres(pg) => due_in!(&pg.pool, same, now_ms, limit),
            Store::Sqlite(pool) => due_in!(pool, sqlite_sql, now_ms, limit),
        }
    }

    /// Records what an attempt to deliver notification `id` did.
    pub async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError> {
        match self {
            Store::Postgres(pg) => record_in!(&pg.pool, same, id, outcome),
            Store::Sqlite(pool) => record_in!(pool, sqlite_sql, id, outcome),
        }
    }
}
