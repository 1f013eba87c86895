//! FaultInjection on the engine: every FaultInjection whose destinations match an HTTP inbound
//! (Kuma's `SelectInboundConnectionAllPolicies`: most specific first source first) becomes one
//! `envoy.filters.http.fault` filter on that inbound, limited by an `x-kuma-tags` header
//! match to the requests of its sources. MeshFaultInjection writes the same conf; this plugin
//! turns it into filters for both.

use std::time::Duration;

use protobuf::{EnumOrUnknown, MessageField};

use super::api::FaultInjectionSpec;
use crate::envoy::common_fault::{fault_rate_limit, FaultDelay, FaultRateLimit};
use crate::envoy::http_connection_manager::{HttpConnectionManager, HttpFilter};
use crate::envoy::http_fault::{FaultAbort, HTTPFault};
use crate::envoy::parts::InboundListener;
use crate::envoy::percent::{fractional_percent::DenominatorType, FractionalPercent};
use crate::envoy::{duration, to_any};
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_inbound_all;
use crate::policies::kuma_tags::SourceMatch;
use crate::policies::resolved::{InboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

/// Envoy's name of the HTTP fault filter.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The filter every HTTP chain ends with; inbound filters go before it.
const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// A percentage as Envoy's `FractionalPercent`: the smallest denominator that holds it
/// exactly (Kuma's `ConvertPercentage`), beyond 1/10000 % rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: Denominator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denominator {
    Hundred,
    TenThousand,
    Million,
}

impl Fraction {
    /// From a decimal percentage `"12.5"` (0..=100); `None` if it is not one.
    pub fn parse(text: &str) -> Option<Fraction> {
        let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let whole: u64 = whole.parse().ok()?;
        let frac = frac.trim_end_matches('0');
        // Millionths of the whole (percent × 10^4), rounded at the fourth decimal.
        let mut digits: String = frac.chars().take(4).collect();
        while digits.len() < 4 {
            digits.push('0');
        }
        let mut ten_thousandths: u64 = whole.checked_mul(10_000)? + digits.parse::<u64>().ok()?;
        if frac.as_bytes().get(4).is_some_and(|d| *d >= b'5') {
            ten_thousandths += 1;
        }
        if ten_thousandths > 100 * 10_000 {
            return None;
        }
        let n = u32::try_from(ten_thousandths).ok()?;
        Some(match frac.len() {
            0 => Fraction { numerator: n / 10_000, denominator: Denominator::Hundred },
            1 | 2 => Fraction { numerator: n / 100, denominator: Denominator::TenThousand },
            _ => Fraction { numerator: n, denominator: Denominator::Million },
        })
    }

    /// From a JSON number (Rust prints floats in plain decimal, never with an exponent).
    pub fn of_f64(p: f64) -> Option<Fraction> {
        if !p.is_finite() || p < 0.0 {
            return None;
        }
        Fraction::parse(&format!("{p}"))
    }

    fn envoy(self) -> FractionalPercent {
        let mut f = FractionalPercent::new();
        f.numerator = self.numerator;
        f.denominator = EnumOrUnknown::new(match self.denominator {
            Denominator::Hundred => DenominatorType::HUNDRED,
            Denominator::TenThousand => DenominatorType::TEN_THOUSAND,
            Denominator::Million => DenominatorType::MILLION,
        });
        f
    }
}

/// `10kbps`, `5 mbps`, `1gbps` in kbps (Kuma's `ConvertBandwidthToKbps`: ×1, ×1000, ×10^6).
pub fn kbps_of(limit: &str) -> Option<u64> {
    let t = limit.trim();
    let (number, factor) = [("kbps", 1u64), ("mbps", 1_000), ("gbps", 1_000_000)]
        .into_iter()
        .find_map(|(unit, f)| t.strip_suffix(unit).map(|n| (n, f)))?;
    let number = number.strip_suffix(' ').unwrap_or(number);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(factor).filter(|k| *k > 0)
}

/// One fault filter: which requests it applies to and what it does to them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpFault {
    pub sources: SourceMatch,
    pub delay: Option<(Duration, Fraction)>,
    pub abort: Option<(u32, Fraction)>,
    /// Response body rate in kbps.
    pub response_bandwidth: Option<(u64, Fraction)>,
}

impl HttpFault {
    fn of(spec: &FaultInjectionSpec) -> HttpFault {
        let c = &spec.conf;
        HttpFault {
            sources: SourceMatch::selectors(&spec.sources),
            delay: c.delay.as_ref().and_then(|d| Some((d.value?.0, Fraction::of_f64(d.percentage?)?))),
            abort: c.abort.as_ref().and_then(|a| Some((a.http_status?, Fraction::of_f64(a.percentage?)?))),
            response_bandwidth: c
                .response_bandwidth
                .as_ref()
                .and_then(|b| Some((kbps_of(b.limit.as_deref()?)?, Fraction::of_f64(b.percentage?)?))),
        }
    }

    fn filter(&self) -> HttpFilter {
        let mut fault = HTTPFault::new();
        if let Some((value, pct)) = self.delay {
            let mut d = FaultDelay::new();
            d.set_fixed_delay(duration(value));
            d.percentage = MessageField::some(pct.envoy());
            fault.delay = MessageField::some(d);
        }
        if let Some((status, pct)) = self.abort {
            let mut a = FaultAbort::new();
            a.set_http_status(status);
            a.percentage = MessageField::some(pct.envoy());
            fault.abort = MessageField::some(a);
        }
        if let Some((kbps, pct)) = self.response_bandwidth {
            let mut limit = fault_rate_limit::FixedLimit::new();
            limit.limit_kbps = kbps;
            let mut r = FaultRateLimit::new();
            r.set_fixed_limit(limit);
            r.percentage = MessageField::some(pct.envoy());
            fault.response_rate_limit = MessageField::some(r);
        }
        fault.headers = self.sources.matchers();
        let mut f = HttpFilter::new();
        f.name = FAULT_FILTER.to_string();
        f.set_typed_config(to_any(&fault));
        f
    }
}

