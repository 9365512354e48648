//! The sensor actor: latest value and the checks on it.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use hydrowatch_models::{Reading, SensorSpec, SensorState};

use super::equipment::EquipmentMsg;
use crate::address::Address;

/// Messages of a sensor actor.
pub enum SensorMsg {
    /// A fresh reading from the device, part of equipment round `round`.
    Reading {
        /// The reading.
        reading: Reading,
        /// When it was taken (ms since the Unix epoch).
        ts_ms: i64,
        /// The equipment's round this belongs to.
        round: u64,
    },
    /// Periodic check for staleness at `now_ms`.
    Tick {
        /// Wall-clock time of the check.
        now_ms: i64,
        /// The equipment's round this belongs to.
        round: u64,
    },
    /// The current state.
    Get(RpcReplyPort<SensorState>),
    /// Makes the actor panic, to exercise supervision in tests.
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// What a sensor actor starts with.
pub struct SensorArgs {
    /// Position among its equipment's sensors.
    pub index: usize,
    /// Its description.
    pub spec: Arc<SensorSpec>,
    /// Its own address, filled in on start.
    pub address: Address<SensorMsg>,
    /// The equipment to report to.
    pub equipment: ActorRef<EquipmentMsg>,
}

/// The sensor actor.
pub struct Sensor;

/// State of a sensor actor.
pub struct SensorActorState {
    args: SensorArgs,
    state: SensorState,
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
        args.address.set(myself);
        Ok(SensorActorState {
            args,
            state: SensorState::no_data(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SensorMsg>,
        msg: SensorMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        st.args.address.handled();
        match msg {
            SensorMsg::Reading {
                reading,
                ts_ms,
                round,
            } => {
                st.state = st.args.spec.assess(&reading, ts_ms);
                report(st, Some(st.state.clone()), round);
            }
            SensorMsg::Tick { now_ms, round } => {
                let stale = st.args.spec.check_stale(&st.state, now_ms);
                if let Some(stale) = &stale {
                    st.state = stale.clone();
                }
                report(st, stale, round);
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

fn report(st: &SensorActorState, state: Option<SensorState>, round: u64) {
    // The equipment is our supervisor: if it is gone, so are we shortly.
    let _ = st.args.equipment.cast(EquipmentMsg::SensorReport {
        index: st.args.index,
        state,
        round,
    });
}
