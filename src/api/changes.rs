//! Change delivery over the API: every accepted PUT or DELETE answers with its change id in
//! [`CHANGE_ID_HEADER`]; `GET /changes/{id}` says which dataplanes the write affected and
//! where each one's delivery stands, `GET /changes?mesh=…` lists the recent ones (newest
//! first). The bookkeeping is the reconciler's ([`crate::reconcile::changes`]); counts and
//! latency percentiles are computed here, on read.
//!
//! Ids belong to the instance that took the write and to its current run. Writes that came
//! from elsewhere (another instance, over Postgres NOTIFY, or the control plane itself) show
//! as changes of origin `store` when they reached a dataplane connected here; a dataplane
//! connected to another instance shows as `notConnected`, with `connectedTo` naming that
//! instance (whose own `/changes` tracks it).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::authn::{Authz, User};
use super::resources::page;
use super::{ApiContext, ApiError, Reply, Request};
use crate::model::rest::format_time;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::reconcile::changes::{Change, ChangeLog, Delivery};
use crate::store::{Operation, StoreError};

/// The response header carrying a write's change id.
pub const CHANGE_ID_HEADER: &str = "Higuma-Change-Id";

/// A write announced to the change log, between announcing and running it.
pub struct Announced {
    log: Option<Arc<ChangeLog>>,
    seq: u64,
}

impl Announced {
    pub fn new(ctx: &ApiContext, key: &ResourceKey, op: Operation) -> Announced {
        match &ctx.changes {
            Some(log) => Announced { seq: log.announce(key, op), log: Some(log.clone()) },
            None => Announced { log: None, seq: 0 },
        }
    }

    /// The change id of a write that happened; a failed write is withdrawn.
    pub fn finish(self, written: bool) -> Option<String> {
        let log = self.log?;
        if written {
            Some(log.id(self.seq))
        } else {
            log.withdraw(self.seq);
            None
        }
    }

    pub fn reply(reply: Reply, id: Option<String>) -> Reply {
        match id {
            Some(id) => reply.with_header(CHANGE_ID_HEADER, id),
            None => reply,
        }
    }
}

fn log_of(ctx: &ApiContext) -> Result<&Arc<ChangeLog>, ApiError> {
    ctx.changes.as_ref().ok_or_else(|| ApiError::not_found("this API runs without change tracking"))
}

/// Changes of types the user may not read (secrets) are not shown to them.
fn visible(config: &crate::config::Config, user: &User, c: &Change) -> bool {
    Authz { config, user }.resource("GET", c.key.rtype).is_ok()
}

/// `GET /changes?mesh=M` (all meshes without it), paged as Kuma's lists.
pub fn list(ctx: &ApiContext, req: &Request, user: &User) -> Result<Reply, ApiError> {
    let log = log_of(ctx)?;
    let config = ctx.config();
    let mesh = req.query_param("mesh").filter(|m| !m.is_empty());
    let items: Vec<Value> = log
        .list(|c| mesh.is_none_or(|m| c.mesh() == m) && visible(&config, user, c))
        .iter()
        .map(|c| change_json(ctx, log, c, false))
        .collect();
    page(req, items)
}

/// `GET /changes/{id}`.
pub fn one(ctx: &ApiContext, id: &str, user: &User) -> Result<Reply, ApiError> {
    let log = log_of(ctx)?;
    let not_found = || {
        ApiError::not_found(format!(
            "no change {id:?} on control-plane instance {}: ids are per instance and run, and only the latest {} are kept (xdsServer.changeHistorySize), fewer when they affected over {} dataplanes in all",
            ctx.instance_id,
            log.capacity(),
            crate::reconcile::changes::MAX_TRACKED_DELIVERIES
        ))
    };
    let change = log.parse_id(id).and_then(|seq| log.get(seq)).ok_or_else(not_found)?;
    if !visible(&ctx.config(), user, &change) {
        return Err(not_found());
    }
    let mut body = change_json(ctx, log, &change, true);
    annotate_elsewhere(ctx, &change, &mut body)?;
    Ok(Reply::json(200, body))
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
    }
}

fn millis(d: Duration) -> Value {
    // Microsecond precision is plenty for a delivery and keeps the numbers short.
    json!((d.as_micros() as f64) / 1000.0)
}

fn change_json(ctx: &ApiContext, log: &ChangeLog, c: &Change, with_dataplanes: bool) -> Value {
    let counts: serde_json::Map<String, Value> =
        Delivery::ALL.iter().map(|s| (s.as_str().to_string(), json!(c.count(*s)))).collect();
    let delivered =
        c.complete() && c.dataplanes.iter().all(|d| matches!(d.state, Delivery::Acked | Delivery::UpToDate));
    let latency = match (c.latency_quantile(0.5), c.latency_quantile(0.99), c.latency_quantile(1.0)) {
        (Some(p50), Some(p99), Some(max)) => json!({"p50Ms": millis(p50), "p99Ms": millis(p99), "maxMs": millis(max)}),
        _ => Value::Null,
    };
    let mut resource = json!({"type": c.key.rtype.name(), "name": c.key.name});
    if !c.key.rtype.is_global() {
        resource["mesh"] = json!(c.key.mesh);
    }
    let mut body = json!({
        "id": log.id(c.seq),
        "instance": ctx.instance_id,
        "origin": c.origin.as_str(),
        "operation": op_name(c.op),
        "resource": resource,
        "mesh": c.mesh(),
        "time": format_time(c.time),
        "observed": c.observed,
        "complete": c.complete(),
        "delivered": delivered,
        "affected": c.dataplanes.len(),
        "counts": counts,
        "latency": latency,
    });
    if with_dataplanes {
        let dataplanes: Vec<Value> = c
            .dataplanes
            .iter()
            .map(|d| {
                let mut v = json!({"name": d.name, "state": d.state.as_str()});
                if let Some(detail) = d.detail() {
                    v[if d.state == Delivery::Nacked { "error" } else { "detail" }] = json!(detail);
                }
                if let Some(kind) = d.rejected {
                    v["typeUrl"] = json!(kind.type_url());
                }
                if let Some(l) = d.latency {
                    v["latencyMs"] = millis(l);
                }
                v
            })
            .collect();
        body["dataplanes"] = Value::Array(dataplanes);
    }
    body
}

/// For each `notConnected` dataplane, the instance its DataplaneInsight says it is
/// connected to, if another one (a store read per such dataplane; reads only).
fn annotate_elsewhere(ctx: &ApiContext, c: &Change, body: &mut Value) -> Result<(), ApiError> {
    let Some(items) = body["dataplanes"].as_array_mut() else { return Ok(()) };
    for (item, d) in items.iter_mut().zip(&c.dataplanes) {
        if d.state != Delivery::NotConnected {
            continue;
        }
        let key = ResourceKey::new(ResourceType::DataplaneInsight, c.mesh(), &d.name);
        let insight = match ctx.store.get(&key) {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let Spec::DataplaneInsight(spec) = &insight.spec else { continue };
        let online = spec.subscriptions.iter().rev().find(|s| s.disconnect_time.is_none());
        if let Some(s) = online.filter(|s| s.control_plane_instance_id != ctx.instance_id) {
            item["connectedTo"] = json!(s.control_plane_instance_id);
        }
    }
    Ok(())
}
