//! Samples as stored: blocks per sensor and minute, as historians keep them.
//!
//! A row per sample costs an index entry per sample; on this machine that caps
//! PostgreSQL at about 230k rows/s, while the same samples as arrays in one row
//! per sensor and minute COPY at millions per second (BENCHMARKS.md). So a write
//! turns its samples into [`Fragment`]s: the samples of one sensor within one
//! block interval ([`BLOCK_MS`]), sorted by time, one stored row each. Several
//! writes into the same minute give several fragments of that block; reads merge
//! them. A fragment carries its summary (count, min, max, sum, last), which the
//! rollups and TimescaleDB's continuous aggregates build on.
//!
//! Duplicates: within a batch the first sample of a (sensor, instant) wins; a
//! sample whose (sensor, instant) is already stored is dropped before the write
//! (the stored value wins). Together: the first value to arrive wins.

use std::collections::{HashMap, HashSet};

use hydrowatch_actors::storage::StoredSample;
use hydrowatch_models::Quality;

/// Length of a block: one minute, so that a block's summary is exactly its
/// 1-minute rollup.
pub const BLOCK_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Quality as stored: 0 good, 1 uncertain, 2 bad.
pub fn quality_code(q: Quality) -> i16 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    }
}

/// The quality a stored code stands for (unknown codes read as bad).
pub fn quality_from_code(code: i16) -> Quality {
    match code {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        _ => Quality::Bad,
    }
}

/// Start of the block (or any bucket of `width` ms) holding `ts_ms`.
pub fn bucket_start(ts_ms: i64, width: i64) -> i64 {
    ts_ms.div_euclid(width) * width
}

/// The samples of one sensor within one block, sorted by time, without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// The sensor's database id.
    pub sensor: i64,
    /// Start of the block, ms since the epoch (a multiple of [`BLOCK_MS`]).
    pub block_start: i64,
    /// Instants, ms since the epoch, strictly increasing.
    pub ts: Vec<i64>,
    /// Values (`None`: a gap).
    pub values: Vec<Option<f64>>,
    /// Quality codes.
    pub quality: Vec<i16>,
}

/// Count, extremes, sum and last of the values a fragment or bucket holds.
///
/// Only values of good or uncertain quality count: a bad sample keeps its raw
/// value for inspection but does not move a chart's min or max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Values counted.
    pub count: i64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of the values.
    pub sum: f64,
    /// The latest value counted.
    pub last: f64,
    /// When it was taken, ms.
    pub last_ts: i64,
}

impl Summary {
    /// The summary of one value taken at `ts`.
    pub fn of(ts: i64, v: f64) -> Summary {
        Summary {
            count: 1,
            min: v,
            max: v,
            sum: v,
            last: v,
            last_ts: ts,
        }
    }

    /// Both summaries as one.
    pub fn merge(self, other: Summary) -> Summary {
        let (last, last_ts) = if other.last_ts >= self.last_ts {
            (other.last, other.last_ts)
        } else {
            (self.last, self.last_ts)
        };
        Summary {
            count: self.count + other.count,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            sum: self.sum + other.sum,
            last,
            last_ts,
        }
    }
}

fn merge_into(slot: &mut Option<Summary>, s: Summary) {
    *slot = Some(match *slot {
        Some(prev) => prev.merge(s),
        None => s,
    });
}

impl Fragment {
    /// First instant.
    pub fn first_ts(&self) -> i64 {
        self.ts.first().copied().unwrap_or(self.block_start)
    }

    /// Last instant.
    pub fn last_ts(&self) -> i64 {
        self.ts.last().copied().unwrap_or(self.block_start)
    }

    /// Whether every sample is of good quality (then no quality is stored).
    pub fn all_good(&self) -> bool {
        self.quality.iter().all(|q| *q == 0)
    }

