//! DataplaneInsight (`api/mesh/v1alpha1/dataplane_insight.proto`): the xDS subscriptions of a
//! dataplane, written by the control plane only (no validation beyond decoding).
//!
//! Counters are `uint64` in the proto, so protojson prints them as strings (`"3"`); they are
//! read back from a string or a number. Zero counters are omitted, as protojson does.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ValidationError;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneInsightSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<DiscoverySubscription>,
    #[serde(rename = "mTLS", default, skip_serializing_if = "Option::is_none")]
    pub m_tls: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverySubscription {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub control_plane_instance_id: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<String>,
    /// RFC 3339; `None` while the stream is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_time: Option<String>,
    #[serde(default)]
    pub status: SubscriptionStatus,
    /// `{kumaDp{...}, envoy{...}, dependencies}` as kuma-dp reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub generation: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default)]
    pub total: DiscoveryServiceStats,
    #[serde(default)]
    pub cds: DiscoveryServiceStats,
    #[serde(default)]
    pub eds: DiscoveryServiceStats,
    #[serde(default)]
    pub lds: DiscoveryServiceStats,
    #[serde(default)]
    pub rds: DiscoveryServiceStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryServiceStats {
    #[serde(default, with = "u64_string", skip_serializing_if = "is_zero_u64")]
    pub responses_sent: u64,
    #[serde(default, with = "u64_string", skip_serializing_if = "is_zero_u64")]
    pub responses_acknowledged: u64,
    #[serde(default, with = "u64_string", skip_serializing_if = "is_zero_u64")]
    pub responses_rejected: u64,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// protojson's `uint64`: written as a decimal string, read from a string or a number.
mod u64_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an unsigned integer or a string holding one")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("counter cannot be negative, got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
                v.parse().map_err(|_| E::custom(format!("invalid counter {v:?}: expected an unsigned integer")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl DataplaneInsightSpec {
    /// Nothing beyond decoding: insights are written by the control plane only.
    pub fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// Kuma's `IsOnline`: some subscription connected and not disconnected.
    pub fn is_online(&self) -> bool {
        self.subscriptions.iter().any(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
    }

    /// The most recent subscription (the last one).
    pub fn last_subscription(&self) -> Option<&DiscoverySubscription> {
        self.subscriptions.last()
    }

    /// Kuma's `UpdateSubscription` followed by the sink's trimming:
    ///
    /// - a subscription with the same `id` is replaced in place;
    /// - otherwise the older subscriptions still lacking a `disconnectTime` are finalized (a CP
    ///   that died without closing its streams leaves them open; their `disconnectTime` becomes
    ///   the new subscription's `connectTime`, or now if it has none) and `sub` is appended;
    /// - then only the last `limit` subscriptions are kept. As in Kuma's code (and contrary to
    ///   the comment in Kuma's config file), `limit == 0` keeps none.
    ///
    /// Unlike Kuma, a subscription that is no longer listed (trimmed away) is not appended
    /// again when it is closed or older than a listed one: that is the late write of an
    /// instance the dataplane has left, which would otherwise close the live subscription of
    /// the instance it moved to and show it offline (Kuma's "connected to another CP" case).
    pub fn upsert_subscription(&mut self, sub: DiscoverySubscription, limit: usize) {
        if let Some(existing) = self.subscriptions.iter_mut().find(|s| s.id == sub.id) {
            *existing = sub;
        } else if self.has_newer_than(&sub) {
            return;
        } else if sub.disconnect_time.is_some() {
            // A stream that closed before its first write (the final flush at shutdown
            // writes it) is still a record of the connection; being closed, it closes no
            // other subscription.
            self.subscriptions.push(sub);
        } else {
            let when = sub.connect_time.clone().unwrap_or_else(|| super::rest::format_time(SystemTime::now()));
            for old in &mut self.subscriptions {
                if old.disconnect_time.is_none() {
                    old.disconnect_time = Some(when.clone());
                }
            }
            self.subscriptions.push(sub);
        }
        if self.subscriptions.len() > limit {
            let excess = self.subscriptions.len() - limit;
            self.subscriptions.drain(..excess);
        }
    }
}

impl DataplaneInsightSpec {
    /// Whether a listed subscription connected after `sub` did.
    fn has_newer_than(&self, sub: &DiscoverySubscription) -> bool {
        let time =
            |s: &DiscoverySubscription| s.connect_time.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let Some(mine) = time(sub) else { return false };
        self.subscriptions.iter().filter_map(time).any(|t| t > mine)
    }
}

impl super::SpecType for DataplaneInsightSpec {
    /// Written by the control plane only; whatever it wrote is valid.
    fn validate(&self) -> Result<(), super::ValidationError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::from_json;
    use crate::model::Spec;
    use serde_json::{json, Value};

    fn insight(body: Value) -> Value {
        let mut v = json!({"type": "DataplaneInsight", "mesh": "default", "name": "dp-1"});
        v.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        v
    }

    fn spec_of(v: Value) -> DataplaneInsightSpec {
        match from_json(v).unwrap().spec {
            Spec::DataplaneInsight(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn sub(id: &str, connect: &str) -> DiscoverySubscription {
        DiscoverySubscription { id: id.into(), connect_time: Some(connect.into()), ..Default::default() }
    }

    /// A stream that closed before its first write is recorded (shutdown's final flush
    /// writes it), closing nobody else's; one older than a listed subscription is not.
    #[test]
    fn a_stream_first_written_closed_is_recorded_unless_a_newer_one_is_listed() {
        let mut spec = DataplaneInsightSpec::default();
        let mut closed = sub("a", "2026-01-01T00:00:00Z");
        closed.disconnect_time = Some("2026-01-01T00:00:05Z".into());
        spec.upsert_subscription(closed.clone(), 5);
        assert_eq!(spec.subscriptions, vec![closed.clone()]);

        let live = sub("b", "2026-01-01T00:01:00Z");
        spec.upsert_subscription(live.clone(), 5);
        let mut late = sub("c", "2026-01-01T00:00:30Z");
        late.disconnect_time = Some("2026-01-01T00:00:40Z".into());
        spec.upsert_subscription(late, 5);
        assert_eq!(spec.subscriptions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(spec.subscriptions[1].disconnect_time.is_none(), "the live one stays open");
    }

    #[test]
    fn round_trips_protojson() {
        let body = json!({
            "subscriptions": [{
                "id": "0b4e5b5c-1",
                "controlPlaneInstanceId": "cp-1",
                "connectTime": "2023-01-01T00:00:00.000000Z",
                "status": {
                    "lastUpdateTime": "2023-01-01T00:00:01.000000Z",
                    "total": {"responsesSent": "3", "responsesAcknowledged": "3"},
                    "cds": {"responsesSent": "1", "responsesAcknowledged": "1"},
                    "eds": {"responsesSent": "1", "responsesAcknowledged": "1"},
                    "lds": {"responsesSent": "1", "responsesAcknowledged": "1"},
                    "rds": {}
                },
                "version": {"kumaDp": {"version": "2.4.0"}, "envoy": {"version": "1.27.0"}},
                "generation": 2
            }],
            "mTLS": {"issuedBackend": "ca-1", "certificateRegenerations": 1}
        });
        let spec = spec_of(insight(body.clone()));
        assert_eq!(spec.subscriptions[0].status.total.responses_sent, 3);
        assert!(spec.is_online());
        assert_eq!(Spec::DataplaneInsight(spec).to_json(), body);
    }

    #[test]
    fn counters_accept_strings_and_numbers() {
        let spec = spec_of(insight(json!({"subscriptions": [{"id": "a", "status": {
            "total": {"responsesSent": 7, "responsesAcknowledged": "5", "responsesRejected": "2"}
        }}]})));
        let total = spec.subscriptions[0].status.total;
        assert_eq!((total.responses_sent, total.responses_acknowledged, total.responses_rejected), (7, 5, 2));
        let out = serde_json::to_value(total).unwrap();
        assert_eq!(out, json!({"responsesSent": "7", "responsesAcknowledged": "5", "responsesRejected": "2"}));

        let err =
            from_json(insight(json!({"subscriptions": [{"status": {"total": {"responsesSent": "x"}}}]}))).unwrap_err();
        assert_eq!(err.violations[0].field, "subscriptions[0].status.total.responsesSent");
        assert!(err.violations[0].reason.contains("\"x\""), "{err}");
        let err =
            from_json(insight(json!({"subscriptions": [{"status": {"total": {"responsesSent": -1}}}]}))).unwrap_err();
        assert!(err.violations[0].reason.contains("negative"), "{err}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = from_json(insight(json!({"subscriptions": [{"id": "a", "bogus": 1}]}))).unwrap_err();
        assert_eq!(err.violations[0].field, "subscriptions[0].bogus");
        assert!(err.violations[0].reason.contains("bogus"), "{err}");
    }

    #[test]
    fn online_means_connected_and_not_disconnected() {
        let mut spec = DataplaneInsightSpec::default();
        assert!(!spec.is_online());
        spec.subscriptions.push(DiscoverySubscription { id: "a".into(), ..Default::default() });
        assert!(!spec.is_online());
        spec.subscriptions.push(sub("b", "2023-01-01T00:00:00Z"));
        assert!(spec.is_online());
        spec.subscriptions[1].disconnect_time = Some("2023-01-01T00:01:00Z".into());
        assert!(!spec.is_online());
    }

    #[test]
    fn upsert_replaces_appends_finalizes_and_trims() {
        let mut spec = DataplaneInsightSpec::default();
        spec.upsert_subscription(sub("a", "t1"), 2);
        let mut a2 = sub("a", "t1");
        a2.generation = 5;
        spec.upsert_subscription(a2, 2);
        assert_eq!(spec.subscriptions.len(), 1);
        assert_eq!(spec.subscriptions[0].generation, 5);

        spec.upsert_subscription(sub("b", "t2"), 2);
        assert_eq!(spec.subscriptions.len(), 2);
        assert_eq!(spec.subscriptions[0].disconnect_time.as_deref(), Some("t2"));
        assert!(spec.is_online());

        spec.upsert_subscription(sub("c", "t3"), 2);
        let ids: Vec<&str> = spec.subscriptions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(spec.subscriptions[0].disconnect_time.as_deref(), Some("t3"));

        spec.upsert_subscription(sub("d", "t4"), 0);
        assert!(spec.subscriptions.is_empty());
    }

    #[test]
    fn a_late_write_of_the_instance_a_dataplane_left_keeps_it_online() {
        let mut spec = DataplaneInsightSpec::default();
        spec.upsert_subscription(sub("old-1", "2024-01-01T00:00:00Z"), 2);
        spec.upsert_subscription(sub("old-2", "2024-01-01T00:01:00Z"), 2);
        spec.upsert_subscription(sub("new", "2024-01-01T00:02:00Z"), 2);
        assert_eq!(spec.subscriptions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["old-2", "new"]);
        // old-1 was trimmed away; its instance closes it (or bumps its counters) late.
        let mut closed = sub("old-1", "2024-01-01T00:00:00Z");
        closed.disconnect_time = Some("2024-01-01T00:03:00Z".into());
        spec.upsert_subscription(closed, 2);
        let mut counters = sub("old-1", "2024-01-01T00:00:00Z");
        counters.generation = 9;
        spec.upsert_subscription(counters, 2);
        assert_eq!(spec.subscriptions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["old-2", "new"]);
        assert!(spec.is_online(), "{spec:?}");
    }
}
