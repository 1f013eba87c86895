//! Mesh TLS on the engine. For a dataplane with an identity (`crate::mtls::plan`):
//!
//! - every inbound accepts mesh TLS: STRICT (one filter chain, a client certificate
//!   required) or PERMISSIVE (plaintext too), XFCC set on HTTP inbounds;
//! - a cluster speaks TLS to its service when the Mesh's backend is STRICT (at once, as
//!   Kuma), or, in PERMISSIVE (and for MeshIdentities), once the service is TLS-ready: every
//!   dataplane of it has its certificate and a TLS-accepting listener, acknowledged by its
//!   Envoy. Kuma's rule reads `ServiceInsight.issuedBackends` (a certificate issued, not yet
//!   delivered, refreshed by a resync every few seconds); higuma waits for the ACK, so a
//!   client never switches to TLS before the server's Envoy can take it, and a service
//!   served by another control-plane instance stays on plaintext (which PERMISSIVE accepts)
//!   until the mesh goes STRICT.
//!
//! MeshTLS, later in the plugin list, overrides the mode and adds versions and ciphers.

use super::conf::{self, ClientTls, SanMatch, ServerTls};
use crate::envoy::cluster::Cluster;
use crate::envoy::http_connection_manager::http_connection_manager::{
    ForwardClientCertDetails, SetCurrentClientCertDetails,
};
use crate::envoy::parts::{InboundListener, InboundTransport};
use crate::model::ResourceType;
use crate::mtls::names;
use crate::mtls::plan::{self, Mode};
use crate::policies::resolved::{ClusterConf, InboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};
use crate::xds::generate::envoy_builders::set_http2;

pub struct MtlsPlugin;

impl Plugin for MtlsPlugin {
    fn name(&self) -> &'static str {
        "mtls"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshIdentity, ResourceType::MeshTrust]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let p = match plan::plan(cx.mesh_name, cx.mesh, cx.policies, cx.dataplane) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                log::debug!("mtls: {}.{} has no identity: {e}", cx.mesh_name, cx.name);
                return;
            }
        };
        for i in &mut out.inbounds {
            i.conf.tls = Some(ServerTls {
                permissive: p.mode == Mode::Permissive,
                identity_sds: p.identity_sds.clone(),
                trust_sds: p.trust_sds.clone(),
                san_prefixes: p.san_prefixes.clone(),
                params: Default::default(),
            });
        }
        for c in &mut out.clusters {
            if !p.clients_always_tls && !(cx.tls_ready)(&c.service) {
                continue;
            }
            let san = if p.verify_service_id {
                SanMatch::Exact(names::spiffe_id(cx.mesh_name, &c.service))
            } else {
                SanMatch::Prefixes(p.san_prefixes.clone())
            };
            c.conf.tls = Some(ClientTls {
                identity_sds: p.identity_sds.clone(),
                trust_sds: p.trust_sds.clone(),
                san,
                sni: names::sni(&c.service, cx.mesh_name, &c.tags),
                params: Default::default(),
            });
        }
    }

    fn configure_cluster(&self, conf: &ClusterConf, cluster: &mut Cluster) {
        let Some(tls) = &conf.tls else { return };
        cluster.transport_socket = protobuf::MessageField::some(conf::transport_socket(&conf::upstream(tls)));
        // Sidecar to sidecar is always HTTP/2 under mesh TLS (Kuma), whatever the service's
        // protocol: the inbound's HCM detects it from the preface.
        set_http2(cluster);
    }

    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        let Some(tls) = &conf.tls else { return };
        let context = conf::downstream(tls);
        listener.transport =
            if tls.permissive { InboundTransport::Permissive(context) } else { InboundTransport::Strict(context) };
        if let Some(hcm) = listener.hcm.as_mut() {
            // The application learns the client's SPIFFE and kuma:// identities from XFCC; a
            // client-supplied header is replaced (Kuma's SANITIZE_SET, URIs only). Set only
            // with mesh TLS, so meshes without it keep their bytes.
            hcm.forward_client_cert_details = protobuf::EnumOrUnknown::new(ForwardClientCertDetails::SANITIZE_SET);
            let mut set = SetCurrentClientCertDetails::new();
            set.uri = true;
            hcm.set_current_client_cert_details = protobuf::MessageField::some(set);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::check_golden;

    const DIR: &str = "src/policies/mtls/testdata";

    #[test]
    fn strict_listeners_and_clusters() {
        check_golden(DIR, "strict", "web-1");
    }

    #[test]
    fn permissive_listeners_and_clusters_before_readiness() {
        check_golden(DIR, "permissive", "web-1");
    }

    #[test]
    fn mesh_identity_listeners_and_clusters() {
        check_golden(DIR, "mesh-identity", "web-1");
    }

    #[test]
    fn meshtls_mode_versions_and_ciphers() {
        check_golden(DIR, "meshtls", "web-1");
    }

    /// PERMISSIVE clients switch a service to TLS once every dataplane of it is TLS-ready
    /// (its Envoy ACKed its certificate), and a mark from another backend does not count.
    #[test]
    fn permissive_clients_switch_per_service_once_ready() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR);
        let input = std::fs::read_to_string(dir.join("permissive.input.yaml")).unwrap();
        let f = crate::policies::timeout::testing::Fixture::new(&input);
        let tls_of = |ctx: &crate::xds::context::MeshContext, service: &str| {
            let store_dp = ctx.dataplanes.get("web-1").unwrap().clone();
            let crate::model::Spec::Dataplane(spec) = &store_dp.spec else { unreachable!() };
            let r = ctx.resolve(&store_dp, spec);
            r.clusters.iter().find(|c| c.service == service).unwrap().conf.tls.clone()
        };
        assert!(tls_of(&f.ctx, "backend").is_none());
        let stale = f.ctx.with_tls_ready("backend-1", "some-old-backend").unwrap();
        assert!(tls_of(&stale, "backend").is_none(), "a mark of another CA does not count");
        let ready = f.ctx.with_tls_ready("backend-1", "ca-1").unwrap();
        let tls = tls_of(&ready, "backend").expect("TLS once backend-1 is ready");
        assert_eq!(tls.sni, "backend{mesh=default}");
        assert!(tls_of(&ready, "db").is_none(), "db is not ready yet");
        assert!(ready.with_tls_ready("backend-1", "ca-1").is_none(), "known already");
    }
}
