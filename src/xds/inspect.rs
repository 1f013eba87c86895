//! What the inspect API may ask of the xDS side: per connected dataplane, the config last
//! generated for it and where each type's exchange stands (sent, ACKed, rejected), rendered
//! in the shape of Envoy's `/config_dump`.
//!
//! The reconciler answers ([`XdsInspector`]) with copies taken under its locks; rendering
//! happens on the API thread.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::debug::resource_to_json;
use super::resource_kind::ResourceKind;
use super::snapshot::Snapshot;
use super::stream::TypeStatus;
use super::wire::ResourceSet;
use crate::model::ResourceKey;

/// Read-only access to what the reconciler serves.
pub trait XdsInspector: Send + Sync {
    /// What `dataplane` was last served on its latest stream; `None` when it is not
    /// connected to this instance.
    fn dataplane_xds(&self, dataplane: &ResourceKey) -> Option<DataplaneXds>;

    /// Where each type's exchange stands for every dataplane of `mesh` connected to this
    /// instance (no config: cheap enough for a list page).
    fn mesh_streams(&self, _mesh: &str) -> Vec<StreamSummary> {
        Vec::new()
    }
}

/// One connected dataplane's latest stream, without its config.
#[derive(Clone, Debug)]
pub struct StreamSummary {
    pub name: String,
    pub stream_id: u64,
    pub peer: String,
    pub connect_time: SystemTime,
    /// In ADS order.
    pub types: Vec<(ResourceKind, TypeStatus)>,
}

impl StreamSummary {
    /// `{name, stream, peer, connectTime, types: [{typeUrl, ackedVersion, nackedVersion,
    /// error, pending, counters}]}`.
    pub fn to_json(&self) -> Value {
        let types: Vec<Value> = self
            .types
            .iter()
            .filter(|(_, s)| s.subscribed)
            .map(|(kind, s)| {
                json!({
                    "typeUrl": kind.type_url(),
                    "type": kind.short(),
                    "sentVersion": s.sent_version.clone().unwrap_or_default(),
                    "ackedVersion": s.acked_version.clone().unwrap_or_default(),
                    "pending": s.pending,
                    "nackedVersion": s.nacked.as_ref().map(|(v, _)| v.clone()).unwrap_or_default(),
                    "error": s.nacked.as_ref().map(|(_, d)| d.clone()).unwrap_or_default(),
                    "responsesSent": s.counters.sent,
                    "responsesAcknowledged": s.counters.acked,
                    "responsesRejected": s.counters.rejected,
                })
            })
            .collect();
        json!({
            "name": self.name,
            "stream": self.stream_id,
            "peer": self.peer,
            "connectTime": crate::model::rest::format_time(self.connect_time),
            "types": types,
        })
    }
}

/// One connected dataplane's xDS state.
#[derive(Clone, Debug)]
pub struct DataplaneXds {
    pub stream_id: u64,
    pub peer: String,
    pub connect_time: SystemTime,
    /// The config last generated for it; `None` until its first job ran (or while its
    /// Dataplane does not exist).
    pub snapshot: Option<Arc<Snapshot>>,
    /// In ADS order.
    pub types: Vec<TypeXds>,
}

#[derive(Clone, Debug)]
pub struct TypeXds {
    pub kind: ResourceKind,
    /// The part of the snapshot this stream gets (the names Envoy asked for applied).
    pub set: ResourceSet,
    pub status: TypeStatus,
}

/// Envoy's ClientResourceStatus for a resource of the set in `t`.
fn client_status(t: &TypeXds) -> &'static str {
    let version = t.set.version();
    if t.status.acked_version.as_deref() == Some(version) {
        "ACKED"
    } else if t.status.nacked.as_ref().is_some_and(|(v, _)| v == version) {
        "NACKED"
    } else {
        // Generated but not sent yet, or sent and not answered yet.
        "UNKNOWN"
    }
}

