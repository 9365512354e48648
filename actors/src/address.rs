//! A stable address for an actor that may be restarted.
//!
//! Supervisors replace crashed actors with new instances; whoever sends to them
//! holds an [`Address`], which the new instance fills in when it starts, like a
//! registered name in Erlang.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ractor::{ActorRef, Message};

use crate::registry::MailboxGauge;

/// Why a message could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("actor unavailable (not started, or restarting)")]
pub struct Unavailable;

/// The current instance of an actor, and its mailbox gauge.
pub struct Address<M: Message> {
    current: Arc<RwLock<Option<ActorRef<M>>>>,
    gauge: Arc<MailboxGauge>,
    /// Instances started so far: a sender that keeps state for the actor
    /// can tell it was restarted (and lost what it was told).
    generation: Arc<AtomicU64>,
}

impl<M: Message> Clone for Address<M> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
            gauge: self.gauge.clone(),
            generation: self.generation.clone(),
        }
    }
}

impl<M: Message> Default for Address<M> {
    fn default() -> Self {
        Self {
            current: Arc::new(RwLock::new(None)),
            gauge: Arc::new(MailboxGauge::default()),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<M: Message> Address<M> {
    /// An empty address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Points the address at a newly started instance.
    pub fn set(&self, actor: ActorRef<M>) {
        self.gauge.reset();
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(actor);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many instances have been started (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current instance, if one was started.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current.read().ok().and_then(|slot| slot.clone())
    }

    /// Sends `msg` to the current instance, counting it in the mailbox gauge.
    /// The receiving actor calls [`Address::handled`] as it takes it.
    pub fn cast(&self, msg: M) -> Result<(), Unavailable> {
        let actor = self.get().ok_or(Unavailable)?;
        self.gauge.enqueued();
        actor.cast(msg).map_err(|_| {
            self.gauge.dequeued();
            Unavailable
        })
    }

    /// Marks one counted message as handled.
    pub fn handled(&self) {
        self.gauge.dequeued();
    }

    /// The mailbox gauge, for the registry.
    pub fn gauge(&self) -> Arc<MailboxGauge> {
        self.gauge.clone()
    }
}
