//! The per-stream xDS state machine (state of the world, one ADS stream), kept free of gRPC so
//! it can be tested alone, as go-control-plane does with its mock streams.
//!
//! Per resource type it tracks what Envoy asked for and what it has:
//! - a request with an empty `response_nonce` subscribes (a new stream, or a new type);
//! - a request carrying the nonce of our latest response for that type answers it: an ACK
//!   when `error_detail` is absent, a NACK otherwise; either way the watch is open again;
//! - a request carrying any other nonce is stale (it answers a response Envoy has since been
//!   sent a newer one of) and is ignored;
//! - we answer a type only while its watch is open, and only with a version Envoy does not
//!   already have; a NACKed version is never resent, and after a NACK nothing else is sent for
//!   that type until the back-off has passed (Kuma's `nackBackoff`), so a config Envoy rejects
//!   cannot turn into a hot loop.

use std::time::{Duration, Instant};

use super::resource_kind::ResourceKind;

/// What a DiscoveryRequest says, decoded from the wire message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestView {
    pub type_url: String,
    pub version_info: String,
    pub response_nonce: String,
    pub resource_names: Vec<String>,
    /// `error_detail.message` when Envoy rejected the response.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RequestOutcome {
    /// A type Envoy did not have a watch on is now watched; the stream needs an answer.
    Subscribed(ResourceKind),
    /// Envoy asked again without answering anything new (e.g. changed resource names).
    Resubscribed(ResourceKind),
    /// `after`: time since the response was sent.
    Ack {
        kind: ResourceKind,
        version: String,
        after: Duration,
    },
    Nack {
        kind: ResourceKind,
        version: String,
        detail: String,
    },
    /// Nothing to do; the reason is for the log.
    Ignored(IgnoreReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    UnknownType(String),
    StaleNonce { kind: ResourceKind, nonce: String },
}

/// Whether to send a type now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendDecision {
    Send,
    /// Not now and nothing to remember: Envoy has it, is not watching, or rejected it.
    Skip,
    /// Ask again at this time (NACK back-off).
    RetryAt(Instant),
}

/// Responses counted per type and in total, as Kuma's DiscoverySubscription reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, Default)]
struct TypeState {
    subscribed: bool,
    watch_open: bool,
    /// Names Envoy asked for last (empty = all, for wildcard types).
    names: Vec<String>,
    /// Names our latest response was built for.
    answered_names: Option<Vec<String>>,
    last_nonce: Option<String>,
    /// Version of the response Envoy has not answered yet, and when it was sent.
    in_flight: Option<String>,
    sent_at: Option<Instant>,
    acked_version: Option<String>,
    nacked: Option<(String, Instant)>,
    /// Why Envoy rejected `nacked`, for the inspect API.
    nack_detail: Option<String>,
    /// The version of our latest response, answered or not, for the inspect API.
    sent_version: Option<String>,
    /// Every version rejected since the last ACK (latest last, bounded): a config that
    /// flips between two bad versions must not resend either (found by the `xds_stream`
    /// fuzz target: only the latest was remembered).
    rejected: Vec<String>,
    /// Send the next time the watch is open even if the version is unchanged.
    force: bool,
    counters: Counters,
}

/// What one type's exchange stands at, for the inspect API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeStatus {
    pub subscribed: bool,
    /// The names Envoy asks for (empty = everything).
    pub requested_names: Vec<String>,
    /// The version of our latest response.
    pub sent_version: Option<String>,
    /// The latest response is not answered yet.
    pub pending: bool,
    pub acked_version: Option<String>,
    /// The version Envoy rejected last and its error, until it ACKs a later one.
    pub nacked: Option<(String, String)>,
    pub counters: Counters,
}
/// How Envoy answered one version of a type (change delivery tracking asks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    Acked,
    /// Rejected, with Envoy's error.
    Nacked(&'a str),
    /// Not answered (yet), or superseded before it was.
    Open,
}

/// Rejected versions remembered per type: content hashes, so a handful covers a config
/// flapping between bad states without growing with a stream's age.
const MAX_REJECTED: usize = 8;

#[derive(Debug)]
pub struct StreamState {
    nack_backoff: Duration,
    next_nonce: u64,
    types: [TypeState; ResourceKind::COUNT],
}

