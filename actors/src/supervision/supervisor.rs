//! A plain supervisor actor: holds nothing but its children.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::core::{ChildSpec, Supervision, SupervisionCmd};
use super::spec::SupervisorSpec;
use crate::registry::Registry;

/// Messages of a [`Supervisor`].
pub enum SupervisorMsg {
    /// A supervision command.
    Cmd(SupervisionCmd),
}

impl From<SupervisionCmd> for SupervisorMsg {
    fn from(cmd: SupervisionCmd) -> Self {
        SupervisorMsg::Cmd(cmd)
    }
}

/// The supervisor actor.
pub struct Supervisor;

/// What a [`Supervisor`] starts with.
pub struct SupervisorArgs {
    /// Its own path (`root`, `plant`, …).
    pub path: String,
    /// How it supervises.
    pub spec: SupervisorSpec,
    /// The registry its children are recorded in.
    pub registry: Registry,
    /// Its static children, started in order.
    pub children: Vec<ChildSpec>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = Supervision;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut supervision = Supervision::new(
            args.path,
            args.spec,
            args.registry,
            Arc::new(myself.clone()),
        );
        supervision
            .start_children(&myself.get_cell(), args.children)
            .await?;
        Ok(supervision)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_all().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Cmd(cmd) => state.handle_cmd(&myself.get_cell(), cmd).await,
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.handle_event(&myself.get_cell(), event).await
    }
}
