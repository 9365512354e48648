//! The storage writer: one actor between every source of samples and the
//! database.
//!
//! - **Batching.** Samples collect in a buffer written when it reaches
//!   `batch_rows` or every `flush_interval`, whichever comes first. One write is
//!   in flight at a time; while it runs the next batch collects.
//! - **Outages.** A write that fails as [`StoreFailure::Unavailable`] (or takes
//!   longer than `write_timeout`) goes to the spool, a checksummed, fsync'd file.
//!   From then on every batch goes behind it, so the database sees samples in
//!   arrival order; the writer retries with exponential backoff and replays the
//!   spool oldest first until it is empty, then writes directly again.
//! - **Bounded memory.** A buffer that outgrows `max_buffered_rows` while a
//!   write is stuck goes to the spool. Past `spool_pushback_bytes` of spool the
//!   writer raises back-pressure ([`StorageStatus::backpressure`]); connection
//!   actors then poll slower and the ingest API answers 503, so the spool grows
//!   slowly and memory not at all.
//! - **Exactly once.** [`SampleStore::write`] is atomic and idempotent by
//!   (sensor, instant), so a batch replayed after a crash or a write whose
//!   commit was lost in the outage is stored once. The first value stored wins.
//! - **Acknowledgement.** A sender may ask to be told when its rows are durable
//!   ([`Durability`]): committed, or spooled on disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{decode_into, encode, SampleStore, StoreFailure, StoredSample, Written};
use crate::storage::spool::Spool;
use crate::Address;

/// How the writer batches, spools and retries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Rows per write.
    pub batch_rows: usize,
    /// Longest a sample waits in the buffer.
    pub flush_interval: Duration,
    /// Rows held in memory while a write is in flight; beyond that, spooled.
    pub max_buffered_rows: usize,
    /// The spool file.
    pub spool_path: PathBuf,
    /// Spool size past which back-pressure is raised.
    pub spool_pushback_bytes: u64,
    /// First retry delay after the database failed.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// A write taking longer counts as failed (its rows are spooled).
    pub write_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_rows: 20_000,
            flush_interval: Duration::from_millis(500),
            max_buffered_rows: 200_000,
            spool_path: PathBuf::from("data/spool/samples.spool"),
            spool_pushback_bytes: 256 * 1024 * 1024,
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(10),
            write_timeout: Duration::from_secs(15),
        }
    }
}

/// What became of rows handed to the writer with an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Committed to the database.
    Committed(Written),
    /// On disk in the spool; the database gets them when it is back.
    Spooled,
    /// The database refused them for good; they were set aside in the
    /// rejected file, with the reason.
    Rejected(String),
    /// Neither the database nor the spool could take them (disk full or
    /// unwritable); the reason says why.
    Lost(String),
}

/// Where the writer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    /// Writing directly; the spool is empty.
    Ok,
    /// The database is back and the spool is being replayed.
    Replaying,
    /// The database is unreachable; samples go to the spool.
    Spooling,
}

/// The writer's state, shared with connections (back-pressure) and the façade
/// (health, metrics). Survives restarts of the writer.
#[derive(Debug, Default)]
pub struct StorageStatus {
    state: AtomicU8,
    backpressure: AtomicBool,
    spool_bytes: AtomicU64,
    spool_records: AtomicU64,
    rows_written: AtomicU64,
    duplicates: AtomicU64,
    replayed_rows: AtomicU64,
    spooled_rows: AtomicU64,
    rejected_rows: AtomicU64,
    dropped_rows: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`StorageStatus`], as the admin API and health show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageReport {
    /// Where the writer stands.
    pub state: StorageState,
    /// Whether back-pressure is raised (spool past its limit).
    pub backpressure: bool,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
    /// Batches waiting in the spool.
    pub spool_records: u64,
    /// Rows stored since start.
    pub rows_written: u64,
    /// Rows found already stored since start.
    pub duplicates: u64,
    /// Rows replayed from the spool since start.
    pub replayed_rows: u64,
    /// Rows written to the spool since start.
    pub spooled_rows: u64,
    /// Rows the database refused for good (set aside in the rejected file).
    pub rejected_rows: u64,
    /// Rows lost because neither database nor spool could take them.
    pub dropped_rows: u64,
    /// The last database error.
    pub last_error: Option<String>,
}

