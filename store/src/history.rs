//! History for charts: downsampled series and KPIs, from raw blocks or the
//! rollup that suits the range.
//!
//! Level choice: the coarsest rollup (1 d, 1 h, 1 min) that still gives at least
//! a quarter of the points asked for; raw blocks when even 1-minute buckets
//! would be too few. Points are buckets of a whole number of the level's width,
//! at most `max_points` of them, each with min and max (peaks survive), mean,
//! count and last value.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::blocks::{bucket_start, Summary, DAY_MS, HOUR_MS};
use super::{Store, StoreError};

/// Where a series' points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The stored samples.
    Raw,
    /// `rollup_1m`.
    #[serde(rename = "1m")]
    Minute,
    /// `rollup_1h`.
    #[serde(rename = "1h")]
    Hour,
    /// `rollup_1d`.
    #[serde(rename = "1d")]
    Day,
}

impl Level {
    fn table(self) -> Option<(&'static str, i64)> {
        match self {
            Level::Raw => None,
            Level::Minute => Some(("rollup_1m", 60_000)),
            Level::Hour => Some(("rollup_1h", HOUR_MS)),
            Level::Day => Some(("rollup_1d", DAY_MS)),
        }
    }
}

/// The level and bucket width for `range_ms` shown in at most `max_points`.
pub fn plan(range_ms: i64, max_points: u32) -> (Level, i64) {
    let max_points = i64::from(max_points.max(1));
    let wanted = (range_ms + max_points - 1) / max_points;
    for level in [Level::Day, Level::Hour, Level::Minute] {
        if let Some((_, width)) = level.table() {
            if range_ms / width >= (max_points / 4).max(1) {
                let buckets_per_point = ((wanted + width - 1) / width).max(1);
                return (level, buckets_per_point * width);
            }
        }
    }
    (Level::Raw, wanted.max(1))
}

/// One bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    /// Start of the bucket, ms since the epoch.
    pub ts_ms: i64,
    /// Smallest value in the bucket.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean value.
    pub avg: f64,
    /// The latest value.
    pub last: f64,
    /// Values in the bucket.
    pub count: i64,
}

/// A downsampled series per sensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Where the points come from.
    pub level: Level,
    /// Width of a bucket, ms.
    pub bucket_ms: i64,
    /// Points per requested sensor (same order), oldest first; empty buckets left out.
    pub points: Vec<Vec<Point>>,
}

fn point(ts_ms: i64, s: Summary) -> Point {
    Point {
        ts_ms,
        min: s.min,
        max: s.max,
        avg: s.sum / s.count as f64,
        last: s.last,
        count: s.count,
    }
}

/// A rollup row: sensor, bucket start (ms), and its summary.
type RollupRow = (i64, i64, Summary);

impl Store {
    /// The series of `sensors` over [from_ms, to_ms) in at most `max_points` buckets.
    pub async fn series(
        &self,
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
        max_points: u32,
    ) -> Result<Series, StoreError> {
        if from_ms >= to_ms {
            return Err(StoreError::Invalid("`from` must be before `to`".into()));
        }
        let (level, bucket_ms) = plan(to_ms - from_ms, max_points);
        // Fragments of one minute may interleave in time (a backfill between
        // samples already stored), so buckets are keyed, not appended.
        let mut per_sensor: Vec<BTreeMap<i64, Summary>> = vec![BTreeMap::new(); sensors.len()];
        let index_of = |sensor: i64| sensors.iter().position(|s| *s == sensor);
        // Buckets are aligned to `from` rounded down to the level's width.
        let origin = match level.table() {
            Some((_, width)) => bucket_start(from_ms, width),
            None => from_ms,
        };
        let key = |ts: i64| origin + (ts - origin).div_euclid(bucket_ms) * bucket_ms;
        let mut add = |sensor: i64, ts: i64, s: Summary| {
            if let Some(i) = index_of(sensor) {
                let k = key(ts);
                per_sensor[i]
                    .entry(k)
                    .and_modify(|sum| *sum = sum.merge(s))
                    .or_insert(s);
            }
        };
        match level.table() {
            None => {
                for f in self.read_fragments(sensors, from_ms, to_ms).await? {
                    for s in f.samples() {
                        if let (Some(v), true, true) = (
                            s.value,
                            s.quality != hydrowatch_models::Quality::Bad,
                            s.ts_ms >= from_ms && s.ts_ms < to_ms,
                        ) {
                            add(s.sensor, s.ts_ms, Summary::of(s.ts_ms, v));
                        }
                    }
                }
            }
            Some((table, width)) => {
                for (sensor, bucket, s) in self
                    .rollup_rows((table, width), sensors, origin, to_ms, bucket_ms)
                    .await?
                {
                    add(sensor, bucket, s);
                }
            }
        }
        Ok(Series {
            level,
            bucket_ms,
            points: per_sensor
                .into_iter()
                .map(|buckets| buckets.into_iter().map(|(k, s)| point(k, s)).collect())
                .collect(),
        })
    }