    /// The summary of the values that count (see [`Summary`]), if any.
    pub fn summary(&self) -> Option<Summary> {
        let mut out = None;
        for ((ts, v), q) in self.ts.iter().zip(&self.values).zip(&self.quality) {
            if let (Some(v), true) = (v, *q < 2) {
                merge_into(&mut out, Summary::of(*ts, *v));
            }
        }
        out
    }

    /// The samples, in time order.
    pub fn samples(&self) -> impl Iterator<Item = StoredSample> + '_ {
        self.ts
            .iter()
            .zip(&self.values)
            .zip(&self.quality)
            .map(|((ts, value), q)| StoredSample {
                sensor: self.sensor,
                ts_ms: *ts,
                value: *value,
                quality: quality_from_code(*q),
            })
    }

    /// Drops the samples whose instant is in `taken`; returns how many.
    fn drop_instants(&mut self, taken: &HashSet<i64>) -> u64 {
        let before = self.ts.len();
        let kept: Vec<(i64, Option<f64>, i16)> = self
            .ts
            .iter()
            .zip(&self.values)
            .zip(&self.quality)
            .filter(|((ts, _), _)| !taken.contains(ts))
            .map(|((ts, v), q)| (*ts, *v, *q))
            .collect();
        self.ts = kept.iter().map(|k| k.0).collect();
        self.values = kept.iter().map(|k| k.1).collect();
        self.quality = kept.iter().map(|k| k.2).collect();
        (before - self.ts.len()) as u64
    }
}

/// Splits `rows` into fragments, keeping the first of each (sensor, instant);
/// returns them (ordered by sensor and block) and how many rows were duplicates.
pub fn fragments(rows: &[StoredSample]) -> (Vec<Fragment>, u64) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // Stable: among equal (sensor, instant) the earliest row comes first.
    order.sort_by_key(|&i| (rows[i].sensor, rows[i].ts_ms));
    let mut out: Vec<Fragment> = Vec::new();
    let mut duplicates = 0;
    let mut last: Option<(i64, i64)> = None;
    for i in order {
        let r = &rows[i];
        if last == Some((r.sensor, r.ts_ms)) {
            duplicates += 1;
            continue;
        }
        last = Some((r.sensor, r.ts_ms));
        let block = bucket_start(r.ts_ms, BLOCK_MS);
        let open = out
            .last()
            .is_some_and(|f| f.sensor == r.sensor && f.block_start == block);
        if !open {
            out.push(Fragment {
                sensor: r.sensor,
                block_start: block,
                ts: Vec::new(),
                values: Vec::new(),
                quality: Vec::new(),
            });
        }
        if let Some(f) = out.last_mut() {
            f.ts.push(r.ts_ms);
            f.values.push(r.value);
            f.quality.push(quality_code(r.quality));
        }
    }
    (out, duplicates)
}

/// Removes from `fragments` every sample whose instant is already stored:
/// `stored` maps (sensor, block start) to the instants stored in that block.
/// Fragments left empty are removed. Returns how many samples were dropped.
pub fn drop_stored(
    fragments: &mut Vec<Fragment>,
    stored: &HashMap<(i64, i64), HashSet<i64>>,
) -> u64 {
    if stored.is_empty() {
        return 0;
    }
    let mut dropped = 0;
    for f in fragments.iter_mut() {
        if let Some(taken) = stored.get(&(f.sensor, f.block_start)) {
            dropped += f.drop_instants(taken);
        }
    }
    fragments.retain(|f| !f.ts.is_empty());
    dropped
}

/// What a write adds to one rollup bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupDelta {
    /// The sensor's database id.
    pub sensor: i64,
    /// Start of the bucket, ms.
    pub bucket: i64,
    /// The values added.
    pub summary: Summary,
}

/// The rollup levels: table name and bucket width, finest first.
pub const ROLLUPS: [(&str, i64); 3] = [
    ("rollup_1m", BLOCK_MS),
    ("rollup_1h", HOUR_MS),
    ("rollup_1d", DAY_MS),
];