/// Where a type goes in Envoy's config dump: the dump's `@type`, the list of dynamic
/// resources, and how one entry carries its resource.
struct DumpShape {
    dump_type: &'static str,
    list: &'static str,
    entry: Entry,
    /// Listeners and clusters carry the ACKed version at the top (Envoy's
    /// `version_info` of the last accepted response).
    top_version: bool,
}

enum Entry {
    /// `{versionInfo, <field>: resource, clientStatus}`.
    Field(&'static str),
    /// `{name, activeState: {versionInfo, listener}, clientStatus}`.
    Listener,
    /// `{name, versionInfo, clientStatus}`: secret material is never shown.
    NameOnly,
}

fn shape(kind: ResourceKind) -> Option<DumpShape> {
    let admin = |t: &str| -> &'static str {
        match t {
            "clusters" => "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "endpoints" => "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            "listeners" => "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "routes" => "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            _ => "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        }
    };
    // By type URL so that a type added to ResourceKind later falls through to `None`
    // instead of breaking the match.
    Some(match kind.type_url() {
        crate::envoy::CLUSTER_TYPE_URL => DumpShape {
            dump_type: admin("clusters"),
            list: "dynamicActiveClusters",
            entry: Entry::Field("cluster"),
            top_version: true,
        },
        crate::envoy::ENDPOINT_TYPE_URL => DumpShape {
            dump_type: admin("endpoints"),
            list: "dynamicEndpointConfigs",
            entry: Entry::Field("endpointConfig"),
            top_version: false,
        },
        crate::envoy::LISTENER_TYPE_URL => DumpShape {
            dump_type: admin("listeners"),
            list: "dynamicListeners",
            entry: Entry::Listener,
            top_version: true,
        },
        crate::envoy::ROUTE_TYPE_URL => DumpShape {
            dump_type: admin("routes"),
            list: "dynamicRouteConfigs",
            entry: Entry::Field("routeConfig"),
            top_version: false,
        },
        crate::envoy::SECRET_TYPE_URL => DumpShape {
            dump_type: admin("secrets"),
            list: "dynamicActiveSecrets",
            entry: Entry::NameOnly,
            top_version: false,
        },
        _ => return None,
    })
}

fn type_dump(t: &TypeXds) -> Option<Value> {
    let shape = shape(t.kind)?;
    let version = t.set.version();
    let status = client_status(t);
    let error = t
        .status
        .nacked
        .as_ref()
        .filter(|(v, _)| v == version)
        .map(|(v, detail)| json!({"details": detail, "versionInfo": v}));
    let entries: Vec<Value> = t
        .set
        .resources
        .iter()
        .map(|r| {
            let mut e = Map::new();
            match shape.entry {
                Entry::Field(field) => {
                    e.insert("versionInfo".into(), Value::from(version));
                    e.insert(field.into(), resource_to_json(r));
                }
                Entry::Listener => {
                    e.insert("name".into(), Value::from(r.name.clone()));
                    e.insert("activeState".into(), json!({"versionInfo": version, "listener": resource_to_json(r)}));
                }
                Entry::NameOnly => {
                    e.insert("name".into(), Value::from(r.name.clone()));
                    e.insert("versionInfo".into(), Value::from(version));
                }
            }
            if let Some(err) = &error {
                e.insert("errorState".into(), err.clone());
            }
            e.insert("clientStatus".into(), Value::from(status));
            Value::Object(e)
        })
        .collect();
    let mut dump = Map::new();
    dump.insert("@type".into(), Value::from(shape.dump_type));
    if shape.top_version {
        dump.insert("versionInfo".into(), Value::from(t.status.acked_version.clone().unwrap_or_default()));
    }
    if !entries.is_empty() {
        dump.insert(shape.list.into(), Value::Array(entries));
    }
    Some(Value::Object(dump))
}

fn type_status(t: &TypeXds) -> Value {
    let s = &t.status;
    json!({
        "typeUrl": t.kind.type_url(),
        "subscribed": s.subscribed,
        "resourceNames": s.requested_names,
        "generatedVersion": t.set.version(),
        "sentVersion": s.sent_version.clone().unwrap_or_default(),
        "ackedVersion": s.acked_version.clone().unwrap_or_default(),
        "pending": s.pending,
        "nackedVersion": s.nacked.as_ref().map(|(v, _)| v.clone()).unwrap_or_default(),
        "error": s.nacked.as_ref().map(|(_, d)| d.clone()).unwrap_or_default(),
        "responsesSent": s.counters.sent,
        "responsesAcknowledged": s.counters.acked,
        "responsesRejected": s.counters.rejected,
    })
}

/// `{"configs": [...]}` as Envoy's `/config_dump` prints it (one dump per type, each
/// resource with its version and whether Envoy ACKed it), plus `xdsStatus`: per type the
/// versions generated, sent and ACKed on this stream.
pub fn config_dump(x: &DataplaneXds) -> Value {
    let configs: Vec<Value> = x.types.iter().filter_map(type_dump).collect();
    let types: Vec<Value> = x.types.iter().filter(|t| shape(t.kind).is_some()).map(type_status).collect();
    json!({
        "configs": configs,
        "xdsStatus": {
            "stream": x.stream_id,
            "peer": x.peer,
            "connectTime": crate::model::rest::format_time(x.connect_time),
            "generated": x.snapshot.is_some(),
            "types": types,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::cluster::Cluster;
    use crate::xds::stream::Counters;
    use crate::xds::wire::EncodedResource;

    fn cluster(name: &str) -> Arc<EncodedResource> {
        let mut c = Cluster::new();
        c.name = name.to_string();
        EncodedResource::encode(ResourceKind::Cluster, name, &c)
    }

    fn xds(status: TypeStatus) -> DataplaneXds {
        let set = ResourceSet::new(vec![cluster("backend")]);
        DataplaneXds {
            stream_id: 7,
            peer: "ipv4:127.0.0.1:5000".into(),
            connect_time: SystemTime::UNIX_EPOCH,
            snapshot: Some(Arc::new(Snapshot::new(set.resources.clone()))),
            types: vec![TypeXds { kind: ResourceKind::Cluster, set, status }],
        }
    }

    #[test]
    fn an_acked_type_dumps_as_envoy_shows_it() {
        let version = ResourceSet::new(vec![cluster("backend")]).version().to_string();
        let status = TypeStatus {
            subscribed: true,
            sent_version: Some(version.clone()),
            acked_version: Some(version.clone()),
            counters: Counters { sent: 1, acked: 1, rejected: 0 },
            ..Default::default()
        };
        let dump = config_dump(&xds(status));
        let clusters = &dump["configs"][0];
        assert_eq!(clusters["@type"], "type.googleapis.com/envoy.admin.v3.ClustersConfigDump");
        assert_eq!(clusters["versionInfo"], version.as_str());
        let entry = &clusters["dynamicActiveClusters"][0];
        assert_eq!(entry["cluster"]["name"], "backend");
        assert_eq!(entry["cluster"]["@type"], crate::envoy::CLUSTER_TYPE_URL);
        assert_eq!(entry["clientStatus"], "ACKED");
        let t = &dump["xdsStatus"]["types"][0];
        assert_eq!((t["sentVersion"].as_str(), t["ackedVersion"].as_str()), (Some(&*version), Some(&*version)));
    }

    #[test]
    fn a_rejected_version_carries_envoys_error() {
        let version = ResourceSet::new(vec![cluster("backend")]).version().to_string();
        let status = TypeStatus {
            subscribed: true,
            sent_version: Some(version.clone()),
            acked_version: Some("older".into()),
            nacked: Some((version.clone(), "bad cluster".into())),
            ..Default::default()
        };
        let dump = config_dump(&xds(status));
        let entry = &dump["configs"][0]["dynamicActiveClusters"][0];
        assert_eq!(entry["clientStatus"], "NACKED");
        assert_eq!(entry["errorState"]["details"], "bad cluster");
        assert_eq!(dump["configs"][0]["versionInfo"], "older", "the top version is the last accepted one");
    }
}
