//! The active health checks one consumer runs against one cluster, as both generations
//! resolve them (HealthCheck replaces, MeshHealthCheck appends), and how they shape the
//! Envoy cluster: `healthChecks[]` and the panic settings of `commonLbConfig`.
//!
//! Everything here is already decided (checker, payloads, headers, defaults), so encoding
//! is a plain mapping and the bytes depend on this conf alone.

use std::time::Duration;

use protobuf::{EnumOrUnknown, MessageField};

use crate::envoy::base::header_value_option::HeaderAppendAction;
use crate::envoy::base::{HeaderValue, HeaderValueOption};
use crate::envoy::cluster::cluster::{common_lb_config, CommonLbConfig};
use crate::envoy::cluster::Cluster;
use crate::envoy::extension::TypedExtensionConfig;
use crate::envoy::health_check::{health_check, HealthCheck};
use crate::envoy::health_check_event_file_sink::HealthCheckEventFileSink;
use crate::envoy::http::CodecClientType;
use crate::envoy::percent::Percent;
use crate::envoy::range::Int64Range;
use crate::envoy::{bool_value, duration, to_any, u32_value};

/// Envoy's name for the health check event sink that appends JSON lines to a file.
const FILE_EVENT_SINK: &str = "envoy.health_check.event_sinks.file";

/// The health checking of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HealthChecks {
    /// `healthChecks[]`, in order: an old HealthCheck's, then a MeshHealthCheck's.
    pub checks: Vec<ActiveHealthCheck>,
    /// `commonLbConfig.healthyPanicThreshold`, in thousandths of a percent (62.9 % is
    /// 62900), so the conf stays integral.
    pub healthy_panic_threshold: Option<u32>,
    /// `commonLbConfig.zoneAwareLbConfig.failTrafficOnPanic`.
    pub fail_traffic_on_panic: Option<bool>,
}

/// One `healthChecks[]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActiveHealthCheck {
    /// The policy type that made it (`HealthCheck`, `MeshHealthCheck`): a cluster has at
    /// most one of each, so this names the entries apart when there are two.
    pub origin: &'static str,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub initial_jitter: Option<Duration>,
    pub interval_jitter: Option<Duration>,
    pub interval_jitter_percent: Option<u32>,
    pub no_traffic_interval: Option<Duration>,
    pub event_log_path: Option<String>,
    pub always_log_health_check_failures: Option<bool>,
    pub reuse_connection: Option<bool>,
    pub checker: Checker,
}

/// What a check sends and what counts as healthy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Checker {
    /// Connect, optionally send bytes and expect bytes back; payloads as raw bytes.
    Tcp {
        send: Option<Vec<u8>>,
        receive: Vec<Vec<u8>>,
    },
    Http {
        path: String,
        headers: Vec<HeaderToAdd>,
        /// Healthy statuses; empty means Envoy's default (200 only).
        expected_statuses: Vec<u32>,
        http2: bool,
    },
    Grpc {
        service_name: Option<String>,
        authority: Option<String>,
    },
}

/// A request header of an HTTP check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderToAdd {
    pub name: String,
    pub value: String,
    /// `Some(true)`: add beside existing values; `Some(false)`: replace them; `None`:
    /// Envoy's default (add).
    pub append: Option<bool>,
}

impl HealthChecks {
    /// Writes the checks and panic settings into `cluster` (nothing when empty).
    pub fn apply(&self, cluster: &mut Cluster) {
        // Kuma appends a MeshHealthCheck's entry beside an old HealthCheck's; Envoy accepts
        // several only when every one has a name, and a single one stays as Kuma writes it.
        let named = self.checks.len() > 1;
        cluster.health_checks.extend(self.checks.iter().map(|c| {
            let mut hc = c.envoy();
            if named {
                hc.name = c.origin.to_string();
            }
            hc
        }));
        if let Some(thousandths) = self.healthy_panic_threshold {
            let lb = cluster.common_lb_config.mut_or_insert_default();
            lb.healthy_panic_threshold =
                MessageField::some(Percent { value: f64::from(thousandths) / 1000.0, ..Default::default() });
        }
        if let Some(fail) = self.fail_traffic_on_panic {
            let lb: &mut CommonLbConfig = cluster.common_lb_config.mut_or_insert_default();
            if !lb.has_locality_weighted_lb_config() {
                let mut zone_aware = if lb.has_zone_aware_lb_config() {
                    lb.zone_aware_lb_config().clone()
                } else {
                    common_lb_config::ZoneAwareLbConfig::new()
                };
                zone_aware.fail_traffic_on_panic = fail;
                lb.set_zone_aware_lb_config(zone_aware);
            }
        }
    }
}