impl StreamState {
    pub fn new(nack_backoff: Duration) -> Self {
        StreamState { nack_backoff, next_nonce: 1, types: Default::default() }
    }

    pub fn set_nack_backoff(&mut self, backoff: Duration) {
        self.nack_backoff = backoff;
    }

    /// Applies one request to the state and says what it meant.
    pub fn on_request(&mut self, req: &RequestView, now: Instant) -> RequestOutcome {
        let Some(kind) = ResourceKind::from_type_url(&req.type_url) else {
            return RequestOutcome::Ignored(IgnoreReason::UnknownType(req.type_url.clone()));
        };
        let backoff = self.nack_backoff;
        let t = &mut self.types[kind.index()];
        if req.response_nonce.is_empty() {
            let newly = !t.subscribed;
            t.subscribed = true;
            t.watch_open = true;
            t.names = req.resource_names.clone();
            // A reconnecting Envoy tells us what it already runs; matching content hashes
            // then mean nothing needs to be sent again.
            if !req.version_info.is_empty() {
                t.acked_version = Some(req.version_info.clone());
            }
            if t.answered_names.as_ref().is_some_and(|n| *n != t.names) {
                t.force = true;
            }
            return if newly { RequestOutcome::Subscribed(kind) } else { RequestOutcome::Resubscribed(kind) };
        }
        if t.last_nonce.as_deref() != Some(req.response_nonce.as_str()) {
            return RequestOutcome::Ignored(IgnoreReason::StaleNonce { kind, nonce: req.response_nonce.clone() });
        }
        t.subscribed = true;
        t.watch_open = true;
        t.names = req.resource_names.clone();
        if t.answered_names.as_ref().is_some_and(|n| *n != t.names) {
            t.force = true;
        }
        let Some(version) = t.in_flight.take() else {
            // Our latest response was answered already; Envoy is re-asking.
            return RequestOutcome::Resubscribed(kind);
        };
        match &req.error {
            Some(detail) => {
                t.counters.rejected += 1;
                t.nack_detail = Some(detail.clone());
                t.nacked = Some((version.clone(), now + backoff));
                t.rejected.retain(|v| *v != version);
                if t.rejected.len() >= MAX_REJECTED {
                    t.rejected.remove(0);
                }
                t.rejected.push(version.clone());
                t.force = false;
                RequestOutcome::Nack { kind, version, detail: detail.clone() }
            }
            None => {
                t.counters.acked += 1;
                t.acked_version = Some(version.clone());
                t.nacked = None;
                t.nack_detail = None;
                t.rejected.clear();
                let after = t.sent_at.map(|s| now.saturating_duration_since(s)).unwrap_or_default();
                RequestOutcome::Ack { kind, version, after }
            }
        }
    }

    /// Decides whether `version` of `kind` should be sent now.
    pub fn decide(&self, kind: ResourceKind, version: &str, now: Instant) -> SendDecision {
        let t = &self.types[kind.index()];
        if !t.subscribed || !t.watch_open {
            return SendDecision::Skip;
        }
        if t.rejected.iter().any(|v| v == version) {
            return SendDecision::Skip;
        }
        if let Some((_, until)) = &t.nacked {
            if now < *until {
                return SendDecision::RetryAt(*until);
            }
        }
        if kind == ResourceKind::Listener && self.types[ResourceKind::Cluster.index()].in_flight.is_some() {
            // Listeners may reference clusters Envoy has not accepted yet; the CDS answer
            // reopens this decision.
            return SendDecision::Skip;
        }
        if t.force || t.acked_version.as_deref() != Some(version) {
            SendDecision::Send
        } else {
            SendDecision::Skip
        }
    }

    /// The names Envoy currently asks for (empty = everything).
    pub fn requested_names(&self, kind: ResourceKind) -> &[String] {
        &self.types[kind.index()].names
    }

    /// Records that a response with `version` is being sent; returns its nonce.
    pub fn record_sent(&mut self, kind: ResourceKind, version: &str) -> String {
        self.record_sent_at(kind, version, Instant::now())
    }

