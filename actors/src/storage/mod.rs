//! Storage as the tree sees it: the port that storage adapters implement
//! ([`SampleStore`]), the writer actor that batches samples into it, and the
//! local spool that bridges database outages.
//!
//! This crate knows no SQL: the application implements [`SampleStore`] for its
//! databases and hands it to the tree.

pub mod spool;
pub mod writer;

use futures::future::BoxFuture;

use hydrowatch_models::Quality;

pub use spool::{Recovery, ReplayError, Spool};
pub use writer::{
    Durability, StorageState, StorageStatus, StorageWriter, WriterArgs, WriterConfig, WriterMsg,
};

/// One sample as stored: a sensor's database id, an instant and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredSample {
    /// The sensor's id in the database.
    pub sensor: i64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The value; `None` records a gap (the device gave nothing usable).
    pub value: Option<f64>,
    /// Quality at the source.
    pub quality: Quality,
}

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// Rows newly stored.
    pub inserted: u64,
    /// Rows whose (sensor, instant) was already stored; the stored value was kept
    /// (the first value to reach the database wins).
    pub duplicates: u64,
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    /// The database cannot be reached or failed transiently; the same rows
    /// will succeed later. The writer spools them and retries.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused these rows and always will (a bug, or a sensor
    /// deleted under us). The writer sets them aside instead of retrying forever.
    #[error("rows rejected: {0}")]
    Rejected(String),
}

/// The port a sample database implements.
///
/// `write` must be atomic (all rows or none) and idempotent: writing rows that
/// are already stored counts them as duplicates and changes nothing, so that a
/// replay after a crash stores every sample exactly once.
pub trait SampleStore: Send + Sync + 'static {
    /// Stores `rows` in one transaction.
    fn write<'a>(
        &'a self,
        rows: &'a [StoredSample],
    ) -> BoxFuture<'a, Result<Written, StoreFailure>>;
}

/// Bytes of one encoded sample in a spool record.
const ENCODED: usize = 8 + 8 + 8 + 1;
/// Flag in the quality byte: a value follows.
const HAS_VALUE: u8 = 0x80;

/// Encodes samples as one spool record (little-endian, fixed width).
pub fn encode(rows: &[StoredSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + rows.len() * ENCODED);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        out.extend_from_slice(&r.sensor.to_le_bytes());
        out.extend_from_slice(&r.ts_ms.to_le_bytes());
        out.extend_from_slice(&r.value.unwrap_or(0.0).to_le_bytes());
        let q = match r.quality {
            Quality::Good => 0u8,
            Quality::Uncertain => 1,
            Quality::Bad => 2,
        };
        out.push(q | if r.value.is_some() { HAS_VALUE } else { 0 });
    }
    out
}

/// A spool record that is not an encoded batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed spool record: {0}")]
pub struct MalformedRecord(&'static str);

/// Decodes a record made by [`encode`], appending its samples to `out`.
pub fn decode_into(record: &[u8], out: &mut Vec<StoredSample>) -> Result<(), MalformedRecord> {
    let (count, body) = record
        .split_first_chunk::<4>()
        .ok_or(MalformedRecord("shorter than its header"))?;
    let count = u32::from_le_bytes(*count) as usize;
    if body.len() != count * ENCODED {
        return Err(MalformedRecord("length does not match its count"));
    }
    out.reserve(count);
    let start = out.len();
    for chunk in body.chunks_exact(ENCODED) {
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&chunk[at..at + 8]);
            b
        };
        let flags = chunk[24];
        let quality = match flags & !HAS_VALUE {
            0 => Quality::Good,
            1 => Quality::Uncertain,
            2 => Quality::Bad,
            _ => {
                out.truncate(start);
                return Err(MalformedRecord("unknown quality"));
            }
        };
        out.push(StoredSample {
            sensor: i64::from_le_bytes(word(0)),
            ts_ms: i64::from_le_bytes(word(8)),
            value: (flags & HAS_VALUE != 0).then(|| f64::from_le_bytes(word(16))),
            quality,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_including_gaps_and_every_quality() {
        let rows = vec![
            StoredSample {
                sensor: 1,
                ts_ms: 1_700_000_000_000,
                value: Some(151.25),
                quality: Quality::Good,
            },
            StoredSample {
                sensor: i64::MAX,
                ts_ms: -5,
                value: None,
                quality: Quality::Bad,
            },
            StoredSample {
                sensor: 7,
                ts_ms: 0,
                value: Some(-0.0),
                quality: Quality::Uncertain,
            },
        ];
        let mut back = Vec::new();
        decode_into(&encode(&rows), &mut back).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn malformed_records_are_refused_not_misread() {
        let mut out = Vec::new();
        assert!(decode_into(&[1, 0], &mut out).is_err());
        let mut rec = encode(&[StoredSample {
            sensor: 1,
            ts_ms: 2,
            value: None,
            quality: Quality::Good,
        }]);
        rec.pop();
        assert!(decode_into(&rec, &mut out).is_err());
        let mut rec = encode(&[StoredSample {
            sensor: 1,
            ts_ms: 2,
            value: None,
            quality: Quality::Good,
        }]);
        *rec.last_mut().unwrap() = 0x05;
        assert!(decode_into(&rec, &mut out).is_err());
        assert!(out.is_empty());
    }
}
