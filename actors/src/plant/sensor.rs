//! The sensor actor: latest value and the checks on it, and the per-sample
//! detectors (quality, adaptive baseline, limits with hysteresis) whose
//! findings it reports to its equipment when they change.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use hydrowatch_models::detect::{Findings, SensorDetectors};
use hydrowatch_models::{Quality, Reading, SensorSpec, SensorState};

use super::equipment::EquipmentMsg;
use crate::address::Address;

/// Messages of a sensor actor.
pub enum SensorMsg {
    /// A fresh reading from the device.
    Reading {
        reading: Reading,
        /// When it was taken (ms since the Unix epoch).
        ts_ms: i64,
    },
    /// Check for staleness at `now_ms`.
    CheckStale {
        /// Wall-clock time of the check.
        now_ms: i64,
    },
    /// The current state.
    Get(RpcReplyPort<SensorState>),
    /// Makes the actor panic, to exercise supervision in tests.
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// What a sensor actor starts with.
pub struct SensorArgs {
    /// Its description.
    pub spec: Arc<SensorSpec>,
    /// Its own address, filled in on start.
    pub address: Address<SensorMsg>,
    /// Its equipment, told when the findings change.
    pub parent: Address<EquipmentMsg>,
    /// Its position among the equipment's sensors.
    pub index: usize,
}

/// The sensor actor.
pub struct Sensor;

pub struct SensorActorState {
    args: SensorArgs,
    state: SensorState,
    detectors: SensorDetectors,
    /// Whether the equipment has been told the findings at least once.
    reported: bool,
}

impl Actor for Sensor {
    type Msg = SensorMsg;
    type State = SensorActorState;
    type Arguments = SensorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SensorMsg>,
        args: SensorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The config was validated at start-up; failing here is a defect
        // and the supervisor sees it.
        let detectors = SensorDetectors::new(args.spec.range, &args.spec.detectors)
            .map_err(|e| format!("sensor {}: detectors: {e}", args.spec.id))?;
        args.address.set(myself);
        Ok(SensorActorState {
            args,
            state: SensorState::no_data(),
            detectors,
            reported: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SensorMsg>,
        msg: SensorMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Readings and staleness checks come through the address and are counted.
        if matches!(
            msg,
            SensorMsg::Reading { .. } | SensorMsg::CheckStale { .. }
        ) {
            st.args.address.handled();
        }
        match msg {
            SensorMsg::Reading { reading, ts_ms } => {
                st.state = st.args.spec.assess(&reading, ts_ms);
                let value = reading.value.filter(|_| reading.quality != Quality::Bad);
                if st.detectors.observe(ts_ms, value) || !st.reported {
                    st.reported = true;
                    report(st, st.detectors.findings().clone());
                }
            }
            SensorMsg::CheckStale { now_ms } => {
                if let Some(stale) = st.args.spec.check_stale(&st.state, now_ms) {
                    st.state = stale;
                }
            }
            SensorMsg::Get(reply) => {
                let _ = reply.send(st.state.clone());
            }
            #[cfg(feature = "fault-injection")]
            SensorMsg::Panic => panic!("sensor {} told to panic", st.args.spec.id),
        }
        Ok(())
    }
}

/// Tells the equipment what the detectors say now.
fn report(st: &SensorActorState, findings: Findings) {
    let _ = st.args.parent.cast(EquipmentMsg::Findings {
        index: st.args.index,
        findings,
    });
}
