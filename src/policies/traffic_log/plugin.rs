//! TrafficLog on the engine: per outbound, the most specific TrafficLog whose sources match the
//! dataplane and whose destinations match the outbound's service (Kuma's
//! `SelectOutboundConnectionPolicies`) picks a Mesh `logging` backend; the outbound's HTTP
//! connection manager or TCP proxy logs to it in the backend's format (Kuma's default for the
//! protocol otherwise). MeshAccessLog appends its own loggers to the same conf; this plugin
//! writes both into the outbound listener.
//!
//! Outbounds routed by a MeshHTTPRoute or MeshTCPRoute are left alone, as Kuma's old outbound
//! generator skips them.

use crate::envoy::parts::OutboundListener;
use crate::model::ResourceType;
use crate::policies::access_log::{self, pipe};
use crate::policies::core::oldstyle::select_outbound;
use crate::policies::resolved::{OutboundConf, ResolvedProxy, RoutedBy};
use crate::policies::{Plugin, ResolveCx};

use super::api::TrafficLogSpec;

/// Kuma's traffic direction of outbound listeners in `%KUMA_TRAFFIC_DIRECTION%`.
pub const OUTBOUND: &str = "OUTBOUND";

pub struct TrafficLogPlugin;

impl Plugin for TrafficLogPlugin {
    fn name(&self) -> &'static str {
        "traffic-log"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::TrafficLog]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::TrafficLog);
        let Some(logging) = cx.mesh.logging.as_ref() else { return };
        if policies.is_empty() {
            return;
        }
        let source = cx.dataplane.networking.inbound.first().map(|i| i.service()).unwrap_or("");
        let pipe = pipe::socket_path(cx.name, cx.mesh_name);
        for o in &mut out.outbounds {
            if matches!(o.routed_by, RoutedBy::MeshHttpRoute | RoutedBy::MeshTcpRoute) {
                continue;
            }
            let Some(spec) =
                select_outbound(policies, cx.dataplane, &o.service).and_then(|p| p.spec.get::<TrafficLogSpec>())
            else {
                continue;
            };
            let name = match spec.backend() {
                "" => logging.default_backend.as_str(),
                named => named,
            };
            let Some(backend) = logging.backends.iter().find(|b| b.name == name) else {
                log::debug!("TrafficLog for {} names no logging backend of the mesh ({name:?}): no logs", o.service);
                continue;
            };
            let vars = access_log::vars(cx.mesh_name, cx.dataplane, source, &o.service, OUTBOUND);
            o.conf.access_logs = access_log::of_mesh_backend(backend, o.protocol, &vars, &pipe).into_iter().collect();
        }
    }

    fn configure_outbound(&self, conf: &OutboundConf, listener: &mut OutboundListener) {
        access_log::configure(&conf.access_logs, listener.hcm.as_mut(), listener.tcp.as_mut());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::dataplane::Protocol;
    use crate::model::{rest, Resource, Spec};
    use crate::policies::access_log::LogFormat;
    use crate::policies::core::set::PolicySet;
    use crate::policies::core::testing::check_golden;
    use crate::policies::resolved::{OutboundConf, ResolvedOutbound, Routing};
    use serde_json::json;

    #[test]
    fn golden_basic() {
        check_golden("src/policies/traffic_log/testdata", "basic", "web-1");
    }

    fn spec(v: serde_json::Value) -> Spec {
        rest::from_json(v).unwrap().spec
    }

    /// Outbounds a MeshHTTPRoute or MeshTCPRoute routes keep no TrafficLog, as Kuma's old
    /// generator skips them; the others log to the mesh's default backend.
    #[test]
    fn outbounds_routed_by_mesh_routes_are_left_alone() {
        let Spec::Mesh(mesh) = spec(json!({"type": "Mesh", "name": "default", "logging": {"defaultBackend": "f",
            "backends": [{"name": "f", "type": "file", "conf": {"path": "/tmp/a.log"}}]}}))
        else {
            unreachable!()
        };
        let Spec::Dataplane(dp) = spec(json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 1, "tags": {"kuma.io/service": "web"}}]}}))
        else {
            unreachable!()
        };
        let tl = spec(json!({"type": "TrafficLog", "mesh": "default", "name": "tl",
            "sources": [{"match": {"kuma.io/service": "*"}}], "destinations": [{"match": {"kuma.io/service": "*"}}]}));
        let meta = crate::model::Meta {
            mesh: "default".into(),
            name: "tl".into(),
            version: 1,
            creation_time: std::time::SystemTime::UNIX_EPOCH,
            modification_time: std::time::SystemTime::UNIX_EPOCH,
        };
        let set = PolicySet::from_lists([(ResourceType::TrafficLog, vec![Arc::new(Resource { meta, spec: tl })])]);
        let outbound = |index, service: &str, routed_by| ResolvedOutbound {
            index,
            service: service.into(),
            protocol: Protocol::Tcp,
            routing: Routing::Tcp { clusters: vec![] },
            routed_by,
            conf: OutboundConf::default(),
        };
        let mut out = ResolvedProxy {
            outbounds: vec![
                outbound(0, "a", RoutedBy::Default),
                outbound(1, "b", RoutedBy::MeshHttpRoute),
                outbound(2, "c", RoutedBy::MeshTcpRoute),
                outbound(3, "d", RoutedBy::TrafficRoute),
            ],
            ..ResolvedProxy::default()
        };
        let protocol_of = |_: &str| Protocol::Tcp;
        let cx = ResolveCx {
            mesh_name: "default",
            mesh: &mesh,
            policies: &set,
            name: "web-1",
            dataplane: &dp,
            protocol_of: &protocol_of,
            tls_ready: &|_| false,
        };
        TrafficLogPlugin.resolve(&cx, &mut out);
        let logged: Vec<usize> = out.outbounds.iter().map(|o| o.conf.access_logs.len()).collect();
        assert_eq!(logged, vec![1, 0, 0, 1]);
        let log = &out.outbounds[0].conf.access_logs[0];
        assert_eq!(log.path, "/tmp/a.log");
        let LogFormat::Text(line) = &log.format else { panic!("{log:?}") };
        assert!(line.contains("10.0.0.1(web)->%UPSTREAM_HOST%(a)"), "{line}");
        assert!(line.ends_with('\n'));
    }
}
