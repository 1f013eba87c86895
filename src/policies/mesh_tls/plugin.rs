//! MeshTLS on the engine: for a dataplane with mesh TLS (its inbounds' `tls` set by the
//! `mtls` plugin), the conf of its `from` rule (kind Mesh: one rule for all clients) sets
//! the inbound mode (Kuma's `getMeshTLSMode`: the policy's mode wins over the identity's
//! and the Mesh backend's) and TLS versions and ciphers. As in Kuma, the versions and
//! ciphers also go to the dataplane's own TLS clusters ("there is only one rule always
//! because we're in Mesh/Mesh").

use super::api::{Conf, MeshTlsSpec};
use crate::model::ResourceType;
use crate::policies::core::matching::{from_rules, matched};
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::mtls::conf::{TlsParams, TlsVersion};
use crate::policies::resolved::ResolvedProxy;
use crate::policies::{Plugin, ResolveCx};

fn params(c: &Conf) -> TlsParams {
    let v = c.tls_version.as_ref();
    TlsParams {
        min: v.and_then(|v| v.min.as_deref()).and_then(TlsVersion::parse),
        max: v.and_then(|v| v.max.as_deref()).and_then(TlsVersion::parse),
        ciphers: c.tls_ciphers.clone().unwrap_or_default(),
    }
}

pub struct MeshTlsPlugin;

impl Plugin for MeshTlsPlugin {
    fn name(&self) -> &'static str {
        "mesh-tls"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshTls]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = <MeshTlsSpec as crate::model::Registered>::TYPE;
        let m = matched(cx.policies, t, cx.dataplane);
        if m.is_empty() {
            return;
        }
        let mut outbound: Option<TlsParams> = None;
        for r in &mut out.inbounds {
            let Some(tls) = r.conf.tls.as_mut() else { continue };
            let Some(inbound) = cx.dataplane.networking.inbound.get(r.index) else { continue };
            let rules = from_rules(cx.policies, t, &m, &inbound.tags, MergeOptions::default());
            let Some(conf) = rules.conf_for::<Conf>(&Subset::new(Vec::new())) else { continue };
            match conf.mode.as_deref() {
                Some("Permissive") => tls.permissive = true,
                Some("Strict") => tls.permissive = false,
                _ => {}
            }
            tls.params = params(conf);
            outbound.get_or_insert_with(|| params(conf));
        }
        let Some(p) = outbound else { return };
        for c in &mut out.clusters {
            if let Some(tls) = c.conf.tls.as_mut() {
                tls.params = p.clone();
            }
        }
    }
}