    /// Rows of a rollup for `sensors` with buckets in [from_ms, to_ms), ordered
    /// by sensor and bucket; PostgreSQL may already merge them into buckets of
    /// `group_ms` from `from_ms` (the caller merges by bucket either way).
    async fn rollup_rows(
        &self,
        (table, width): (&str, i64),
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
        group_ms: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let summary = |row: &dyn Fn(usize) -> Result<Option<f64>, sqlx::Error>,
                       n: i64,
                       last_ts: i64|
         -> Result<Summary, sqlx::Error> {
            Ok(Summary {
                count: n,
                min: row(3)?.unwrap_or(f64::NAN),
                max: row(4)?.unwrap_or(f64::NAN),
                sum: row(5)?.unwrap_or(0.0),
                last: row(6)?.unwrap_or(f64::NAN),
                last_ts,
            })
        };
        let mut out = Vec::new();
        match self {
            Store::Postgres(pg) => {
                // `table` is one of the constant rollup names. When buckets
                // span many rollup rows, the database merges them (measured:
                // KPIs over a day 1.5× faster); for a few rows per bucket its
                // sort costs more than the rows it saves.
                let sql = if group_ms >= 16 * width {
                    format!(
                        "SELECT sensor_id, \
                           $2 + ((extract(epoch FROM bucket) * 1000)::int8 - $2) / $4 * $4 AS k, \
                           sum(n)::int8, min(vmin), max(vmax), sum(vsum), \
                           (array_agg(vlast ORDER BY last_ts DESC NULLS LAST))[1], \
                           (extract(epoch FROM max(last_ts)) * 1000)::int8 \
                         FROM {table} WHERE sensor_id = ANY($1) \
                           AND bucket >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                           AND bucket < timestamptz 'epoch' + $3 * interval '1 millisecond' \
                           AND n > 0 \
                         GROUP BY sensor_id, k ORDER BY sensor_id, k"
                    )
                } else {
                    format!(
                        "SELECT sensor_id, (extract(epoch FROM bucket) * 1000)::int8, n, \
                         vmin, vmax, vsum, vlast, (extract(epoch FROM last_ts) * 1000)::int8 \
                         FROM {table} WHERE sensor_id = ANY($1) \
                           AND bucket >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                           AND bucket < timestamptz 'epoch' + $3 * interval '1 millisecond' \
                           AND n > 0 AND $4::int8 IS NOT NULL \
                         ORDER BY sensor_id, bucket"
                    )
                };
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(sensors)
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(group_ms.max(1))
                    .fetch_all(&pg.pool)
                    .await?;
                for r in rows {
                    let get = |i: usize| r.try_get::<Option<f64>, _>(i);
                    let n: i64 = r.try_get(2)?;
                    let last_ts: Option<i64> = r.try_get(7)?;
                    out.push((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        summary(&get, n, last_ts.unwrap_or(0))?,
                    ));
                }
            }
            Store::Sqlite(pool) => {
                let sql = format!(
                    "SELECT sensor_id, bucket, n, vmin, vmax, vsum, vlast, last_ts \
                     FROM {table} WHERE sensor_id = ? AND bucket >= ? AND bucket < ? AND n > 0 \
                     ORDER BY bucket"
                );
                for sensor in sensors {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(sensor)
                        .bind(from_ms)
                        .bind(to_ms)
                        .fetch_all(pool)
                        .await?;
                    for r in rows {
                        let get = |i: usize| r.try_get::<Option<f64>, _>(i);
                        let n: i64 = r.try_get(2)?;
                        let last_ts: Option<i64> = r.try_get(7)?;
                        out.push((
                            *sensor,
                            r.try_get(1)?,
                            summary(&get, n, last_ts.unwrap_or(0))?,
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// KPIs of `sensors` over the last `range_ms` before `now_ms`: per sensor the
    /// count, min, max, mean and last value, from the 1-minute rollup up to a
    /// day and the hourly one beyond (so the window is rounded to those buckets).
    pub async fn stats(
        &self,
        sensors: &[i64],
        now_ms: i64,
        range_ms: i64,
    ) -> Result<Vec<Option<Point>>, StoreError> {
        let (table, width) = if range_ms <= DAY_MS {
            ("rollup_1m", 60_000)
        } else {
            ("rollup_1h", HOUR_MS)
        };
        let from = bucket_start(now_ms - range_ms, width);
        let mut out: Vec<Option<Summary>> = vec![None; sensors.len()];
        for (sensor, _, s) in self
            .rollup_rows(
                (table, width),
                sensors,
                from,
                now_ms + width,
                now_ms + width - from,
            )
            .await?
        {
            if let Some(i) = sensors.iter().position(|x| *x == sensor) {
                out[i] = Some(match out[i] {
                    Some(prev) => prev.merge(s),
                    None => s,
                });
            }
        }
        Ok(out.into_iter().map(|s| s.map(|s| point(from, s))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_suits_the_range() {
        let day = DAY_MS;
        assert_eq!(plan(3_600_000, 1000), (Level::Raw, 3_600));
        assert_eq!(plan(day, 1000), (Level::Minute, 120_000));
        assert_eq!(plan(30 * day, 1000), (Level::Hour, HOUR_MS));
        assert_eq!(plan(365 * day, 1000), (Level::Day, DAY_MS));
        // Never more than asked for.
        for (range, points) in [(7 * day, 1000), (day, 100), (6 * HOUR_MS, 2000)] {
            let (_, bucket) = plan(range, points);
            assert!(range / bucket <= points as i64, "{range} {points} {bucket}");
        }
    }
}
