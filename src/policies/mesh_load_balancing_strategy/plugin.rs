//! MeshLoadBalancingStrategy on the engine. Its `to` rules for a cluster's service set that
//! cluster's load balancer, overriding TrafficRoute's `loadBalancer` (Kuma's plugin rewrites
//! `lbPolicy` after the old generator); the rule for an outbound's own service gives its
//! routes the ring hash or maglev hash policies.
//!
//! Locality awareness is accepted but generates nothing: it ranks endpoints of other zones
//! (`kuma.io/zone`) behind local ones, and a single-zone Universal mesh has no zone tags, so
//! every endpoint is local and Kuma too would leave every priority at 0.

use std::time::Duration;

use protobuf::{EnumOrUnknown, MessageField};

use super::api::{self, HashFunction, HashPolicyType, LbType};
use crate::envoy::cluster::cluster::{
    ring_hash_lb_config, LbPolicy, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
};
use crate::envoy::cluster::Cluster;
use crate::envoy::parts::OutboundListener;
use crate::envoy::route_components::route_action::hash_policy;
use crate::envoy::route_components::route_action::HashPolicy as EnvoyHashPolicy;
use crate::envoy::wkt::wrappers::UInt64Value;
use crate::model::duration::ProtoDuration;
use crate::model::ResourceType;
use crate::policies::core::matching;
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::resolved::{ClusterConf, OutboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

/// A cluster's load balancer (Envoy `lbPolicy` and its config); round robin by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum LoadBalancer {
    #[default]
    RoundRobin,
    LeastRequest {
        choice_count: Option<u32>,
    },
    RingHash {
        murmur: bool,
        min_ring_size: Option<u64>,
        max_ring_size: Option<u64>,
    },
    Random,
    Maglev {
        table_size: Option<u64>,
    },
}

/// One route hash policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HashPolicy {
    pub by: HashBy,
    pub terminal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashBy {
    Header(String),
    Cookie { name: String, ttl: Option<Duration>, path: Option<String> },
    SourceIp(bool),
    QueryParameter(String),
    FilterState(String),
}

impl LoadBalancer {
    fn of(c: &api::LoadBalancerConf) -> LoadBalancer {
        match c.type_ {
            LbType::RoundRobin => LoadBalancer::RoundRobin,
            LbType::LeastRequest => {
                LoadBalancer::LeastRequest { choice_count: c.least_request.as_ref().and_then(|l| l.choice_count) }
            }
            LbType::RingHash => {
                let rh = c.ring_hash.clone().unwrap_or_default();
                LoadBalancer::RingHash {
                    murmur: rh.hash_function == Some(HashFunction::MurmurHash2),
                    min_ring_size: rh.min_ring_size,
                    max_ring_size: rh.max_ring_size,
                }
            }
            LbType::Random => LoadBalancer::Random,
            LbType::Maglev => LoadBalancer::Maglev { table_size: c.maglev.as_ref().and_then(|m| m.table_size) },
        }
    }

    /// Sets `cluster`'s `lbPolicy` and its config; round robin is Envoy's default and
    /// writes nothing.
    pub fn configure(&self, cluster: &mut Cluster) {
        let u64_value = |v: u64| {
            let mut w = UInt64Value::new();
            w.value = v;
            w
        };
        match self {
            LoadBalancer::RoundRobin => {}
            LoadBalancer::LeastRequest { choice_count } => {
                cluster.lb_policy = EnumOrUnknown::new(LbPolicy::LEAST_REQUEST);
                if let Some(n) = choice_count {
                    let mut c = LeastRequestLbConfig::new();
                    c.choice_count = MessageField::some(crate::envoy::u32_value(*n));
                    cluster.set_least_request_lb_config(c);
                }
            }
            LoadBalancer::RingHash { murmur, min_ring_size, max_ring_size } => {
                cluster.lb_policy = EnumOrUnknown::new(LbPolicy::RING_HASH);
                let mut c = RingHashLbConfig::new();
                if *murmur {
                    c.hash_function = EnumOrUnknown::new(ring_hash_lb_config::HashFunction::MURMUR_HASH_2);
                }
                c.minimum_ring_size = min_ring_size.map(u64_value).into();
                c.maximum_ring_size = max_ring_size.map(u64_value).into();
                cluster.set_ring_hash_lb_config(c);
            }
            LoadBalancer::Random => cluster.lb_policy = EnumOrUnknown::new(LbPolicy::RANDOM),
            LoadBalancer::Maglev { table_size } => {
                cluster.lb_policy = EnumOrUnknown::new(LbPolicy::MAGLEV);
                if let Some(size) = table_size {
                    let mut c = MaglevLbConfig::new();
                    c.table_size = MessageField::some(u64_value(*size));
                    cluster.set_maglev_lb_config(c);
                }
            }
        }
    }
}