impl StorageStatus {
    /// Where the writer stands.
    pub fn state(&self) -> StorageState {
        match self.state.load(Ordering::Relaxed) {
            1 => StorageState::Replaying,
            2 => StorageState::Spooling,
            _ => StorageState::Ok,
        }
    }

    /// Whether sources should slow down: the spool is past its limit.
    pub fn backpressure(&self) -> bool {
        self.backpressure.load(Ordering::Relaxed)
    }

    /// A consistent-enough snapshot for reports.
    pub fn report(&self) -> StorageReport {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StorageReport {
            state: self.state(),
            backpressure: self.backpressure(),
            spool_bytes: n(&self.spool_bytes),
            spool_records: n(&self.spool_records),
            rows_written: n(&self.rows_written),
            duplicates: n(&self.duplicates),
            replayed_rows: n(&self.replayed_rows),
            spooled_rows: n(&self.spooled_rows),
            rejected_rows: n(&self.rejected_rows),
            dropped_rows: n(&self.dropped_rows),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Adds `n` to one of the counters and to its metric.
    fn count(&self, counter: fn(&StorageStatus) -> &AtomicU64, metric: &'static str, n: u64) {
        counter(self).fetch_add(n, Ordering::Relaxed);
        metrics::counter!(metric).increment(n);
    }

    fn set_state(&self, state: StorageState) {
        let v = match state {
            StorageState::Ok => 0,
            StorageState::Replaying => 1,
            StorageState::Spooling => 2,
        };
        self.state.store(v, Ordering::Relaxed);
        metrics::gauge!("hydrowatch_storage_state").set(v as f64);
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }
}

/// What the writer starts with.
#[derive(Clone)]
pub struct WriterArgs {
    /// Batching, spooling and retries.
    pub config: Arc<WriterConfig>,
    /// The database.
    pub store: Arc<dyn SampleStore>,
    /// Outlives the actor across restarts; connections read it for
    /// back-pressure.
    pub status: Arc<StorageStatus>,
    /// The writer's stable address, filled in at start.
    pub address: Address<WriterMsg>,
}

/// Messages of the writer.
pub enum WriterMsg {
    /// Rows resolved to sensor ids (one poll of a connection, or an ingest
    /// request); `ack`, if any, is told when they are durable.
    Rows {
        rows: Vec<StoredSample>,
        /// Told when the rows are committed or spooled.
        ack: Option<oneshot::Sender<Durability>>,
    },
    /// Write whatever is buffered; the reply comes when it is durable.
    Flush(RpcReplyPort<()>),
    /// The flush timer.
    Tick,
    /// The retry timer.
    Retry,
    /// A write finished.
    Done(Result<Written, StoreFailure>),
}

/// The writer actor.
pub struct StorageWriter;

enum InFlight {
    /// A batch straight from the buffer; kept so that it can be spooled if the
    /// write fails or the writer stops before it is known to have committed.
    Direct {
        rows: Arc<Vec<StoredSample>>,
        acks: Vec<oneshot::Sender<Durability>>,
        started: Instant,
    },
    /// The oldest spool records, being replayed.
    Replay {
        records: usize,
        rows: usize,
        started: Instant,
    },
}

pub struct WriterState {
    args: WriterArgs,
    spool: Spool,
    rejected: Option<Spool>,
    buffer: Vec<StoredSample>,
    acks: Vec<oneshot::Sender<Durability>>,
    in_flight: Option<InFlight>,
    /// The database failed; waiting for the retry timer.
    retry_pending: bool,
    retry_delay: Duration,
    waiters: Vec<RpcReplyPort<()>>,
}

impl Actor for StorageWriter {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WriterMsg>,
        args: WriterArgs,
    ) -> Result<WriterState, ActorProcessingErr> {
        let (spool, recovery) = Spool::open(&args.config.spool_path).map_err(|e| {
            format!(
                "cannot open the spool {}: {e}",
                args.config.spool_path.display()
            )
        })?;
        if recovery.records > 0 || recovery.truncated_bytes > 0 {
            tracing::warn!(
                records = recovery.records,
                truncated_bytes = recovery.truncated_bytes,
                spool = %args.config.spool_path.display(),
                "spooled samples found at start; replaying them"
            );
        }
        args.address.set(myself.clone());
        myself.send_after(args.config.flush_interval, || WriterMsg::Tick);
        let mut st = WriterState {
            retry_delay: args.config.retry_initial,
            args,
            spool,
            rejected: None,
            buffer: Vec::new(),
            acks: Vec::new(),
            in_flight: None,
            retry_pending: false,
            waiters: Vec::new(),
        };
        st.publish_spool();
        st.pump(&myself, true);
        Ok(st)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WriterMsg>,
        st: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        // Nothing buffered or in doubt is left in memory: it goes to the spool,
        // and the next start replays it (deduplicated if it did commit).
        if let Some(InFlight::Direct { rows, acks, .. }) = st.in_flight.take() {
            st.spool_rows(&rows, acks);
        }
        let rows = std::mem::take(&mut st.buffer);
        let acks = std::mem::take(&mut st.acks);
        if !rows.is_empty() {
            st.spool_rows(&rows, acks);
        }
        st.publish_spool();
        for w in st.waiters.drain(..) {
            let _ = w.send(());
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WriterMsg>,
        msg: WriterMsg,
        st: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WriterMsg::Rows { rows, ack } => {
                st.args.address.handled();
                st.buffer.extend_from_slice(&rows);
                st.acks.extend(ack);
                st.pump(&myself, false);
            }
            WriterMsg::Flush(reply) => {
                st.waiters.push(reply);
                st.pump(&myself, true);
            }
            WriterMsg::Tick => {
                st.pump(&myself, true);
                myself.send_after(st.args.config.flush_interval, || WriterMsg::Tick);
            }
            WriterMsg::Retry => {
                st.retry_pending = false;
                st.pump(&myself, true);
            }
            WriterMsg::Done(outcome) => {
                st.finish(&myself, outcome);
                st.pump(&myself, false);
            }
        }
        st.answer_waiters();
        Ok(())
    }
}

impl WriterState {
    /// Starts the next write if one is due and none is in flight.
    fn pump(&mut self, myself: &ActorRef<WriterMsg>, force: bool) {
        let cfg = self.args.config.clone();
        if self.in_flight.is_some() {
            if self.buffer.len() >= cfg.max_buffered_rows {
                self.spool_buffer();
            }
            return;
        }
        let due = !self.buffer.is_empty() && (force || self.buffer.len() >= cfg.batch_rows);
        if !self.spool.is_empty() {
            // Behind the spool, in arrival order.
            if due {
                self.spool_buffer();
            }
            if !self.retry_pending {
                self.start_replay(myself);
            }
            return;
        }
        if self.retry_pending {
            if due {
                self.spool_buffer();
            }
            return;
        }
        if due {
            let take = self.buffer.len().min(cfg.batch_rows.max(1));
            let rows: Vec<StoredSample> = if take == self.buffer.len() {
                std::mem::take(&mut self.buffer)
            } else {
                self.buffer.drain(..take).collect()
            };
            // Acks belong to whole messages; hand them all to this write only
            // when it takes the whole buffer.
            let acks = if self.buffer.is_empty() {
                std::mem::take(&mut self.acks)
            } else {
                Vec::new()
            };
            let rows = Arc::new(rows);
            self.in_flight = Some(InFlight::Direct {
                rows: rows.clone(),
                acks,
                started: Instant::now(),
            });
            self.spawn_write(myself, rows);
        }
    }

