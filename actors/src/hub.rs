//! Who listens to which equipment unit.
//!
//! Kept outside the equipment actors so that subscriptions survive an equipment
//! restart: the new instance publishes to the same subscribers.

use std::sync::Arc;

use dashmap::DashMap;

use hydrowatch_models::EquipmentId;

use crate::session::Outbox;

/// One subscriber: a session's outbox.
#[derive(Clone)]
pub struct Subscriber {
    pub session: Arc<str>,
    /// Where frames go.
    pub outbox: Arc<Outbox>,
}

/// Subscriptions of every session to every equipment unit.
#[derive(Clone, Default)]
pub struct Hub {
    subscribers: Arc<DashMap<EquipmentId, Vec<Subscriber>>>,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `subscriber` to `equipment` (idempotent per session).
    pub fn subscribe(&self, equipment: &EquipmentId, subscriber: Subscriber) {
        let mut list = self.subscribers.entry(equipment.clone()).or_default();
        if !list.iter().any(|s| s.session == subscriber.session) {
            list.push(subscriber);
        }
    }

    /// Removes a session from `equipment`.
    pub fn unsubscribe(&self, equipment: &EquipmentId, session: &str) {
        if let Some(mut list) = self.subscribers.get_mut(equipment) {
            list.retain(|s| &*s.session != session);
        }
    }

    /// Removes a session from every equipment (its socket is gone).
    pub fn remove_session(&self, session: &str) {
        for mut list in self.subscribers.iter_mut() {
            list.retain(|s| &*s.session != session);
        }
    }

    /// Calls `f` with every subscriber of `equipment`.
    pub fn for_each(&self, equipment: &EquipmentId, mut f: impl FnMut(&Subscriber)) {
        if let Some(list) = self.subscribers.get(equipment) {
            list.iter().for_each(&mut f);
        }
    }

    /// Number of subscriptions in total.
    pub fn subscription_count(&self) -> usize {
        self.subscribers.iter().map(|e| e.len()).sum()
    }
}
