//! The subscription finalizer (Kuma's `pkg/gc/finalizer.go`): a control plane that dies
//! (SIGKILL, a lost machine) leaves its streams' subscriptions open in the insights, and its
//! dataplanes would show online forever. Every live stream bumps its subscription's
//! `generation` every half `metrics.dataplane.idleTimeout` (the status writer); once per idle
//! timeout the leader marks every open subscription whose generation did not move since its
//! previous pass as disconnected. A dataplane that reconnects elsewhere needs none of this —
//! its new subscription closes the old one — so this is for dataplanes that never come back.
//!
//! The first pass of a term only remembers generations (nothing is known of the time before
//! it), so a dead instance's subscriptions are closed within two idle timeouts of the term's
//! start.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::jobs::{Job, JobContext};
use crate::model::rest::format_time;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::StoreError;

/// An open subscription: its insight and id.
type SubKey = (ResourceKey, String);

#[derive(Debug, Default)]
pub struct Finalizer {
    /// Generation of every open subscription at the previous pass.
    seen: HashMap<SubKey, u32>,
}

impl Finalizer {
    /// One pass; returns the subscriptions it closed.
    pub fn check(&mut self, ctx: &JobContext) -> Result<Vec<SubKey>, StoreError> {
        let insights = ctx.store.list(ResourceType::DataplaneInsight, None)?;
        let mut now_open: HashMap<SubKey, u32> = HashMap::new();
        let mut stale: HashMap<ResourceKey, Vec<(String, u32)>> = HashMap::new();
        for insight in &insights {
            let Spec::DataplaneInsight(spec) = &insight.spec else { continue };
            let key = ResourceKey::new(ResourceType::DataplaneInsight, &insight.meta.mesh, &insight.meta.name);
            for sub in spec.subscriptions.iter().filter(|s| s.connect_time.is_some() && s.disconnect_time.is_none()) {
                let id = (key.clone(), sub.id.clone());
                if self.seen.get(&id) == Some(&sub.generation) {
                    stale.entry(key.clone()).or_default().push((sub.id.clone(), sub.generation));
                } else {
                    now_open.insert(id, sub.generation);
                }
            }
        }
        self.seen = now_open;
        let mut closed = Vec::new();
        for (key, subs) in stale {
            if !ctx.leading() {
                break;
            }
            match close(ctx, &key, &subs) {
                Ok(ids) => closed.extend(ids.into_iter().map(|id| (key.clone(), id))),
                // Written meanwhile (a live stream's counters, say): looked at again next pass.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }
}

/// Closes the subscriptions `subs` of `key` that still have the generation seen; a
/// compare-and-swap, so a write that raced it wins and is looked at on the next pass.
fn close(ctx: &JobContext, key: &ResourceKey, subs: &[(String, u32)]) -> Result<Vec<String>, StoreError> {
    let current = ctx.store.get(key)?;
    let Spec::DataplaneInsight(mut spec) = current.spec.clone() else { return Ok(Vec::new()) };
    let when = format_time(SystemTime::now());
    let mut closed = Vec::new();
    for sub in &mut spec.subscriptions {
        let open = sub.disconnect_time.is_none();
        if open && subs.iter().any(|(id, generation)| *id == sub.id && *generation == sub.generation) {
            sub.disconnect_time = Some(when.clone());
            closed.push(sub.id.clone());
        }
    }
    if closed.is_empty() {
        return Ok(closed);
    }
    ctx.store.update(key, Spec::DataplaneInsight(spec), current.meta.version)?;
    for id in &closed {
        log::info!(
            "finalizer: subscription {id} of {}.{} had no activity for metrics.dataplane.idleTimeout; its control \
             plane is gone: marked disconnected",
            key.mesh,
            key.name
        );
    }
    Ok(closed)
}

impl Job for Finalizer {
    fn name(&self) -> &'static str {
        "subscription-finalizer"
    }

    fn start_term(&mut self) {
        self.seen.clear();
    }

    fn run(&mut self, ctx: &JobContext) -> Duration {
        if let Err(e) = self.check(ctx) {
            log::warn!("finalizer: checking subscriptions failed: {e}");
        }
        ctx.config().metrics.dataplane.idle_timeout.as_std()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::Leadership;
    use crate::model::insight::{DataplaneInsightSpec, DiscoverySubscription};
    use crate::store::{MemoryStore, SharedStore};
    use std::sync::{Arc, RwLock};

    fn put_insight(store: &SharedStore, subs: Vec<DiscoverySubscription>) {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, "m", "dp");
        let spec = Spec::DataplaneInsight(DataplaneInsightSpec { subscriptions: subs, m_tls: None });
        match store.get(&key) {
            Ok(c) => store.update(&key, spec, c.meta.version).map(drop).unwrap(),
            Err(_) => store.create("m", "dp", spec).map(drop).unwrap(),
        }
    }

    fn sub(id: &str, generation: u32) -> DiscoverySubscription {
        DiscoverySubscription {
            id: id.into(),
            connect_time: Some("2024-01-01T00:00:00Z".into()),
            generation,
            ..Default::default()
        }
    }

    #[test]
    fn closes_open_subscriptions_whose_generation_stood_still_for_a_pass() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let mesh = crate::model::rest::from_json(serde_json::json!({"type": "Mesh", "name": "m"})).unwrap();
        store.create("", "m", mesh.spec).unwrap();
        let dp = crate::model::rest::from_json(serde_json::json!({"type": "Dataplane", "mesh": "m", "name": "dp",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 1, "tags": {"kuma.io/service": "s"}}]}}))
        .unwrap();
        store.create("m", "dp", dp.spec).unwrap();
        let ctx = JobContext {
            store: store.clone(),
            config: Arc::new(RwLock::new(crate::config::Config::default())),
            leadership: Arc::new(Leadership::sole()),
        };
        put_insight(&store, vec![sub("dead", 3), sub("live", 1)]);
        let mut f = Finalizer::default();
        assert!(f.check(&ctx).unwrap().is_empty(), "the first pass only remembers");
        put_insight(&store, vec![sub("dead", 3), sub("live", 2)]);
        let closed = f.check(&ctx).unwrap();
        assert_eq!(closed.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), vec!["dead"]);
        let key = ResourceKey::new(ResourceType::DataplaneInsight, "m", "dp");
        let Spec::DataplaneInsight(spec) = &store.get(&key).unwrap().spec else { panic!() };
        assert!(spec.subscriptions[0].disconnect_time.is_some());
        assert!(spec.subscriptions[1].disconnect_time.is_none(), "a live stream keeps its subscription open");
        let Spec::DataplaneInsight(mut spec) = store.get(&key).unwrap().spec.clone() else { panic!() };
        spec.subscriptions[1].generation = 3;
        put_insight(&store, spec.subscriptions);
        assert!(f.check(&ctx).unwrap().is_empty(), "a closed subscription is not looked at again");
    }
}