impl ActiveHealthCheck {
    fn envoy(&self) -> HealthCheck {
        let mut hc = HealthCheck::new();
        hc.interval = MessageField::some(duration(self.interval));
        hc.timeout = MessageField::some(duration(self.timeout));
        hc.unhealthy_threshold = MessageField::some(u32_value(self.unhealthy_threshold));
        hc.healthy_threshold = MessageField::some(u32_value(self.healthy_threshold));
        hc.initial_jitter = self.initial_jitter.map(duration).into();
        hc.interval_jitter = self.interval_jitter.map(duration).into();
        hc.interval_jitter_percent = self.interval_jitter_percent.unwrap_or(0);
        hc.no_traffic_interval = self.no_traffic_interval.map(duration).into();
        hc.always_log_health_check_failures = self.always_log_health_check_failures.unwrap_or(false);
        hc.reuse_connection = self.reuse_connection.map(bool_value).into();
        // Envoy dropped HealthCheck.event_log_path for event sinks; the file sink writes
        // the same JSON events to the same path.
        if let Some(path) = &self.event_log_path {
            let sink = HealthCheckEventFileSink { event_log_path: path.clone(), ..Default::default() };
            hc.event_logger.push(TypedExtensionConfig {
                name: FILE_EVENT_SINK.to_string(),
                typed_config: MessageField::some(to_any(&sink)),
                ..Default::default()
            });
        }
        match &self.checker {
            Checker::Tcp { send, receive } => {
                let mut tcp = health_check::TcpHealthCheck::new();
                tcp.send = send.as_deref().map(payload).into();
                tcp.receive = receive.iter().map(|r| payload(r)).collect();
                hc.set_tcp_health_check(tcp);
            }
            Checker::Http { path, headers, expected_statuses, http2 } => {
                let mut http = health_check::HttpHealthCheck::new();
                http.path = path.clone();
                http.request_headers_to_add = headers.iter().map(HeaderToAdd::envoy).collect();
                http.expected_statuses = expected_statuses
                    .iter()
                    .map(|&s| Int64Range { start: i64::from(s), end: i64::from(s) + 1, ..Default::default() })
                    .collect();
                http.codec_client_type =
                    EnumOrUnknown::new(if *http2 { CodecClientType::HTTP2 } else { CodecClientType::HTTP1 });
                hc.set_http_health_check(http);
            }
            Checker::Grpc { service_name, authority } => {
                let mut grpc = health_check::GrpcHealthCheck::new();
                grpc.service_name = service_name.clone().unwrap_or_default();
                grpc.authority = authority.clone().unwrap_or_default();
                hc.set_grpc_health_check(grpc);
            }
        }
        hc
    }
}

impl HeaderToAdd {
    fn envoy(&self) -> HeaderValueOption {
        let mut o = HeaderValueOption::new();
        o.header =
            MessageField::some(HeaderValue { key: self.name.clone(), value: self.value.clone(), ..Default::default() });
        // `append_action`, not the deprecated `append`: same meaning, no deprecation
        // warning from Envoy.
        o.append_action = EnumOrUnknown::new(match self.append {
            Some(false) => HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD,
            Some(true) | None => HeaderAppendAction::APPEND_IF_EXISTS_OR_ADD,
        });
        o
    }
}

/// Envoy's `text` payload: the bytes in hex.
fn payload(bytes: &[u8]) -> health_check::Payload {
    let mut p = health_check::Payload::new();
    p.set_text(bytes.iter().map(|b| format!("{b:02x}")).collect());
    p
}
