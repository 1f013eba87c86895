//! `GET /control-plane/status`: the instance the API runs on, its store's health and its
//! change tracking, for operators and the GUI's control-plane page (the config in force is
//! `GET /config`, with secrets masked).

use serde_json::json;

use super::{ApiContext, Reply};

pub fn status(ctx: &ApiContext) -> Reply {
    let config = ctx.config();
    // A ping reads nothing; a store that cannot answer it is what `/ready` reports too.
    let store = match ctx.store.ping() {
        Ok(()) => json!({"type": ctx.store.backend(), "healthy": true}),
        Err(e) => json!({"type": ctx.store.backend(), "healthy": false, "error": e.to_string()}),
    };
    let changes = ctx.changes.as_ref().map(|c| {
        json!({
            "kept": c.list(|_| true).len(),
            "capacity": c.capacity(),
            "undelivered": c.undelivered(),
        })
    });
    Reply::json(
        200,
        json!({
            "instanceId": ctx.instance_id,
            "product": "Higuma",
            "version": env!("CARGO_PKG_VERSION"),
            "mode": config.mode,
            "store": store,
            // Every instance serves its own dataplanes and writes through the shared store;
            // nothing in higuma needs a leader.
            "leader": {"elected": false, "reason": "higuma has no leader election: every instance is active"},
            "changes": changes,
        }),
    )
}