impl HashPolicy {
    fn of(p: &api::HashPolicy) -> Option<HashPolicy> {
        let by = match p.type_ {
            HashPolicyType::Header => HashBy::Header(p.header.as_ref()?.name.clone()),
            HashPolicyType::Cookie => {
                let c = p.cookie.as_ref()?;
                HashBy::Cookie {
                    name: c.name.clone(),
                    ttl: c.ttl.as_deref().and_then(|t| ProtoDuration::parse(t).ok()).map(|d| d.0),
                    path: c.path.clone(),
                }
            }
            HashPolicyType::Connection => HashBy::SourceIp(p.connection.as_ref()?.source_ip.unwrap_or(false)),
            HashPolicyType::QueryParameter => HashBy::QueryParameter(p.query_parameter.as_ref()?.name.clone()),
            HashPolicyType::FilterState => HashBy::FilterState(p.filter_state.as_ref()?.key.clone()),
        };
        Some(HashPolicy { by, terminal: p.terminal.unwrap_or(false) })
    }

    fn envoy(&self) -> EnvoyHashPolicy {
        let mut out = EnvoyHashPolicy::new();
        match &self.by {
            HashBy::Header(name) => {
                let mut h = hash_policy::Header::new();
                h.header_name = name.clone();
                out.set_header(h);
            }
            HashBy::Cookie { name, ttl, path } => {
                let mut c = hash_policy::Cookie::new();
                c.name = name.clone();
                c.ttl = ttl.map(crate::envoy::duration).into();
                c.path = path.clone().unwrap_or_default();
                out.set_cookie(c);
            }
            HashBy::SourceIp(source_ip) => {
                let mut c = hash_policy::ConnectionProperties::new();
                c.source_ip = *source_ip;
                out.set_connection_properties(c);
            }
            HashBy::QueryParameter(name) => {
                let mut q = hash_policy::QueryParameter::new();
                q.name = name.clone();
                out.set_query_parameter(q);
            }
            HashBy::FilterState(key) => {
                let mut f = hash_policy::FilterState::new();
                f.key = key.clone();
                out.set_filter_state(f);
            }
        }
        out.terminal = self.terminal;
        out
    }
}

/// The hash policies of a load balancer conf: ring hash's or maglev's, whichever is in use.
fn hash_policies(c: &api::LoadBalancerConf) -> Vec<HashPolicy> {
    let list = match c.type_ {
        LbType::RingHash => c.ring_hash.as_ref().and_then(|r| r.hash_policies.as_ref()),
        LbType::Maglev => c.maglev.as_ref().and_then(|m| m.hash_policies.as_ref()),
        _ => None,
    };
    list.map(|l| l.iter().filter_map(HashPolicy::of).collect()).unwrap_or_default()
}

pub struct MeshLoadBalancingStrategyPlugin;

impl Plugin for MeshLoadBalancingStrategyPlugin {
    fn name(&self) -> &'static str {
        "mesh-load-balancing-strategy"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshLoadBalancingStrategy]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshLoadBalancingStrategy;
        let matched = matching::matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let rules = matching::to_rules(cx.policies, t, &matched, MergeOptions::default());
        let lb_of = |service: &str| {
            rules.conf_for::<api::Conf>(&Subset::service(service)).and_then(|c| c.load_balancer.as_ref())
        };
        for c in &mut out.clusters {
            if let Some(lb) = lb_of(&c.service) {
                c.conf.load_balancer = LoadBalancer::of(lb);
            }
        }
        for o in &mut out.outbounds {
            if let Some(lb) = lb_of(&o.service) {
                o.conf.hash_policies = hash_policies(lb);
            }
        }
    }

    fn configure_cluster(&self, conf: &ClusterConf, cluster: &mut Cluster) {
        conf.load_balancer.configure(cluster);
    }

    fn configure_outbound(&self, conf: &OutboundConf, listener: &mut OutboundListener) {
        if conf.hash_policies.is_empty() {
            return;
        }
        let Some(hcm) = listener.hcm.as_mut() else { return };
        if !hcm.has_route_config() {
            return;
        }
        for vh in &mut hcm.mut_route_config().virtual_hosts {
            for route in &mut vh.routes {
                if route.has_route() {
                    route.mut_route().hash_policy.extend(conf.hash_policies.iter().map(HashPolicy::envoy));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::routing::golden::check;

    #[test]
    fn golden_ring_hash_on_a_header_overrides_a_traffic_route_load_balancer() {
        check("mesh_load_balancing_strategy", "01.ring-hash-header", "web-1");
    }

    #[test]
    fn golden_every_load_balancer_type() {
        check("mesh_load_balancing_strategy", "02.lb-types", "web-1");
    }
}