    /// [`record_sent`](Self::record_sent) with an explicit clock reading.
    pub fn record_sent_at(&mut self, kind: ResourceKind, version: &str, now: Instant) -> String {
        let nonce = self.next_nonce.to_string();
        self.next_nonce += 1;
        let t = &mut self.types[kind.index()];
        t.last_nonce = Some(nonce.clone());
        t.in_flight = Some(version.to_string());
        t.sent_version = Some(version.to_string());
        t.sent_at = Some(now);
        t.watch_open = false;
        t.force = false;
        t.answered_names = Some(t.names.clone());
        t.counters.sent += 1;
        if kind == ResourceKind::Cluster {
            // Envoy re-warms every cluster a CDS update touches and waits for endpoints of
            // each; answering EDS again even with unchanged content keeps them from waiting
            // for the initial fetch timeout.
            self.types[ResourceKind::Endpoint.index()].force = true;
        }
        nonce
    }

    pub fn is_subscribed(&self, kind: ResourceKind) -> bool {
        self.types[kind.index()].subscribed
    }

    pub fn acked_version(&self, kind: ResourceKind) -> Option<&str> {
        self.types[kind.index()].acked_version.as_deref()
    }

    /// Whether Envoy runs `version` of `kind`, rejected it last, or neither (no copies: the
    /// dispatcher asks on ACKs while changes are being delivered).
    pub fn answer(&self, kind: ResourceKind, version: &str) -> Answer<'_> {
        let t = &self.types[kind.index()];
        if t.acked_version.as_deref() == Some(version) {
            Answer::Acked
        } else if t.nacked.as_ref().is_some_and(|(v, _)| v == version) {
            Answer::Nacked(t.nack_detail.as_deref().unwrap_or(""))
        } else {
            Answer::Open
        }
    }

    pub fn counters(&self, kind: ResourceKind) -> Counters {
        self.types[kind.index()].counters
    }

    /// Where the exchange of `kind` stands (a copy: the caller holds no lock on the stream).
    pub fn status(&self, kind: ResourceKind) -> TypeStatus {
        let t = &self.types[kind.index()];
        TypeStatus {
            subscribed: t.subscribed,
            requested_names: t.names.clone(),
            sent_version: t.sent_version.clone(),
            pending: t.in_flight.is_some(),
            acked_version: t.acked_version.clone(),
            nacked: t.nacked.as_ref().map(|(v, _)| (v.clone(), t.nack_detail.clone().unwrap_or_default())),
            counters: t.counters,
        }
    }

    pub fn total(&self) -> Counters {
        self.types.iter().fold(Counters::default(), |acc, t| Counters {
            sent: acc.sent + t.counters.sent,
            acked: acc.acked + t.counters.acked,
            rejected: acc.rejected + t.counters.rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_secs(5);

    fn req(kind: ResourceKind, nonce: &str, error: Option<&str>) -> RequestView {
        RequestView {
            type_url: kind.type_url().to_string(),
            response_nonce: nonce.to_string(),
            error: error.map(str::to_string),
            ..Default::default()
        }
    }

    fn subscribed(kind: ResourceKind) -> (StreamState, Instant) {
        let mut s = StreamState::new(BACKOFF);
        let now = Instant::now();
        assert_eq!(s.on_request(&req(kind, "", None), now), RequestOutcome::Subscribed(kind));
        (s, now)
    }

    #[test]
    fn initial_request_opens_a_watch_and_ack_records_the_version() {
        let (mut s, now) = subscribed(ResourceKind::Cluster);
        assert_eq!(s.decide(ResourceKind::Cluster, "v1", now), SendDecision::Send);
        let nonce = s.record_sent(ResourceKind::Cluster, "v1");
        assert_eq!(s.decide(ResourceKind::Cluster, "v2", now), SendDecision::Skip, "watch is closed until answered");
        let out = s.on_request(&req(ResourceKind::Cluster, &nonce, None), now);
        assert!(
            matches!(out, RequestOutcome::Ack { kind: ResourceKind::Cluster, ref version, .. } if version == "v1"),
            "{out:?}"
        );
        assert_eq!(s.acked_version(ResourceKind::Cluster), Some("v1"));
        assert_eq!(s.decide(ResourceKind::Cluster, "v1", now), SendDecision::Skip, "Envoy has v1");
        assert_eq!(s.decide(ResourceKind::Cluster, "v2", now), SendDecision::Send);
        assert_eq!(s.counters(ResourceKind::Cluster), Counters { sent: 1, acked: 1, rejected: 0 });
    }

    #[test]
    fn nack_is_counted_never_resent_and_backs_off() {
        let (mut s, now) = subscribed(ResourceKind::Listener);
        let nonce = s.record_sent(ResourceKind::Listener, "bad");
        let out = s.on_request(&req(ResourceKind::Listener, &nonce, Some("invalid listener")), now);
        assert_eq!(
            out,
            RequestOutcome::Nack {
                kind: ResourceKind::Listener,
                version: "bad".into(),
                detail: "invalid listener".into()
            }
        );
        assert_eq!(s.counters(ResourceKind::Listener).rejected, 1);
        assert_eq!(s.decide(ResourceKind::Listener, "bad", now + BACKOFF * 10), SendDecision::Skip);
        assert_eq!(s.decide(ResourceKind::Listener, "fixed", now), SendDecision::RetryAt(now + BACKOFF));
        assert_eq!(s.decide(ResourceKind::Listener, "fixed", now + BACKOFF), SendDecision::Send);
    }

    #[test]
    fn status_reports_sent_acked_and_rejected_versions() {
        let (mut s, now) = subscribed(ResourceKind::Listener);
        let n1 = s.record_sent(ResourceKind::Listener, "v1");
        let st = s.status(ResourceKind::Listener);
        assert_eq!((st.sent_version.as_deref(), st.pending, st.acked_version), (Some("v1"), true, None));
        s.on_request(&req(ResourceKind::Listener, &n1, None), now);
        let n2 = s.record_sent(ResourceKind::Listener, "v2");
        s.on_request(&req(ResourceKind::Listener, &n2, Some("bad port")), now);
        let st = s.status(ResourceKind::Listener);
        assert_eq!(st.sent_version.as_deref(), Some("v2"));
        assert!(!st.pending);
        assert_eq!(st.acked_version.as_deref(), Some("v1"));
        assert_eq!(st.nacked, Some(("v2".to_string(), "bad port".to_string())));
        let n3 = s.record_sent(ResourceKind::Listener, "v3");
        s.on_request(&req(ResourceKind::Listener, &n3, None), now + BACKOFF);
        let st = s.status(ResourceKind::Listener);
        assert_eq!((st.acked_version.as_deref(), st.nacked), (Some("v3"), None));
        assert_eq!(st.counters, Counters { sent: 3, acked: 2, rejected: 1 });
    }

    #[test]
    fn no_rejected_version_is_resent_until_an_ack() {
        let (mut s, now) = subscribed(ResourceKind::Route);
        let n1 = s.record_sent(ResourceKind::Route, "v1");
        s.on_request(&req(ResourceKind::Route, &n1, Some("bad v1")), now);
        let later = now + BACKOFF;
        let n2 = s.record_sent_at(ResourceKind::Route, "v2", later);
        s.on_request(&req(ResourceKind::Route, &n2, Some("bad v2")), later);
        let much_later = later + BACKOFF * 10;
        assert_eq!(s.decide(ResourceKind::Route, "v1", much_later), SendDecision::Skip, "v1 was rejected too");
        assert_eq!(s.decide(ResourceKind::Route, "v2", much_later), SendDecision::Skip);
        assert_eq!(s.decide(ResourceKind::Route, "v3", much_later), SendDecision::Send);
        let n3 = s.record_sent_at(ResourceKind::Route, "v3", much_later);
        s.on_request(&req(ResourceKind::Route, &n3, None), much_later);
        assert_eq!(s.decide(ResourceKind::Route, "v1", much_later), SendDecision::Send, "an ACK starts afresh");
    }

    #[test]
    fn stale_nonces_are_ignored() {
        let (mut s, now) = subscribed(ResourceKind::Cluster);
        let first = s.record_sent(ResourceKind::Cluster, "v1");
        s.on_request(&req(ResourceKind::Cluster, &first, None), now);
        let second = s.record_sent(ResourceKind::Cluster, "v2");
        assert_ne!(first, second, "nonces are unique per stream");
        let out = s.on_request(&req(ResourceKind::Cluster, &first, None), now);
        assert_eq!(
            out,
            RequestOutcome::Ignored(IgnoreReason::StaleNonce { kind: ResourceKind::Cluster, nonce: first })
        );
        assert_eq!(s.acked_version(ResourceKind::Cluster), Some("v1"), "stale ACK changed nothing");
        let out = s.on_request(&req(ResourceKind::Cluster, "999", None), now);
        assert!(matches!(out, RequestOutcome::Ignored(IgnoreReason::StaleNonce { .. })));
    }

    #[test]
    fn unknown_type_is_ignored() {
        let mut s = StreamState::new(BACKOFF);
        let r = RequestView { type_url: "type.googleapis.com/foo.Bar".into(), ..Default::default() };
        assert_eq!(
            s.on_request(&r, Instant::now()),
            RequestOutcome::Ignored(IgnoreReason::UnknownType("type.googleapis.com/foo.Bar".into()))
        );
    }

    #[test]
    fn nonces_increase_monotonically() {
        let (mut s, now) = subscribed(ResourceKind::Cluster);
        let mut last = 0u64;
        for i in 0..5 {
            let n: u64 = s.record_sent(ResourceKind::Cluster, &format!("v{i}")).parse().unwrap();
            assert!(n > last);
            last = n;
            s.on_request(&req(ResourceKind::Cluster, &n.to_string(), None), now);
        }
    }

    #[test]
    fn unsubscribed_types_are_not_sent() {
        let s = StreamState::new(BACKOFF);
        assert_eq!(s.decide(ResourceKind::Endpoint, "v1", Instant::now()), SendDecision::Skip);
    }

    #[test]
    fn reconnecting_envoy_with_current_version_gets_nothing() {
        let mut s = StreamState::new(BACKOFF);
        let r = RequestView {
            type_url: ResourceKind::Cluster.type_url().into(),
            version_info: "v7".into(),
            ..Default::default()
        };
        s.on_request(&r, Instant::now());
        assert_eq!(s.decide(ResourceKind::Cluster, "v7", Instant::now()), SendDecision::Skip);
        assert_eq!(s.decide(ResourceKind::Cluster, "v8", Instant::now()), SendDecision::Send);
    }

    #[test]
    fn listeners_wait_for_clusters_in_flight() {
        let mut s = StreamState::new(BACKOFF);
        let now = Instant::now();
        s.on_request(&req(ResourceKind::Cluster, "", None), now);
        s.on_request(&req(ResourceKind::Listener, "", None), now);
        let cds = s.record_sent(ResourceKind::Cluster, "c1");
        assert_eq!(s.decide(ResourceKind::Listener, "l1", now), SendDecision::Skip);
        s.on_request(&req(ResourceKind::Cluster, &cds, None), now);
        assert_eq!(s.decide(ResourceKind::Listener, "l1", now), SendDecision::Send);
    }

    #[test]
    fn eds_is_resent_after_cds_and_on_new_names() {
        let mut s = StreamState::new(BACKOFF);
        let now = Instant::now();
        let eds = |names: &[&str], nonce: &str| RequestView {
            type_url: ResourceKind::Endpoint.type_url().into(),
            response_nonce: nonce.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        s.on_request(&req(ResourceKind::Cluster, "", None), now);
        s.on_request(&eds(&["a"], ""), now);
        let n1 = s.record_sent(ResourceKind::Endpoint, "e1");
        s.on_request(&eds(&["a"], &n1), now);
        assert_eq!(s.decide(ResourceKind::Endpoint, "e1", now), SendDecision::Skip);
        // Same nonce again with a new name: Envoy wants endpoints of a new cluster.
        assert_eq!(s.on_request(&eds(&["a", "b"], &n1), now), RequestOutcome::Resubscribed(ResourceKind::Endpoint));
        assert_eq!(s.decide(ResourceKind::Endpoint, "e1", now), SendDecision::Send);
        let n2 = s.record_sent(ResourceKind::Endpoint, "e1");
        s.on_request(&eds(&["a", "b"], &n2), now);
        assert_eq!(s.decide(ResourceKind::Endpoint, "e1", now), SendDecision::Skip);
        s.record_sent(ResourceKind::Cluster, "c1");
        assert_eq!(s.decide(ResourceKind::Endpoint, "e1", now), SendDecision::Send, "clusters re-warm after CDS");
    }
}