    fn spawn_write(&self, myself: &ActorRef<WriterMsg>, rows: Arc<Vec<StoredSample>>) {
        let store = self.args.store.clone();
        let timeout = self.args.config.write_timeout;
        let myself = myself.clone();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(timeout, store.write(&rows)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StoreFailure::Unavailable(format!(
                    "write of {} rows took longer than {timeout:?}",
                    rows.len()
                ))),
            };
            // The writer may have stopped meanwhile; it spooled these rows then.
            let _ = myself.cast(WriterMsg::Done(outcome));
        });
    }

    fn start_replay(&mut self, myself: &ActorRef<WriterMsg>) {
        let max_bytes = self.args.config.batch_rows.max(1) * 25;
        let records = match self.spool.peek(usize::MAX, max_bytes) {
            Ok(records) => records,
            Err(e) => {
                self.failed(myself, format!("spool unreadable: {e}"));
                return;
            }
        };
        let mut rows = Vec::new();
        for record in &records {
            if let Err(e) = decode_into(record, &mut rows) {
                // CRC-checked, so this is a bug, not disk corruption: keep the
                // record aside rather than block the spool behind it.
                tracing::error!(error = %e, "undecodable spool record set aside");
                self.set_aside(std::slice::from_ref(record), &e.to_string());
            }
        }
        let n = records.len();
        if n == 0 {
            return;
        }
        let count = rows.len();
        self.in_flight = Some(InFlight::Replay {
            records: n,
            rows: count,
            started: Instant::now(),
        });
        self.spawn_write(myself, Arc::new(rows));
    }

    fn finish(&mut self, myself: &ActorRef<WriterMsg>, outcome: Result<Written, StoreFailure>) {
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        let status = self.args.status.clone();
        match (in_flight, outcome) {
            (InFlight::Direct { acks, started, .. }, Ok(written)) => {
                self.written(written, started);
                for ack in acks {
                    let _ = ack.send(Durability::Committed(written));
                }
            }
            (
                InFlight::Replay {
                    records,
                    rows,
                    started,
                },
                Ok(written),
            ) => {
                if let Err(e) = self.spool.consume(records) {
                    // The records stay; replaying them again stores nothing twice.
                    tracing::error!(error = %e, "spool could not be advanced");
                }
                self.publish_spool();
                self.written(written, started);
                status.count(
                    |s| &s.replayed_rows,
                    "hydrowatch_storage_replayed_rows_total",
                    rows as u64,
                );
                if self.spool.is_empty() {
                    tracing::info!("spool replayed; writing directly again");
                }
            }
            (InFlight::Direct { rows, acks, .. }, Err(StoreFailure::Unavailable(why))) => {
                self.spool_rows(&rows, acks);
                self.failed(myself, why);
            }
            (InFlight::Replay { .. }, Err(StoreFailure::Unavailable(why))) => {
                self.failed(myself, why);
            }
            (InFlight::Direct { rows, acks, .. }, Err(StoreFailure::Rejected(why))) => {
                tracing::error!(rows = rows.len(), reason = %why, "database rejected a batch; set aside");
                self.set_aside(&[encode(&rows)], &why);
                status.count(
                    |s| &s.rejected_rows,
                    "hydrowatch_storage_rejected_rows_total",
                    rows.len() as u64,
                );
                for ack in acks {
                    let _ = ack.send(Durability::Rejected(why.clone()));
                }
            }
            (InFlight::Replay { records, rows, .. }, Err(StoreFailure::Rejected(why))) => {
                tracing::error!(rows, reason = %why, "database rejected spooled rows; set aside");
                match self.spool.peek(records, usize::MAX) {
                    Ok(recs) => {
                        self.set_aside(&recs, &why);
                        let _ = self.spool.consume(records);
                    }
                    Err(e) => self.failed(myself, format!("spool unreadable: {e}")),
                }
                status.count(
                    |s| &s.rejected_rows,
                    "hydrowatch_storage_rejected_rows_total",
                    rows as u64,
                );
                self.publish_spool();
            }
        }
    }

    fn written(&mut self, written: Written, started: Instant) {
        let status = &self.args.status;
        status.count(
            |s| &s.rows_written,
            "hydrowatch_storage_rows_written_total",
            written.inserted,
        );
        status.count(
            |s| &s.duplicates,
            "hydrowatch_storage_duplicates_total",
            written.duplicates,
        );
        metrics::histogram!("hydrowatch_storage_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        if self.retry_delay != self.args.config.retry_initial {
            tracing::info!("database reachable again");
        }
        self.retry_delay = self.args.config.retry_initial;
        status.set_error(None);
        status.set_state(if self.spool.is_empty() {
            StorageState::Ok
        } else {
            StorageState::Replaying
        });
    }

    /// The database failed: retry later with exponential backoff and jitter.
    fn failed(&mut self, myself: &ActorRef<WriterMsg>, why: String) {
        let cfg = &self.args.config;
        tracing::warn!(error = %why, retry_in = ?self.retry_delay, spool_bytes = self.spool.bytes(),
            "database write failed; samples go to the spool");
        self.args.status.set_error(Some(why));
        self.args.status.set_state(StorageState::Spooling);
        metrics::counter!("hydrowatch_storage_write_failures_total").increment(1);
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        let delay = self.retry_delay.mul_f64(jitter);
        self.retry_delay = (self.retry_delay * 2).min(cfg.retry_max);
        self.retry_pending = true;
        myself.send_after(delay, || WriterMsg::Retry);
    }

    fn spool_buffer(&mut self) {
        let rows = std::mem::take(&mut self.buffer);
        let acks = std::mem::take(&mut self.acks);
        if !rows.is_empty() {
            self.spool_rows(&rows, acks);
        }
    }

    /// Appends rows to the spool (durable before this returns) and tells their
    /// senders.
    fn spool_rows(&mut self, rows: &[StoredSample], acks: Vec<oneshot::Sender<Durability>>) {
        let status = self.args.status.clone();
        // Records of at most one batch each, so a replay is one write per record.
        let chunk = self.args.config.batch_rows.max(1);
        let mut result = Ok(());
        for part in rows.chunks(chunk) {
            result = self.spool.append(&encode(part));
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => {
                status.count(
                    |s| &s.spooled_rows,
                    "hydrowatch_storage_spooled_rows_total",
                    rows.len() as u64,
                );
                for ack in acks {
                    let _ = ack.send(Durability::Spooled);
                }
            }
            Err(e) => {
                // The one way to lose samples: database and local disk both gone.
                let why = format!("spool append failed: {e}");
                tracing::error!(rows = rows.len(), error = %why, "samples dropped");
                status.count(
                    |s| &s.dropped_rows,
                    "hydrowatch_storage_dropped_rows_total",
                    rows.len() as u64,
                );
                for ack in acks {
                    let _ = ack.send(Durability::Lost(why.clone()));
                }
            }
        }
        self.publish_spool();
    }

    /// Keeps records the database refused in a side file next to the spool.
    fn set_aside(&mut self, records: &[Vec<u8>], why: &str) {
        if self.rejected.is_none() {
            let path = self.args.config.spool_path.with_extension("rejected");
            match Spool::open(&path) {
                Ok((spool, _)) => self.rejected = Some(spool),
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "rejected file unavailable");
                    return;
                }
            }
        }
        if let Some(rejected) = self.rejected.as_mut() {
            for r in records {
                if let Err(e) = rejected.append(r) {
                    tracing::error!(error = %e, reason = why, "rejected rows could not be kept");
                }
            }
        }
    }

    fn publish_spool(&self) {
        let status = &self.args.status;
        let bytes = self.spool.bytes();
        status.spool_bytes.store(bytes, Ordering::Relaxed);
        status
            .spool_records
            .store(self.spool.records(), Ordering::Relaxed);
        let pressure = bytes > self.args.config.spool_pushback_bytes;
        if status.backpressure.swap(pressure, Ordering::Relaxed) != pressure {
            if pressure {
                tracing::warn!(
                    spool_bytes = bytes,
                    "spool past its limit: back-pressure on"
                );
            } else {
                tracing::info!(spool_bytes = bytes, "back-pressure off");
            }
        }
        metrics::gauge!("hydrowatch_storage_spool_bytes").set(bytes as f64);
        metrics::gauge!("hydrowatch_storage_backpressure").set(if pressure { 1.0 } else { 0.0 });
    }

    /// Flush callers are answered once nothing they handed over is only in memory.
    fn answer_waiters(&mut self) {
        if !self.waiters.is_empty() && self.buffer.is_empty() && self.in_flight.is_none() {
            for w in self.waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}
