//! The anomalies the cycle models found: written as verdicts arrive, read by
//! the anomaly list and trend of the API.

use serde::Serialize;
use sqlx::Row;

use hydrowatch_models::ensemble::{Component, Severity, Verdict};
use hydrowatch_models::EquipmentId;

use super::{Store, StoreError};

/// The `component` stored for a cycle that is novel without a component named.
const NOVEL: &str = "novel";

/// One stored anomaly.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyRow {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub equipment: EquipmentId,
    /// When the cycle ended (its last sample), ms since the Unix epoch.
    pub ts_ms: i64,
    /// When the cycle started.
    pub cycle_start_ms: i64,
    /// The degraded component; `None` for a cycle that is only novel.
    pub component: Option<Component>,
    /// How serious.
    pub severity: Severity,
    /// The component's degraded probability (or the verdict's score for a
    /// novel cycle), 0–1.
    pub score: f64,
    /// How sure the models are, 0–1.
    pub confidence: f64,
    /// The predicted condition level, on the component's scale.
    pub level: Option<i32>,
    /// The novelty score of the cycle (above 1 is novel).
    pub novelty: Option<f64>,
    /// The models that judged it.
    pub model_version: String,
    /// What each model said (JSON, as in the verdict).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub per_model: serde_json::Value,
}

/// The rows a verdict on one cycle becomes: one per degraded component, or
/// one `novel` row when the cycle is novel and no component is degraded.
pub fn rows_of(
    equipment: &EquipmentId,
    cycle_start_ms: i64,
    ts_ms: i64,
    verdict: &Verdict,
) -> Vec<AnomalyRow> {
    if !verdict.is_anomaly {
        return Vec::new();
    }
    let per_model = serde_json::to_value(&verdict.per_model).unwrap_or_default();
    let row = |component, severity, score, confidence, level| AnomalyRow {
        id: 0,
        equipment: equipment.clone(),
        ts_ms,
        cycle_start_ms,
        component,
        severity,
        score,
        confidence,
        level,
        novelty: verdict.novelty,
        model_version: verdict.model_version.clone(),
        per_model: per_model.clone(),
    };
    let mut rows: Vec<AnomalyRow> = verdict
        .health
        .iter()
        .filter(|h| h.degraded)
        .map(|h| {
            row(
                Some(h.component),
                h.severity.unwrap_or(Severity::Minor),
                h.probability,
                h.confidence,
                h.level,
            )
        })
        .collect();
    if rows.is_empty() {
        rows.push(row(
            None,
            verdict.severity.unwrap_or(Severity::Warning),
            verdict.score,
            verdict.confidence,
            None,
        ));
    }
    rows
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyPage {
    /// Rows matching the filter, in all pages.
    pub total: i64,
    /// This page (1-based).
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
    /// Newest first.
    pub items: Vec<AnomalyRow>,
}

/// Which anomalies to list.
#[derive(Debug, Clone)]
pub struct AnomalyFilter {
    /// From (inclusive), ms.
    pub from_ms: i64,
    /// To (exclusive), ms.
    pub to_ms: i64,
    /// At least this severe.
    pub min_severity: Severity,
    /// 1-based.
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
}

/// One bucket of the anomaly trend.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrendBucket {
    /// Start of the bucket, ms.
    pub start_ms: i64,
    /// Anomalies in it.
    pub count: i64,
    /// Of them, per severity (`minor`, `major`, …).
    pub by_severity: std::collections::BTreeMap<String, i64>,
    /// Of them, per component (`novel` for novel cycles).
    pub by_component: std::collections::BTreeMap<String, i64>,
    /// The highest score among them.
    pub max_score: f64,
}

fn severities_from(min: Severity) -> Vec<String> {
    Severity::ALL
        .iter()
        .filter(|s| **s >= min)
        .map(|s| s.as_str().to_owned())
        .collect()
}

