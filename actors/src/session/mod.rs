//! The session actor: one client's subscriptions and outbox.

mod outbox;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use hydrowatch_models::EquipmentId;

pub use outbox::{ErrorBody, Outbox, ServerFrame};

use crate::hub::{Hub, Subscriber};
use crate::plant::EquipmentMsg;
use crate::Address;

/// Messages of a session actor.
pub enum SessionMsg {
    /// Start receiving these equipment units.
    Subscribe(Vec<String>),
    /// Stop receiving these equipment units.
    Unsubscribe(Vec<String>),
}

/// What a session actor starts with.
pub struct SessionArgs {
    pub id: Arc<str>,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// Subscriptions.
    pub hub: Hub,
    /// The equipment a client may subscribe to.
    pub equipment: Arc<HashMap<EquipmentId, Address<EquipmentMsg>>>,
}

/// The session actor.
pub struct Session;

pub struct SessionState {
    args: SessionArgs,
    subscriptions: BTreeSet<EquipmentId>,
}

impl Actor for Session {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.outbox.push_control(ServerFrame::Hello {
            session: args.id.to_string(),
            protocol: 1,
        });
        Ok(SessionState {
            args,
            subscriptions: BTreeSet::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for equipment in &st.subscriptions {
            st.args.hub.unsubscribe(equipment, &st.args.id);
        }
        st.args.outbox.close("session ended");
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Subscribe(ids) => {
                let mut unknown = Vec::new();
                for raw in ids {
                    let found = EquipmentId::parse(&raw)
                        .ok()
                        .and_then(|id| st.args.equipment.get(&id).map(|a| (id, a.clone())));
                    let Some((id, address)) = found else {
                        unknown.push(raw);
                        continue;
                    };
                    if !st.subscriptions.insert(id.clone()) {
                        continue;
                    }
                    let subscriber = Subscriber {
                        session: st.args.id.clone(),
                        outbox: st.args.outbox.clone(),
                    };
                    st.args.hub.subscribe(&id, subscriber.clone());
                    // If the equipment is restarting, its new instance sends the
                    // snapshot to every subscriber when it starts.
                    let _ = address.cast(EquipmentMsg::Subscribe(subscriber));
                }
                if !unknown.is_empty() {
                    st.args.outbox.push_control(ServerFrame::Error {
                        error: ErrorBody {
                            code: "unknown_equipment".into(),
                            message: format!("no equipment with id {}", unknown.join(", ")),
                            details: Some(serde_json::json!({ "equipment": unknown })),
                        },
                    });
                }
                push_subscribed(st);
            }
            SessionMsg::Unsubscribe(ids) => {
                for raw in ids {
                    if let Ok(id) = EquipmentId::parse(&raw) {
                        if st.subscriptions.remove(&id) {
                            st.args.hub.unsubscribe(&id, &st.args.id);
                            st.args.outbox.forget(&id);
                        }
                    }
                }
                push_subscribed(st);
            }
        }
        Ok(())
    }
}

fn push_subscribed(st: &SessionState) {
    st.args.outbox.push_control(ServerFrame::Subscribed {
        equipment: st.subscriptions.iter().cloned().collect(),
    });
}