/// Inserts `filter` just before the router (at the end if there is none).
pub fn insert_before_router(hcm: &mut HttpConnectionManager, filter: HttpFilter) {
    let at = hcm.http_filters.iter().position(|f| f.name == ROUTER_FILTER).unwrap_or(hcm.http_filters.len());
    hcm.http_filters.insert(at, filter);
}

pub struct FaultInjectionPlugin;

impl Plugin for FaultInjectionPlugin {
    fn name(&self) -> &'static str {
        "fault-injection"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::FaultInjection]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::FaultInjection);
        if policies.is_empty() {
            return;
        }
        for r in &mut out.inbounds {
            let Some(inbound) = cx.dataplane.networking.inbound.get(r.index) else { continue };
            if !inbound.protocol().is_http() {
                continue;
            }
            r.conf.faults = select_inbound_all(policies, &inbound.tags)
                .into_iter()
                .filter_map(|p| p.spec.get::<FaultInjectionSpec>())
                .map(HttpFault::of)
                .collect();
        }
    }

    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        let Some(hcm) = listener.hcm.as_mut() else { return };
        for fault in &conf.faults {
            insert_before_router(hcm, fault.filter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u32, d: Denominator) -> Option<Fraction> {
        Some(Fraction { numerator: n, denominator: d })
    }

    #[test]
    fn percentages_take_the_smallest_exact_denominator() {
        assert_eq!(Fraction::parse("50"), f(50, Denominator::Hundred));
        assert_eq!(Fraction::parse("100"), f(100, Denominator::Hundred));
        assert_eq!(Fraction::parse("50.0"), f(50, Denominator::Hundred));
        assert_eq!(Fraction::parse("50.5"), f(5050, Denominator::TenThousand));
        assert_eq!(Fraction::parse("0.01"), f(1, Denominator::TenThousand));
        assert_eq!(Fraction::parse("12.345"), f(123_450, Denominator::Million));
        assert_eq!(Fraction::parse("0.00005"), f(1, Denominator::Million));
        assert_eq!(Fraction::of_f64(50.5), f(5050, Denominator::TenThousand));
        assert_eq!(Fraction::parse("100.5"), None);
        assert_eq!(Fraction::parse("-1"), None);
        assert_eq!(Fraction::parse("ten"), None);
        assert_eq!(Fraction::parse(".5"), None);
    }

    #[test]
    fn golden_basic() {
        crate::policies::core::testing::check_golden("src/policies/fault_injection/testdata", "basic", "backend-1");
    }

    fn fi(name: &str, sources: &str, status: u32) -> String {
        format!(
            "---\ntype: FaultInjection\nmesh: default\nname: {name}\nsources: {sources}\n\
             destinations: [{{match: {{kuma.io/service: backend, kuma.io/protocol: http}}}}]\n\
             conf: {{abort: {{percentage: 100, httpStatus: {status}}}}}\n"
        )
    }

    const BACKEND: &str = "type: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: backend-1\n\
        networking: {address: 10.0.0.2, inbound: [{port: 8080, tags: {kuma.io/service: backend, kuma.io/protocol: http}}]}\n";

    fn statuses(yaml: &str) -> Vec<u32> {
        let r = crate::policies::core::testing::resolve_yaml(yaml, "backend-1");
        r.inbounds[0].conf.faults.iter().map(|f| f.abort.map(|a| a.0).unwrap_or(0)).collect()
    }

    /// Kuma ranks every matching FaultInjection by its *first* source selector only: a policy
    /// whose second source is the most specific of all still comes after one whose first
    /// source names a service; equal ranks go newest first.
    #[test]
    fn select_inbound_all_ranks_by_the_first_source_then_newest() {
        let yaml = [
            BACKEND.to_string(),
            fi("a-wild-first", "[{match: {kuma.io/service: '*'}}, {match: {kuma.io/service: web, version: '1'}}]", 501),
            fi("b-web", "[{match: {kuma.io/service: web}}]", 502),
            fi("c-older-two-tags", "[{match: {kuma.io/service: web, version: '*'}}]", 503),
            fi("d-newer-two-tags", "[{match: {kuma.io/service: web, version: '*'}}]", 504),
        ]
        .concat();
        // Two tags beat one (total first), then exact beats wildcard, then newer first.
        assert_eq!(statuses(&yaml), vec![504, 503, 502, 501]);
    }

    #[test]
    fn only_policies_whose_destinations_match_the_inbound() {
        let other = fi("other", "[{match: {kuma.io/service: web}}]", 500).replace("backend,", "other,");
        assert_eq!(statuses(&[BACKEND.to_string(), other].concat()), Vec::<u32>::new());
        let v2 = fi("v2", "[{match: {kuma.io/service: web}}]", 500).replace("backend,", "backend, version: v2,");
        assert_eq!(statuses(&[BACKEND.to_string(), v2].concat()), Vec::<u32>::new());
    }

    #[test]
    fn bandwidth_units() {
        assert_eq!(kbps_of("10kbps"), Some(10));
        assert_eq!(kbps_of("50 mbps"), Some(50_000));
        assert_eq!(kbps_of("1gbps"), Some(1_000_000));
        assert_eq!(kbps_of("10bps"), None);
        assert_eq!(kbps_of("mbps"), None);
        assert_eq!(kbps_of("0kbps"), None);
        assert_eq!(kbps_of("1.5mbps"), None);
    }
}
