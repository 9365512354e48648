//! Inline cycle scoring: what an equipment actor needs to judge each cycle
//! as it completes, and the port its verdicts leave through.

use std::sync::Arc;

use hydrowatch_models::scoring::Scorer;
use hydrowatch_models::{ConditionView, EquipmentId};

/// Where verdicts go to be kept (the anomalies table). Implemented by the
/// application; must not block: the equipment actor calls it inline.
pub trait VerdictSink: Send + Sync {
    /// Records the verdict on one cycle of `equipment`.
    fn record(&self, equipment: &EquipmentId, condition: &ConditionView);
}

/// The models an equipment actor scores its cycles with.
#[derive(Clone)]
pub struct CycleScoring {
    /// The ensemble.
    pub scorer: Arc<Scorer>,
    /// Where verdicts are persisted; `None`: live only.
    pub sink: Option<Arc<dyn VerdictSink>>,
}
