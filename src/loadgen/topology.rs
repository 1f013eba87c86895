//! The benchmark's mesh: S services with K instances each (N = S×K dataplanes), every
//! dataplane with one inbound and O outbounds to other services picked with a seeded RNG,
//! a mix of HTTP and TCP services. Same seed, same mesh.

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
pub struct Topology {
    pub services: usize,
    pub instances: usize,
    pub outbounds: usize,
    pub seed: u64,
    /// Every `http_every`-th service speaks HTTP; the rest TCP.
    pub http_every: usize,
}

#[derive(Clone, Debug)]
pub struct DataplaneDef {
    pub name: String,
    pub service: String,
    pub address: String,
    pub http: bool,
    pub outbounds: Vec<String>,
}

pub fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

impl Topology {
    pub fn size(&self) -> usize {
        self.services * self.instances
    }

    pub fn dataplanes(&self) -> Vec<DataplaneDef> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut out = Vec::with_capacity(self.size());
        for s in 0..self.services {
            for k in 0..self.instances {
                let i = s * self.instances + k;
                let mut outbounds = Vec::with_capacity(self.outbounds);
                while outbounds.len() < self.outbounds.min(self.services.saturating_sub(1)) {
                    let t = rng.usize(..self.services);
                    let name = service_name(t);
                    if t != s && !outbounds.contains(&name) {
                        outbounds.push(name);
                    }
                }
                outbounds.sort();
                out.push(DataplaneDef {
                    name: format!("{}-{k}", service_name(s)),
                    service: service_name(s),
                    // Never contacted: the benchmark's Envoys are simulated.
                    address: format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
                    http: self.http_every > 0 && s % self.http_every == 0,
                    outbounds,
                });
            }
        }
        out
    }
}

/// Of the services, which get a MeshHealthCheck (every 10th) and a MeshHTTPRoute (every 20th
/// HTTP one): the realistic mix the policy-engine issue asks the benchmark to carry.
const HEALTH_CHECK_EVERY: usize = 10;
const HTTP_ROUTE_EVERY: usize = 20;

impl Topology {
    /// A realistic policy mix for the whole mesh: mesh-wide MeshTimeout, MeshRetry and
    /// MeshCircuitBreaker, a MeshHealthCheck on 10 % of the services and a MeshHTTPRoute on
    /// 5 % (HTTP services only, an `/api` prefix rule next to the catch-all).
    pub fn policy_mix(&self) -> Vec<Value> {
        let mesh = json!({"kind": "Mesh"});
        let mut out = vec![
            json!({"type": "MeshTimeout", "mesh": "default", "name": "bench-timeout-all", "spec": {
                "targetRef": mesh, "to": [{"targetRef": mesh, "default": {
                    "connectionTimeout": "5s", "idleTimeout": "1h",
                    "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"}}}]}}),
            json!({"type": "MeshRetry", "mesh": "default", "name": "bench-retry-all", "spec": {
                "targetRef": mesh, "to": [{"targetRef": mesh, "default": {
                    "tcp": {"maxConnectAttempt": 5},
                    "http": {"numRetries": 5, "perTryTimeout": "16s", "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}}}}]}}),
            json!({"type": "MeshCircuitBreaker", "mesh": "default", "name": "bench-circuit-breaker-all", "spec": {
                "targetRef": mesh, "to": [{"targetRef": mesh, "default": {
                    "connectionLimits": {"maxConnections": 1024, "maxPendingRequests": 1024, "maxRequests": 1024, "maxRetries": 3}}}]}}),
        ];
        for s in 0..self.services {
            let svc = service_name(s);
            if s % HEALTH_CHECK_EVERY == 0 {
                out.push(
                    json!({"type": "MeshHealthCheck", "mesh": "default", "name": format!("bench-hc-{svc}"), "spec": {
                    "targetRef": mesh, "to": [{"targetRef": {"kind": "MeshService", "name": svc}, "default": {
                        "interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1,
                        "tcp": {}}}]}}),
                );
            }
            let http = self.http_every > 0 && s % self.http_every == 0;
            if http && s % HTTP_ROUTE_EVERY == 0 {
                out.push(
                    json!({"type": "MeshHTTPRoute", "mesh": "default", "name": format!("bench-route-{svc}"), "spec": {
                    "targetRef": mesh, "to": [{"targetRef": {"kind": "MeshService", "name": svc}, "rules": [{
                        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                        "default": {"backendRefs": [{"kind": "MeshService", "name": svc, "weight": 100}]}}]}]}}),
                );
            }
        }
        out
    }
}

impl DataplaneDef {
    pub fn to_json(&self) -> Value {
        let mut inbound_tags = json!({"kuma.io/service": self.service});
        if self.http {
            inbound_tags["kuma.io/protocol"] = json!("http");
        }
        let outbound: Vec<Value> = self
            .outbounds
            .iter()
            .enumerate()
            .map(|(j, svc)| json!({"port": 20000 + j, "tags": {"kuma.io/service": svc}}))
            .collect();
        json!({
            "type": "Dataplane", "mesh": "default", "name": self.name,
            "networking": {
                "address": self.address,
                "inbound": [{"port": 8080, "servicePort": 8081, "tags": inbound_tags}],
                "outbound": outbound
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_well_formed() {
        let t = Topology { services: 20, instances: 3, outbounds: 5, seed: 7, http_every: 2 };
        let a = t.dataplanes();
        let b = t.dataplanes();
        assert_eq!(a.len(), 60);
        assert_eq!(
            a.iter().map(|d| &d.outbounds).collect::<Vec<_>>(),
            b.iter().map(|d| &d.outbounds).collect::<Vec<_>>()
        );
        for d in &a {
            assert_eq!(d.outbounds.len(), 5);
            assert!(!d.outbounds.contains(&d.service));
            crate::model::rest::from_json(d.to_json()).expect("valid Dataplane");
        }
        assert!(a.iter().any(|d| d.http) && a.iter().any(|d| !d.http));
    }
}