/// Decodes an anomaly row of either backend (the same columns in the same order).
macro_rules! decode_anomaly {
    ($r:expr, $equipment:expr) => {{
        let r = $r;
        (|| -> Result<AnomalyRow, StoreError> {
            let component: String = r.try_get(4)?;
            let severity: String = r.try_get(5)?;
            let per_model: String = r.try_get(11)?;
            Ok(AnomalyRow {
                id: r.try_get(0)?,
                equipment: $equipment.clone(),
                ts_ms: r.try_get(2)?,
                cycle_start_ms: r.try_get(3)?,
                component: Component::parse(&component),
                severity: Severity::parse(&severity).unwrap_or(Severity::Warning),
                score: r.try_get(6)?,
                confidence: r.try_get(7)?,
                level: r.try_get(8)?,
                novelty: r.try_get(9)?,
                model_version: r.try_get(10)?,
                per_model: serde_json::from_str(&per_model).unwrap_or_default(),
            })
        })()
    }};
}

/// Binds the eleven columns of an anomaly row, in table order, to an insert
/// of either backend.
fn bind_anomaly<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    r: &'q AnomalyRow,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(r.equipment.as_str())
        .bind(r.ts_ms)
        .bind(r.cycle_start_ms)
        .bind(r.component.map_or(NOVEL, |c| c.as_str()))
        .bind(r.severity.as_str())
        .bind(r.score)
        .bind(r.confidence)
        .bind(r.level)
        .bind(r.novelty.filter(|v| v.is_finite()))
        .bind(r.model_version.as_str())
        .bind(r.per_model.to_string())
}

/// Decodes a trend row of either backend.
macro_rules! decode_trend {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<(i64, String, String, i64, f64), StoreError> {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        })()
    }};
}

