//! Keeping the verdicts that found an anomaly in the database, off the
//! equipment actors' path. Loading the models is `hydrowatch-ml`'s
//! ([`hydrowatch_ml::artifacts`], re-exported here).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use hydrowatch_actors::plant::VerdictSink;
use hydrowatch_models::{ConditionView, EquipmentId};

pub use hydrowatch_ml::artifacts::*;

use crate::store::anomalies::{rows_of, AnomalyRow};
use crate::store::Store;

/// Rows waiting for the database at most; beyond, new anomalies are dropped
/// (counted and logged) rather than growing without bound.
const MAX_PENDING: usize = 10_000;

/// Keeps anomalous verdicts in the `anomalies` table. The equipment actors
/// hand rows over without waiting; a task writes them, retrying with backoff
/// while the database is away.
pub struct AnomalyRecorder {
    tx: mpsc::Sender<Vec<AnomalyRow>>,
}

impl AnomalyRecorder {
    /// Starts the writing task; it ends when every recorder is dropped.
    pub fn start(store: Store) -> Arc<AnomalyRecorder> {
        let (tx, mut rx) = mpsc::channel::<Vec<AnomalyRow>>(MAX_PENDING);
        tokio::spawn(async move {
            let written = metrics::counter!("hydrowatch_anomalies_recorded_total");
            while let Some(rows) = rx.recv().await {
                let mut delay = Duration::from_millis(250);
                loop {
                    match store.record_anomalies(&rows).await {
                        Ok(()) => {
                            written.increment(rows.len() as u64);
                            break;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "anomalies not stored yet");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });
        Arc::new(AnomalyRecorder { tx })
    }
}

impl VerdictSink for AnomalyRecorder {
    fn record(&self, equipment: &EquipmentId, condition: &ConditionView) {
        let rows = rows_of(
            equipment,
            condition.cycle_start_ms,
            condition.cycle_end_ms,
            &condition.verdict,
        );
        if rows.is_empty() {
            return;
        }
        if self.tx.try_send(rows).is_err() {
            metrics::counter!("hydrowatch_anomalies_dropped_total").increment(1);
            tracing::error!(%equipment, "anomaly not recorded: the database has been away too long");
        }
    }
}
