//! The xDS resource types higuma serves, in the order ADS must send them: clusters before
//! their endpoints, listeners after the clusters they reference (Envoy's documented
//! "CDS, EDS, LDS, RDS" sequencing for make-before-break updates), and SDS secrets last:
//! Envoy asks for a secret by name only once a cluster or listener references it, and
//! warms that cluster or listener until the secret arrives.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(usize)]
pub enum ResourceKind {
    Cluster = 0,
    Endpoint = 1,
    Listener = 2,
    Route = 3,
    Secret = 4,
}

pub use crate::envoy::TYPE_URL_PREFIX;

impl ResourceKind {
    /// In ADS send order.
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::Cluster,
        ResourceKind::Endpoint,
        ResourceKind::Listener,
        ResourceKind::Route,
        ResourceKind::Secret,
    ];
    pub const COUNT: usize = 5;

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceKind::Cluster => crate::envoy::CLUSTER_TYPE_URL,
            ResourceKind::Endpoint => crate::envoy::ENDPOINT_TYPE_URL,
            ResourceKind::Listener => crate::envoy::LISTENER_TYPE_URL,
            ResourceKind::Route => crate::envoy::ROUTE_TYPE_URL,
            ResourceKind::Secret => crate::envoy::SECRET_TYPE_URL,
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|k| k.type_url() == url)
    }

    /// Short name used in logs, metrics and Kuma's per-type insight stats (`cds`, `eds`, ...).
    pub fn short(self) -> &'static str {
        match self {
            ResourceKind::Cluster => "cds",
            ResourceKind::Endpoint => "eds",
            ResourceKind::Listener => "lds",
            ResourceKind::Route => "rds",
            ResourceKind::Secret => "sds",
        }
    }

    /// Wildcard types get every resource; the others (endpoints, routes, secrets) only the
    /// names Envoy asked for, so a secret no listener or cluster references is never sent.
    pub fn is_wildcard(self) -> bool {
        matches!(self, ResourceKind::Cluster | ResourceKind::Listener)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}
