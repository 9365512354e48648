//! What a session still has to send to its client, coalesced.
//!
//! Producers (equipment actors) write straight into the outbox; the client's
//! writer drains it whenever the socket can take more. Per equipment only the
//! newest state is kept, so a slow client receives the latest picture rather than
//! an ever-growing queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Notify;

use hydrowatch_models::{EquipmentDelta, EquipmentId, EquipmentSnapshot};

/// Control frames kept at most; older ones are dropped first.
const MAX_CONTROL_FRAMES: usize = 256;

/// A frame for the client, before serialisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of a session.
    Hello {
        session: String,
        /// Protocol version.
        protocol: u32,
    },
    /// The subscription set after a subscribe or unsubscribe.
    Subscribed {
        /// Every equipment subscribed to now.
        equipment: Vec<EquipmentId>,
    },
    /// The full picture of an equipment unit.
    Snapshot {
        equipment: EquipmentId,
        snapshot: EquipmentSnapshot,
    },
    /// Changes since the previous frame for that equipment.
    Delta {
        equipment: EquipmentId,
        #[serde(flatten)]
        delta: EquipmentDelta,
    },
    /// An alert of a subscribed equipment unit changed.
    Alert {
        /// The alert now.
        alert: crate::alerting::AlertFrame,
    },
    /// Answer to a client ping.
    Pong,
    /// Something the client sent was refused.
    Error {
        /// The error body, as everywhere in the API.
        error: ErrorBody,
    },
}

/// The error shape shared by every API: a stable code, a message, details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code.
    pub code: String,
    /// For humans.
    pub message: String,
    /// Extra facts (field names, limits…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

enum Pending {
    Snapshot(EquipmentSnapshot),
    Delta(EquipmentDelta),
}

#[derive(Default)]
struct State {
    control: VecDeque<ServerFrame>,
    pending: BTreeMap<EquipmentId, Pending>,
    /// Equipment whose snapshot has been queued or sent; deltas before it are moot.
    synced: std::collections::HashSet<EquipmentId>,
    closed: Option<String>,
    coalesced: u64,
}

/// The outbox of one session.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Queues a control frame (hello, acks, errors).
    pub fn push_control(&self, frame: ServerFrame) {
        self.with(|s| {
            if s.control.len() >= MAX_CONTROL_FRAMES {
                s.control.pop_front();
            }
            s.control.push_back(frame);
        });
        self.notify.notify_one();
    }

    /// Queues the full picture of an equipment unit, replacing anything pending
    /// for it.
    pub fn push_snapshot(&self, snapshot: EquipmentSnapshot) {
        self.with(|s| {
            s.synced.insert(snapshot.id.clone());
            s.pending
                .insert(snapshot.id.clone(), Pending::Snapshot(snapshot));
        });
        self.notify.notify_one();
    }

    /// Queues changes to an equipment unit, folded into whatever is pending.
    pub fn push_delta(&self, equipment: &EquipmentId, delta: EquipmentDelta) {
        let queued = self.with(|s| {
            if !s.synced.contains(equipment) {
                // The snapshot that is on its way already includes this change.
                return false;
            }
            match s.pending.get_mut(equipment) {
                Some(Pending::Snapshot(snapshot)) => {
                    snapshot.apply(delta);
                    s.coalesced += 1;
                }
                Some(Pending::Delta(pending)) => {
                    pending.merge(delta);
                    s.coalesced += 1;
                }
                None => {
                    s.pending.insert(equipment.clone(), Pending::Delta(delta));
                }
            }
            true
        });
        if queued {
            self.notify.notify_one();
        }
    }

    /// Forgets an equipment unit (after unsubscribe).
    pub fn forget(&self, equipment: &EquipmentId) {
        self.with(|s| {
            s.synced.remove(equipment);
            s.pending.remove(equipment);
        });
    }

    /// Closes the outbox; the writer sends a close frame with `reason`.
    pub fn close(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.with(|s| {
            s.closed.get_or_insert(reason);
        });
        self.notify.notify_one();
    }

    /// Why the outbox was closed, if it was.
    pub fn closed(&self) -> Option<String> {
        self.with(|s| s.closed.clone())
    }

    /// Takes every frame ready to send, control frames first.
    pub fn drain(&self) -> Vec<ServerFrame> {
        self.with(|s| {
            let mut frames: Vec<ServerFrame> = s.control.drain(..).collect();
            for (equipment, pending) in std::mem::take(&mut s.pending) {
                frames.push(match pending {
                    Pending::Snapshot(snapshot) => ServerFrame::Snapshot {
                        equipment,
                        snapshot,
                    },
                    Pending::Delta(delta) => ServerFrame::Delta { equipment, delta },
                });
            }
            frames
        })
    }

    /// Updates merged into pending frames instead of queued (a measure of how
    /// far behind the client is).
    pub fn coalesced(&self) -> u64 {
        self.with(|s| s.coalesced)
    }

    /// Waits until there is something to drain or the outbox is closed.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrowatch_models::{Health, HealthStatus, Quality, SensorId, SensorState, SensorStatus};

    fn eq() -> EquipmentId {
        EquipmentId::parse("rig-1").unwrap()
    }

    fn delta(v: f64) -> EquipmentDelta {
        let mut d = EquipmentDelta::default();
        d.sensors.insert(
            SensorId::parse("PS1").unwrap(),
            SensorState {
                value: Some(v),
                quality: Quality::Good,
                ts_ms: v as i64,
                status: SensorStatus::Ok,
                reason: None,
            },
        );
        d
    }

    fn snapshot() -> EquipmentSnapshot {
        EquipmentSnapshot {
            id: eq(),
            name: "Rig".into(),
            site: "Site".into(),
            health: Health {
                status: HealthStatus::Unknown,
                reason: None,
            },
            sensors: vec![],
            condition: None,
        }
    }

    #[test]
    fn deltas_before_the_snapshot_are_dropped() {
        let out = Outbox::new();
        out.push_delta(&eq(), delta(1.0));
        assert!(out.drain().is_empty());
    }

    #[test]
    fn a_slow_client_gets_one_merged_delta() {
        let out = Outbox::new();
        out.push_snapshot(snapshot());
        assert_eq!(out.drain().len(), 1);
        for v in 0..1000 {
            out.push_delta(&eq(), delta(v as f64));
        }
        let frames = out.drain();
        assert_eq!(frames.len(), 1);
        match &frames[0] {
            ServerFrame::Delta { delta, .. } => {
                let state = delta.sensors.values().next().unwrap();
                assert_eq!(state.value, Some(999.0));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(out.coalesced(), 999);
    }

    #[test]
    fn control_frames_are_bounded() {
        let out = Outbox::new();
        for _ in 0..(MAX_CONTROL_FRAMES + 10) {
            out.push_control(ServerFrame::Pong);
        }
        assert_eq!(out.drain().len(), MAX_CONTROL_FRAMES);
    }
}
