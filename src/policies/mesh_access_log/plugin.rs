//! MeshAccessLog on the engine: each outbound gets the backends of the `to` rule for its
//! service, each inbound the backends of its `from` rule (every client: `from` names only
//! `Mesh`), appended after any TrafficLog logger. Formats are rendered here with Kuma's
//! variables (an inbound's source is `unknown`, as the callee's proxy cannot know it).
//!
//! A tcp backend writes `{"address", "message"}` JSON lines to the dataplane's pipe, which
//! `higuma dp run` forwards. The TrafficLog plugin writes the outbound loggers into the
//! listeners; this one writes the inbound ones.

use super::api::{Backend, Conf, Format};
use crate::envoy::parts::InboundListener;
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::access_log::format::{render, Vars};
use crate::policies::access_log::{self, default_format, pipe, AccessLog, LogFormat, LogValue, UNKNOWN_SOURCE};
use crate::policies::core::matching::{from_rules, matched, to_rules};
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::resolved::{InboundConf, ResolvedProxy};
use crate::policies::traffic_log::plugin::OUTBOUND;
use crate::policies::{Plugin, ResolveCx};

/// Kuma's traffic direction of inbound listeners in `%KUMA_TRAFFIC_DIRECTION%`.
const INBOUND: &str = "INBOUND";

/// The logger of one backend for a listener speaking `protocol`.
fn logger(backend: &Backend, protocol: Protocol, vars: &Vars, pipe: &str) -> Option<AccessLog> {
    let (path, format, tcp_address) = match (&backend.file, &backend.tcp) {
        (Some(f), _) => (f.path.clone(), f.format.as_ref(), None),
        (None, Some(t)) => (pipe.to_string(), t.format.as_ref(), Some(t.address.clone())),
        (None, None) => return None,
    };
    let omit_empty_values = format.and_then(|f| f.omit_empty_values).unwrap_or(false);
    let json = format.and_then(|f: &Format| f.json.as_ref());
    let format = match (json, tcp_address) {
        (Some(fields), address) => {
            let fields: Vec<(String, String)> =
                fields.iter().map(|kv| (kv.key.clone(), render(&kv.value, vars))).collect();
            match address {
                None => LogFormat::Json {
                    fields: fields.into_iter().map(|(k, v)| (k, LogValue::Text(v))).collect(),
                    omit_empty_values,
                },
                Some(address) => LogFormat::Json {
                    fields: vec![
                        ("address".to_string(), LogValue::Text(address)),
                        ("message".to_string(), LogValue::Object(fields)),
                    ],
                    omit_empty_values,
                },
            }
        }
        (None, address) => {
            let plain = format.and_then(|f| f.plain.as_deref()).unwrap_or(default_format(protocol));
            let line = format!("{}\n", render(plain, vars));
            match address {
                None => LogFormat::Text(line),
                Some(address) => LogFormat::Json {
                    fields: vec![
                        ("address".to_string(), LogValue::Text(address)),
                        ("message".to_string(), LogValue::Text(line)),
                    ],
                    omit_empty_values,
                },
            }
        }
    };
    Some(AccessLog { path, format })
}

fn loggers(conf: Option<&Conf>, protocol: Protocol, vars: &Vars, pipe: &str) -> Vec<AccessLog> {
    conf.and_then(|c| c.backends.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|b| logger(b, protocol, vars, pipe))
        .collect()
}

pub struct MeshAccessLogPlugin;

impl Plugin for MeshAccessLogPlugin {
    fn name(&self) -> &'static str {
        "mesh-access-log"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshAccessLog]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshAccessLog;
        let matched = matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let pipe = pipe::socket_path(cx.name, cx.mesh_name);
        let source = cx.dataplane.networking.inbound.first().map(|i| i.service()).unwrap_or("");
        let to = to_rules(cx.policies, t, &matched, MergeOptions::default());
        for o in &mut out.outbounds {
            let vars = access_log::vars(cx.mesh_name, cx.dataplane, source, &o.service, OUTBOUND);
            let conf = to.conf_for::<Conf>(&Subset::service(&o.service));
            o.conf.access_logs.extend(loggers(conf, o.protocol, &vars, &pipe));
        }
        for r in &mut out.inbounds {
            let Some(inbound) = cx.dataplane.networking.inbound.get(r.index) else { continue };
            let from = from_rules(cx.policies, t, &matched, &inbound.tags, MergeOptions::default());
            let vars = access_log::vars(cx.mesh_name, cx.dataplane, UNKNOWN_SOURCE, inbound.service(), INBOUND);
            let conf = from.conf_for::<Conf>(&Subset::default());
            r.conf.access_logs.extend(loggers(conf, inbound.protocol(), &vars, &pipe));
        }
    }

    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        access_log::configure(&conf.access_logs, listener.hcm.as_mut(), listener.tcp.as_mut());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn golden_basic() {
        crate::policies::core::testing::check_golden("src/policies/mesh_access_log/testdata", "basic", "web-1");
    }
}
