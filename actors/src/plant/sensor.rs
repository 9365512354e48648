//! The sensor actor: latest value and the checks on it.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use hydrowatch_models::{Reading, SensorSpec, SensorState};

use crate::address::Address;

/// Messages of a sensor actor.
pub enum SensorMsg {
    /// A fresh reading from the device.
    Reading {
        /// The reading.
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