impl Store {
    /// Stores `rows`; a row already stored (same equipment, instant and
    /// component) is kept once.
    pub async fn record_anomalies(&self, rows: &[AnomalyRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                for r in rows {
                    bind_anomaly(
                        sqlx::query(
                            "INSERT INTO anomalies (equipment_id, ts, cycle_start, component, \
                             severity, score, confidence, level, novelty, model_version, per_model) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                             ON CONFLICT (equipment_id, ts, component) DO NOTHING",
                        ),
                        r,
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for r in rows {
                    bind_anomaly(
                        sqlx::query(
                            "INSERT OR IGNORE INTO anomalies (equipment_id, ts, cycle_start, \
                             component, severity, score, confidence, level, novelty, \
                             model_version, per_model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ),
                        r,
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// A page of the anomalies of `equipment` matching `filter`, newest first.
    pub async fn anomalies(
        &self,
        equipment: &EquipmentId,
        filter: &AnomalyFilter,
    ) -> Result<AnomalyPage, StoreError> {
        let severities = severities_from(filter.min_severity);
        let offset = (filter.page - 1).max(0) * filter.page_size;
        let (total, rows) = match self {
            Store::Postgres(pg) => {
                let total: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM anomalies WHERE equipment_id = $1 AND ts >= $2 \
                     AND ts < $3 AND severity = ANY($4)",
                )
                .bind(equipment.as_str())
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(&severities)
                .fetch_one(&pg.pool)
                .await?;
                let rows = sqlx::query(
                    "SELECT id, equipment_id, ts, cycle_start, component, severity, score, \
                     confidence, level, novelty, model_version, per_model \
                     FROM anomalies WHERE equipment_id = $1 AND ts >= $2 \
                     AND ts < $3 AND severity = ANY($4) ORDER BY ts DESC, id DESC \
                     LIMIT $5 OFFSET $6",
                )
                .bind(equipment.as_str())
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(&severities)
                .bind(filter.page_size)
                .bind(offset)
                .fetch_all(&pg.pool)
                .await?;
                let rows = rows
                    .iter()
                    .map(|r| decode_anomaly!(r, equipment))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                (total, rows)
            }
            Store::Sqlite(pool) => {
                // The severity list is bound as JSON: SQLite has no arrays.
                let list = serde_json::to_string(&severities).unwrap_or_default();
                let total: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM anomalies WHERE equipment_id = ?1 AND ts >= ?2 \
                     AND ts < ?3 AND severity IN (SELECT value FROM json_each(?4))",
                )
                .bind(equipment.as_str())
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(&list)
                .fetch_one(pool)
                .await?;
                let rows = sqlx::query(
                    "SELECT id, equipment_id, ts, cycle_start, component, severity, score, \
                     confidence, level, novelty, model_version, per_model \
                     FROM anomalies WHERE equipment_id = ?1 AND ts >= ?2 \
                     AND ts < ?3 AND severity IN (SELECT value FROM json_each(?4)) \
                     ORDER BY ts DESC, id DESC LIMIT ?5 OFFSET ?6",
                )
                .bind(equipment.as_str())
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(&list)
                .bind(filter.page_size)
                .bind(offset)
                .fetch_all(pool)
                .await?;
                let rows = rows
                    .iter()
                    .map(|r| decode_anomaly!(r, equipment))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                (total, rows)
            }
        };
        let items = rows;
        Ok(AnomalyPage {
            total,
            page: filter.page,
            page_size: filter.page_size,
            items,
        })
    }

    /// Anomalies of `equipment` in `[from_ms, to_ms)` counted per bucket of
    /// `bucket_ms`, every bucket present (empty ones with zeros).
    pub async fn anomaly_trend(
        &self,
        equipment: &EquipmentId,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<TrendBucket>, StoreError> {
        let bucket_ms = bucket_ms.max(1);
        let first = from_ms.div_euclid(bucket_ms) * bucket_ms;
        let rows = match self {
            Store::Postgres(pg) => sqlx::query(
                "SELECT (ts - $4) / $3, component, severity, count(*), max(score) \
                     FROM anomalies WHERE equipment_id = $1 AND ts >= $2 AND ts < $5 \
                     GROUP BY 1, 2, 3",
            )
            .bind(equipment.as_str())
            .bind(from_ms)
            .bind(bucket_ms)
            .bind(first)
            .bind(to_ms)
            .fetch_all(&pg.pool)
            .await?
            .iter()
            .map(|r| decode_trend!(r))
            .collect::<Result<Vec<_>, StoreError>>()?,
            Store::Sqlite(pool) => sqlx::query(
                "SELECT (ts - ?4) / ?3, component, severity, count(*), max(score) \
                     FROM anomalies WHERE equipment_id = ?1 AND ts >= ?2 AND ts < ?5 \
                     GROUP BY 1, 2, 3",
            )
            .bind(equipment.as_str())
            .bind(from_ms)
            .bind(bucket_ms)
            .bind(first)
            .bind(to_ms)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| decode_trend!(r))
            .collect::<Result<Vec<_>, StoreError>>()?,
        };
        let n = ((to_ms - first + bucket_ms - 1) / bucket_ms).clamp(0, 10_000) as usize;
        let mut buckets: Vec<TrendBucket> = (0..n)
            .map(|i| TrendBucket {
                start_ms: first + i as i64 * bucket_ms,
                ..TrendBucket::default()
            })
            .collect();
        for (index, component, severity, count, max_score) in rows {
            let Some(b) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) else {
                continue;
            };
            b.count += count;
            *b.by_severity.entry(severity).or_default() += count;
            *b.by_component.entry(component).or_default() += count;
            b.max_score = b.max_score.max(max_score);
        }
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrowatch_models::ensemble::{combine, EnsembleConfig, MemberVerdict};
    use std::collections::BTreeMap;

    fn verdict(valve: f64, novelty: f64) -> Verdict {
        combine(
            &EnsembleConfig::default(),
            &[
                MemberVerdict {
                    model: "random_forest".into(),
                    model_version: "abc".into(),
                    degraded: BTreeMap::from([(Component::Valve, valve), (Component::Cooler, 0.0)]),
                    levels: BTreeMap::from([(Component::Valve, 73)]),
                    level_shares: BTreeMap::new(),
                    novelty: None,
                },
                MemberVerdict {
                    model: "novelty".into(),
                    model_version: "abc".into(),
                    degraded: BTreeMap::new(),
                    levels: BTreeMap::new(),
                    level_shares: BTreeMap::new(),
                    novelty: Some(novelty),
                },
            ],
        )
    }

    #[test]
    fn a_verdict_becomes_one_row_per_degraded_component_or_one_novel_row() {
        let eq = EquipmentId::parse("rig-1").unwrap();
        let rows = rows_of(&eq, 0, 60_000, &verdict(0.9, 0.5));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].component, Some(Component::Valve));
        assert_eq!(rows[0].severity, Severity::Critical);
        assert_eq!(rows[0].level, Some(73));
        let rows = rows_of(&eq, 0, 60_000, &verdict(0.1, 3.0));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].component, None);
        assert_eq!(rows[0].severity, Severity::Warning);
        assert!(rows_of(&eq, 0, 60_000, &verdict(0.1, 0.5)).is_empty());
    }
}
