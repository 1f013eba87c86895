//! Garbage collection of dataplanes (Kuma's `pkg/gc/collector.go`, Universal only): a
//! Dataplane whose insight is offline, and whose last subscription disconnected longer than
//! `runtime.universal.dataplaneCleanupAge` ago, is deleted (its insight goes with it).
//!
//! "Offline" is read from the insight in the store, the view every instance shares: a
//! dataplane that moved to another instance has that instance's open subscription and is
//! online, whatever the instance it left wrote. Each candidate is read again right before
//! its delete, so one that reconnected since the list is kept.

use std::time::{Duration, SystemTime};

use super::jobs::{Job, JobContext};
use crate::model::insight::DataplaneInsightSpec;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::StoreError;

/// Kuma's collection period.
const KUMA_PERIOD: Duration = Duration::from_secs(60);
/// Checks per cleanup age when that age is short (tests, small fleets): a dataplane is
/// collected at most a quarter of its age late.
const CHECKS_PER_AGE: u32 = 4;
/// Floor of the period, so a tiny cleanup age cannot spin the job.
const MIN_PERIOD: Duration = Duration::from_millis(250);

/// How often the collector runs for `cleanup_age`.
pub fn period(cleanup_age: Duration) -> Duration {
    (cleanup_age / CHECKS_PER_AGE).clamp(MIN_PERIOD, KUMA_PERIOD)
}

/// When the insight says its dataplane went offline: the last subscription's disconnect
/// time, if every subscription is closed and that time parses.
pub fn offline_since(insight: &DataplaneInsightSpec) -> Option<SystemTime> {
    if insight.is_online() {
        return None;
    }
    let last = insight.last_subscription()?;
    humantime::parse_rfc3339_weak(last.disconnect_time.as_deref()?).ok()
}

fn expired(insight: &DataplaneInsightSpec, age: Duration, now: SystemTime) -> Option<SystemTime> {
    let since = offline_since(insight)?;
    (now.duration_since(since).unwrap_or_default() > age).then_some(since)
}

#[derive(Debug, Default)]
pub struct Collector;