/// What `fragments` add to the buckets of `width` ms, ordered by sensor and bucket.
pub fn rollup_deltas(fragments: &[Fragment], width: i64) -> Vec<RollupDelta> {
    let mut buckets: HashMap<(i64, i64), Summary> = HashMap::new();
    for f in fragments {
        if let Some(s) = f.summary() {
            let key = (f.sensor, bucket_start(f.block_start, width));
            buckets
                .entry(key)
                .and_modify(|prev| *prev = prev.merge(s))
                .or_insert(s);
        }
    }
    let mut out: Vec<RollupDelta> = buckets
        .into_iter()
        .map(|((sensor, bucket), summary)| RollupDelta {
            sensor,
            bucket,
            summary,
        })
        .collect();
    out.sort_by_key(|d| (d.sensor, d.bucket));
    out
}

/// Bytes per sample in [`encode_payload`].
const PAYLOAD_SAMPLE: usize = 4 + 8 + 1;
/// Flag in a payload's quality byte: a value follows.
const HAS_VALUE: u8 = 0x80;

/// A fragment's samples as one blob (SQLite): per sample the offset from the
/// block start (i32 ms), the value (f64) and the quality byte, little-endian.
pub fn encode_payload(f: &Fragment) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.ts.len() * PAYLOAD_SAMPLE);
    for ((ts, v), q) in f.ts.iter().zip(&f.values).zip(&f.quality) {
        out.extend_from_slice(&((ts - f.block_start) as i32).to_le_bytes());
        out.extend_from_slice(&v.unwrap_or(0.0).to_le_bytes());
        out.push(*q as u8 | if v.is_some() { HAS_VALUE } else { 0 });
    }
    out
}

/// A blob that is not an encoded fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed block payload: {0}")]
pub struct MalformedPayload(&'static str);

/// The fragment of `sensor` in the block at `block_start` that `payload` encodes.
pub fn decode_payload(
    sensor: i64,
    block_start: i64,
    payload: &[u8],
) -> Result<Fragment, MalformedPayload> {
    if !payload.len().is_multiple_of(PAYLOAD_SAMPLE) {
        return Err(MalformedPayload("length is not a whole number of samples"));
    }
    let n = payload.len() / PAYLOAD_SAMPLE;
    let mut f = Fragment {
        sensor,
        block_start,
        ts: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
        quality: Vec::with_capacity(n),
    };
    for s in payload.chunks_exact(PAYLOAD_SAMPLE) {
        let mut off = [0u8; 4];
        off.copy_from_slice(&s[..4]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&s[4..12]);
        let flags = s[12];
        f.ts.push(block_start + i64::from(i32::from_le_bytes(off)));
        f.values
            .push((flags & HAS_VALUE != 0).then(|| f64::from_le_bytes(v)));
        f.quality.push(i16::from(flags & !HAS_VALUE));
    }
    Ok(f)
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// PostgreSQL type oids of array elements.
const INT4_OID: i32 = 23;
const INT2_OID: i32 = 21;
const FLOAT8_OID: i32 = 701;

/// Columns of `sample_blocks` in the order [`copy_payload`] writes them.
/// `last_ts` is the fragment's last instant, whatever its quality;
/// `vlast_ts` is when `vlast` was taken, which the rollups order by.
macro_rules! copy_columns {
    () => {
        "sensor_id, block_start, first_ts, last_ts, samples, \
         n, vmin, vmax, vsum, vlast, offsets, vals, quality, vlast_ts"
    };
}
pub(crate) use copy_columns;

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_ts(out: &mut Vec<u8>, ms: i64) {
    put_i32(out, 8);
    out.extend_from_slice(&(ms * 1000 - PG_EPOCH_US).to_be_bytes());
}

fn put_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => {
            put_i32(out, 8);
            out.extend_from_slice(&v.to_be_bytes());
        }
        None => put_i32(out, -1),
    }
}

