//! The circuit breaking of one cluster, as both generations resolve it: connection limits
//! (`circuitBreakers.thresholds[0]`) and passive outlier detection (`outlierDetection`), in
//! Envoy's shape so encoding is a plain mapping. CircuitBreaker sets both; a
//! MeshCircuitBreaker replaces each part it configures.

use std::time::Duration;

use protobuf::MessageField;

use crate::envoy::circuit_breaker::{circuit_breakers, CircuitBreakers};
use crate::envoy::cluster::Cluster;
use crate::envoy::outlier_detection::OutlierDetection;
use crate::envoy::{duration, u32_value};

/// `enforcing*` values: every detected outlier is ejected, or none is.
pub const ENFORCING_ON: u32 = 100;
pub const ENFORCING_OFF: u32 = 0;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CircuitBreaking {
    pub thresholds: Option<Thresholds>,
    pub outlier_detection: Option<Outlier>,
}

/// The default-priority thresholds; unset limits keep Envoy's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Thresholds {
    pub max_connections: Option<u32>,
    pub max_connection_pools: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

/// Envoy's `OutlierDetection`, field for field; `None` leaves Envoy's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Outlier {
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub split_external_local_origin_errors: bool,
    pub consecutive_5xx: Option<u32>,
    pub enforcing_consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    pub consecutive_local_origin_failure: Option<u32>,
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
    pub success_rate_request_volume: Option<u32>,
    pub success_rate_minimum_hosts: Option<u32>,
    /// The standard deviation factor × 1000, as Envoy takes it.
    pub success_rate_stdev_factor: Option<u32>,
    pub enforcing_success_rate: Option<u32>,
    pub enforcing_local_origin_success_rate: Option<u32>,
    pub failure_percentage_request_volume: Option<u32>,
    pub failure_percentage_minimum_hosts: Option<u32>,
    pub failure_percentage_threshold: Option<u32>,
    pub enforcing_failure_percentage: Option<u32>,
    pub enforcing_failure_percentage_local_origin: Option<u32>,
}

/// `on` when a detector is configured, else off: Kuma disables the detectors a policy does
/// not name, since Envoy enables some of them by default.
pub(crate) fn enforcing(on: bool) -> Option<u32> {
    Some(if on { ENFORCING_ON } else { ENFORCING_OFF })
}

impl CircuitBreaking {
    /// Replaces `circuitBreakers` and `outlierDetection` of `cluster` with what is set.
    pub fn apply(&self, cluster: &mut Cluster) {
        if let Some(t) = &self.thresholds {
            let thresholds = circuit_breakers::Thresholds {
                max_connections: t.max_connections.map(u32_value).into(),
                max_connection_pools: t.max_connection_pools.map(u32_value).into(),
                max_pending_requests: t.max_pending_requests.map(u32_value).into(),
                max_requests: t.max_requests.map(u32_value).into(),
                max_retries: t.max_retries.map(u32_value).into(),
                ..Default::default()
            };
            cluster.circuit_breakers =
                MessageField::some(CircuitBreakers { thresholds: vec![thresholds], ..Default::default() });
        }
        if let Some(o) = &self.outlier_detection {
            let v = |x: Option<u32>| MessageField::from(x.map(u32_value));
            cluster.outlier_detection = MessageField::some(OutlierDetection {
                interval: o.interval.map(duration).into(),
                base_ejection_time: o.base_ejection_time.map(duration).into(),
                max_ejection_percent: v(o.max_ejection_percent),
                split_external_local_origin_errors: o.split_external_local_origin_errors,
                consecutive_5xx: v(o.consecutive_5xx),
                enforcing_consecutive_5xx: v(o.enforcing_consecutive_5xx),
                consecutive_gateway_failure: v(o.consecutive_gateway_failure),
                enforcing_consecutive_gateway_failure: v(o.enforcing_consecutive_gateway_failure),
                consecutive_local_origin_failure: v(o.consecutive_local_origin_failure),
                enforcing_consecutive_local_origin_failure: v(o.enforcing_consecutive_local_origin_failure),
                success_rate_request_volume: v(o.success_rate_request_volume),
                success_rate_minimum_hosts: v(o.success_rate_minimum_hosts),
                success_rate_stdev_factor: v(o.success_rate_stdev_factor),
                enforcing_success_rate: v(o.enforcing_success_rate),
                enforcing_local_origin_success_rate: v(o.enforcing_local_origin_success_rate),
                failure_percentage_request_volume: v(o.failure_percentage_request_volume),
                failure_percentage_minimum_hosts: v(o.failure_percentage_minimum_hosts),
                failure_percentage_threshold: v(o.failure_percentage_threshold),
                enforcing_failure_percentage: v(o.enforcing_failure_percentage),
                enforcing_failure_percentage_local_origin: v(o.enforcing_failure_percentage_local_origin),
                ..Default::default()
            });
        }
    }
}