impl Collector {
    /// One pass; returns the Dataplanes deleted.
    pub fn collect(ctx: &JobContext, age: Duration) -> Result<Vec<ResourceKey>, StoreError> {
        let now = SystemTime::now();
        let insights = ctx.store.list(ResourceType::DataplaneInsight, None)?;
        let mut deleted = Vec::new();
        for insight in insights {
            let Spec::DataplaneInsight(spec) = &insight.spec else { continue };
            if expired(spec, age, now).is_none() {
                continue;
            }
            let key = ResourceKey::new(ResourceType::DataplaneInsight, &insight.meta.mesh, &insight.meta.name);
            // Read again: a reconnect since the list keeps the dataplane.
            let since = match ctx.store.get(&key) {
                Ok(current) => match &current.spec {
                    Spec::DataplaneInsight(spec) => expired(spec, age, SystemTime::now()),
                    _ => None,
                },
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            let Some(since) = since else { continue };
            if !ctx.leading() {
                break;
            }
            let dataplane = ResourceKey::new(ResourceType::Dataplane, &key.mesh, &key.name);
            match ctx.store.delete(&dataplane) {
                Ok(()) => {
                    log::info!(
                        "gc: deleted Dataplane {:?} of mesh {:?}: offline since {} (runtime.universal.dataplaneCleanupAge {})",
                        key.name,
                        key.mesh,
                        crate::model::rest::format_time(since),
                        humantime::format_duration(age)
                    );
                    deleted.push(dataplane);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

impl Job for Collector {
    fn name(&self) -> &'static str {
        "dataplane-gc"
    }

    fn run(&mut self, ctx: &JobContext) -> Duration {
        let age = ctx.config().runtime.universal.dataplane_cleanup_age.as_std();
        if let Err(e) = Collector::collect(ctx, age) {
            log::warn!("gc: collecting offline dataplanes failed: {e}");
        }
        period(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::insight::DiscoverySubscription;
    use crate::model::rest::format_time;

    fn sub(id: &str, connect: SystemTime, disconnect: Option<SystemTime>) -> DiscoverySubscription {
        DiscoverySubscription {
            id: id.into(),
            connect_time: Some(format_time(connect)),
            disconnect_time: disconnect.map(format_time),
            ..Default::default()
        }
    }

    #[test]
    fn only_insights_offline_for_longer_than_the_age_expire() {
        let now = SystemTime::now();
        let age = Duration::from_secs(60);
        let ago = |s| now - Duration::from_secs(s);
        let gone = DataplaneInsightSpec { subscriptions: vec![sub("a", ago(300), Some(ago(120)))], m_tls: None };
        assert_eq!(expired(&gone, age, now).map(format_time), Some(format_time(ago(120))));
        let recent = DataplaneInsightSpec { subscriptions: vec![sub("a", ago(300), Some(ago(10)))], m_tls: None };
        assert_eq!(expired(&recent, age, now), None);
        // Moved: the instance it left closed its subscription long ago, another holds one open.
        let moved = DataplaneInsightSpec {
            subscriptions: vec![sub("a", ago(300), Some(ago(120))), sub("b", ago(119), None)],
            m_tls: None,
        };
        assert_eq!(expired(&moved, age, now), None);
        assert_eq!(expired(&DataplaneInsightSpec::default(), age, now), None);
    }

    #[test]
    fn the_leader_deletes_only_dataplanes_offline_for_longer_than_the_age() {
        use crate::leader::Leadership;
        use crate::store::{MemoryStore, SharedStore};
        use std::sync::{Arc, RwLock};
        let store: SharedStore = Arc::new(MemoryStore::new());
        let mesh = crate::model::rest::from_json(serde_json::json!({"type": "Mesh", "name": "m"})).unwrap();
        store.create("", "m", mesh.spec).unwrap();
        let now = SystemTime::now();
        let ago = |s| now - Duration::from_secs(s);
        let cases = [
            ("gone", vec![sub("a", ago(300), Some(ago(120)))]),
            ("recent", vec![sub("a", ago(300), Some(ago(10)))]),
            ("moved", vec![sub("a", ago(300), Some(ago(120))), sub("b", ago(119), None)]),
        ];
        for (name, subs) in cases {
            let dp = crate::model::rest::from_json(serde_json::json!({"type": "Dataplane", "mesh": "m", "name": name,
                "networking": {"address": "10.0.0.1", "inbound": [{"port": 1, "tags": {"kuma.io/service": "s"}}]}}))
            .unwrap();
            store.create("m", name, dp.spec).unwrap();
            let insight = Spec::DataplaneInsight(DataplaneInsightSpec { subscriptions: subs, m_tls: None });
            store.create("m", name, insight).unwrap();
        }
        let leadership = Arc::new(Leadership::default());
        let ctx = JobContext {
            store: store.clone(),
            config: Arc::new(RwLock::new(crate::config::Config::default())),
            leadership: leadership.clone(),
        };
        let age = Duration::from_secs(60);
        assert!(Collector::collect(&ctx, age).unwrap().is_empty(), "a follower deletes nothing");
        leadership.hold_until(std::time::Instant::now() + Duration::from_secs(60));
        let deleted = Collector::collect(&ctx, age).unwrap();
        assert_eq!(deleted, vec![ResourceKey::new(ResourceType::Dataplane, "m", "gone")]);
        let left: Vec<String> =
            store.list(ResourceType::Dataplane, None).unwrap().iter().map(|d| d.meta.name.clone()).collect();
        assert_eq!(left, ["moved", "recent"]);
    }

    #[test]
    fn the_period_follows_short_ages_and_kumas_minute_otherwise() {
        assert_eq!(period(Duration::from_secs(72 * 3600)), Duration::from_secs(60));
        assert_eq!(period(Duration::from_secs(4)), Duration::from_secs(1));
        assert_eq!(period(Duration::ZERO), MIN_PERIOD);
    }
}