/// A one-dimensional array field: `elements` yields each element's bytes or None.
fn put_array<I: ExactSizeIterator<Item = Option<[u8; N]>>, const N: usize>(
    out: &mut Vec<u8>,
    oid: i32,
    has_null: bool,
    elements: I,
) {
    let len = elements.len();
    let body = 20 + len * (4 + N);
    let at = out.len();
    put_i32(out, body as i32); // patched below when nulls make it shorter
    put_i32(out, 1); // dimensions
    put_i32(out, i32::from(has_null));
    put_i32(out, oid);
    put_i32(out, len as i32);
    put_i32(out, 1); // lower bound
    for e in elements {
        match e {
            Some(bytes) => {
                put_i32(out, N as i32);
                out.extend_from_slice(&bytes);
            }
            None => put_i32(out, -1),
        }
    }
    let actual = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&actual.to_be_bytes());
}

/// `fragments` in PostgreSQL's binary COPY format for [`copy_columns`].
pub fn copy_payload(fragments: &[Fragment]) -> Vec<u8> {
    let samples: usize = fragments.iter().map(|f| f.ts.len()).sum();
    let mut out = Vec::with_capacity(21 + fragments.len() * 160 + samples * 26);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    put_i32(&mut out, 0); // flags
    put_i32(&mut out, 0); // header extension
    for f in fragments {
        let summary = f.summary();
        out.extend_from_slice(&14i16.to_be_bytes());
        put_i32(&mut out, 8);
        out.extend_from_slice(&f.sensor.to_be_bytes());
        put_ts(&mut out, f.block_start);
        put_ts(&mut out, f.first_ts());
        put_ts(&mut out, f.last_ts());
        put_i32(&mut out, 4);
        put_i32(&mut out, f.ts.len() as i32);
        put_i32(&mut out, 4);
        put_i32(&mut out, summary.map_or(0, |s| s.count as i32));
        put_f64(&mut out, summary.map(|s| s.min));
        put_f64(&mut out, summary.map(|s| s.max));
        put_f64(&mut out, summary.map(|s| s.sum));
        put_f64(&mut out, summary.map(|s| s.last));
        let offsets =
            f.ts.iter()
                .map(|t| Some(((t - f.block_start) as i32).to_be_bytes()));
        put_array(&mut out, INT4_OID, false, offsets);
        let has_gap = f.values.iter().any(Option::is_none);
        let values = f.values.iter().map(|v| v.map(f64::to_be_bytes));
        put_array(&mut out, FLOAT8_OID, has_gap, values);
        if f.all_good() {
            put_i32(&mut out, -1);
        } else {
            let quality = f.quality.iter().map(|q| Some(q.to_be_bytes()));
            put_array(&mut out, INT2_OID, false, quality);
        }
        match summary {
            Some(s) => put_ts(&mut out, s.last_ts),
            None => put_i32(&mut out, -1),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sensor: i64, ts_ms: i64, value: Option<f64>, quality: Quality) -> StoredSample {
        StoredSample {
            sensor,
            ts_ms,
            value,
            quality,
        }
    }

    #[test]
    fn rows_become_sorted_fragments_per_sensor_and_minute_first_value_wins() {
        let rows = [
            s(2, 61_000, Some(5.0), Quality::Good),
            s(1, 59_999, Some(1.0), Quality::Good),
            s(1, 1_000, Some(2.0), Quality::Good),
            s(1, 59_999, Some(9.0), Quality::Good),
            s(1, 60_000, Some(3.0), Quality::Good),
        ];
        let (f, dups) = fragments(&rows);
        assert_eq!(dups, 1);
        let keys: Vec<(i64, i64, Vec<i64>)> = f
            .iter()
            .map(|f| (f.sensor, f.block_start, f.ts.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (1, 0, vec![1_000, 59_999]),
                (1, 60_000, vec![60_000]),
                (2, 60_000, vec![61_000]),
            ]
        );
        assert_eq!(f[0].values, vec![Some(2.0), Some(1.0)]);
    }

    #[test]
    fn negative_instants_fall_in_the_right_block() {
        assert_eq!(bucket_start(-1, BLOCK_MS), -60_000);
        assert_eq!(bucket_start(0, BLOCK_MS), 0);
    }

    #[test]
    fn summaries_skip_gaps_and_bad_values() {
        let rows = [
            s(1, 0, Some(4.0), Quality::Good),
            s(1, 1, None, Quality::Bad),
            s(1, 2, Some(1000.0), Quality::Bad),
            s(1, 3, Some(2.0), Quality::Uncertain),
        ];
        let (f, _) = fragments(&rows);
        let sum = f[0].summary().unwrap();
        assert_eq!((sum.count, sum.min, sum.max, sum.sum), (2, 2.0, 4.0, 6.0));
        assert_eq!((sum.last, sum.last_ts), (2.0, 3));
    }

    #[test]
    fn stored_instants_are_dropped_and_empty_fragments_removed() {
        let rows = [
            s(1, 0, Some(1.0), Quality::Good),
            s(1, 1, Some(2.0), Quality::Good),
            s(2, 0, Some(3.0), Quality::Good),
        ];
        let (mut f, _) = fragments(&rows);
        let stored = HashMap::from([((1, 0), HashSet::from([0])), ((2, 0), HashSet::from([0]))]);
        assert_eq!(drop_stored(&mut f, &stored), 2);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].ts.clone(), f[0].values.clone()),
            (vec![1], vec![Some(2.0)])
        );
    }

    #[test]
    fn rollups_merge_fragments_of_a_bucket() {
        let rows = [
            s(1, 0, Some(1.0), Quality::Good),
            s(1, 60_000, Some(5.0), Quality::Good),
            s(1, HOUR_MS, Some(7.0), Quality::Good),
        ];
        let (f, _) = fragments(&rows);
        let hourly = rollup_deltas(&f, HOUR_MS);
        assert_eq!(hourly.len(), 2);
        assert_eq!(hourly[0].summary.count, 2);
        assert_eq!(hourly[0].summary.max, 5.0);
        assert_eq!(hourly[0].summary.last, 5.0);
        assert_eq!(rollup_deltas(&f, DAY_MS)[0].summary.sum, 13.0);
    }

    #[test]
    fn payloads_round_trip_and_malformed_ones_are_refused() {
        let rows = [
            s(1, 120_000, Some(1.5), Quality::Good),
            s(1, 120_007, None, Quality::Bad),
            s(1, 179_999, Some(-0.25), Quality::Uncertain),
        ];
        let (f, _) = fragments(&rows);
        let blob = encode_payload(&f[0]);
        assert_eq!(decode_payload(1, 120_000, &blob).unwrap(), f[0]);
        assert!(decode_payload(1, 0, &blob[1..]).is_err());
    }

    #[test]
    fn copy_payload_frames_every_field() {
        let rows = [
            s(3, 946_684_800_000, Some(1.5), Quality::Good),
            s(3, 946_684_800_001, None, Quality::Good),
        ];
        let (f, _) = fragments(&rows);
        let p = copy_payload(&f);
        // Header 19; a row: field count 2, sensor 12, three instants 36, two
        // int4 16, four float8 48, offsets 4+20+2×8, values 4+20+8+12+4,
        // no quality 4, the last value's instant 12; trailer 2.
        let row = 2 + 12 + 36 + 16 + 48 + (4 + 20 + 16) + (4 + 20 + 12 + 4) + 4 + 12;
        assert_eq!(p.len(), 19 + row + 2);
        // The block starts at the PostgreSQL epoch: zero microseconds.
        assert_eq!(&p[19 + 2 + 12 + 4..19 + 2 + 12 + 12], &0i64.to_be_bytes());
        // The last value counted is the first sample's (the second is a gap).
        let vlast_ts = &p[19 + row - 8..19 + row];
        assert_eq!(vlast_ts, &0i64.to_be_bytes());
        assert_eq!(&p[p.len() - 2..], &(-1i16).to_be_bytes());
    }
}
