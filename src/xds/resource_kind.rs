//! The xDS resource types higuma serves, in the order ADS must send them: clusters before
//! their endpoints, listeners after the clusters they reference (Envoy's documented
//! "CDS, EDS, LDS, RDS" sequencing for make-before-break updates).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(usize)]
pub enum ResourceKind {
    Cluster = 0,
    Endpoint = 1,
    Listener = 2,
    Route = 3,
}

pub use crate::envoy::TYPE_URL_PREFIX;

impl ResourceKind {
    /// In ADS send order.
    pub const ALL: [ResourceKind; 4] =
        [ResourceKind::Cluster, ResourceKind::Endpoint, ResourceKind::Listener, ResourceKind::Route];
    pub const COUNT: usize = 4;

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceKind::Cluster => crate::envoy::CLUSTER_TYPE_URL,
            ResourceKind::Endpoint => crate::envoy::ENDPOINT_TYPE_URL,
            ResourceKind::Listener => crate::envoy::LISTENER_TYPE_URL,
            ResourceKind::Route => crate::envoy::ROUTE_TYPE_URL,
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
        }
    }

    /// Wildcard types get every resource; the others only the names Envoy asked for.
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
