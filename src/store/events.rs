//! Change events: what a store tells its subscribers after every write.

use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender};

use crate::model::ResourceKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeEvent {
    Changed {
        op: Operation,
        key: ResourceKey,
    },
    /// Changes may have been missed (e.g. a notification connection was lost): treat
    /// everything as possibly changed.
    Resync,
}

/// Fans events out to subscribers. Channels are unbounded so a slow subscriber never blocks a
/// writer; a subscriber that went away is dropped on the next send.
#[derive(Debug, Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Sender<ChangeEvent>>>,
}

impl EventBus {
    pub fn subscribe(&self) -> Receiver<ChangeEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.lock().push(tx);
        rx
    }

    pub fn publish(&self, event: ChangeEvent) {
        self.lock().retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<ChangeEvent>>> {
        // A panic while holding this lock cannot leave the Vec inconsistent; keep serving.
        self.subscribers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
