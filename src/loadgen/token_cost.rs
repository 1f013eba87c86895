//! What dataplane tokens cost the DP server, measured in this process on higuma's own code:
//! issuing a token (RS256 signing), a stream's first check (signature verification, key and
//! revocation lookups, one hop to the auth thread), a repeated check of a token already
//! verified (the LRU cache), and the per-request check every DiscoveryRequest pays once its
//! stream is granted ([`Grant::holds`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use crate::config::DpAuthn;
use crate::model::{rest, ResourceKey, ResourceType};
use crate::store::{MemoryStore, SharedStore};
use crate::tokens::dataplane::{self, Identity, DEFAULT_VALID_FOR};
use crate::xds::auth::Authenticator;

/// Tokens issued and first-checked: RSA dominates, a few dozen average it well.
const DISTINCT_TOKENS: u32 = 50;
const CACHED_CHECKS: u32 = 2_000;
const GRANT_CHECKS: u32 = 1_000_000;

fn micros(started: Instant, n: u32) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

pub fn measure() -> Value {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let Ok(mesh) = rest::from_json(json!({"type": "Mesh", "name": "default"})) else {
        return json!({"error": "mesh"});
    };
    if store.create("", "default", mesh.spec).is_err() {
        return json!({"error": "mesh"});
    }
    let auth = Authenticator::start(DpAuthn::DpToken, store.clone());
    let node = |i: u32| ResourceKey::new(ResourceType::Dataplane, "default", format!("dp-{i}"));
    // The signing key is made with the first token: keep that out of the figure.
    let issue = |i: u32| {
        let id = Identity { mesh: "default".into(), name: format!("dp-{i}"), ..Default::default() };
        dataplane::issue(&*store, &id, DEFAULT_VALID_FOR, SystemTime::now())
    };
    let Ok(warm) = issue(DISTINCT_TOKENS) else { return json!({"error": "issue"}) };
    let started = Instant::now();
    let tokens: Result<Vec<String>, _> = (0..DISTINCT_TOKENS).map(issue).collect();
    let issue_us = micros(started, DISTINCT_TOKENS);
    let Ok(tokens) = tokens else { return json!({"error": "issue"}) };
    let check = |token: &str, i: u32| futures::executor::block_on(auth.authenticate(Some(token), &node(i)));
    if check(&warm, DISTINCT_TOKENS).is_err() {
        return json!({"error": "first check refused"});
    }
    let started = Instant::now();
    let granted = tokens.iter().zip(0..).filter(|(t, i)| check(t, *i).is_ok()).count();
    let first_us = micros(started, DISTINCT_TOKENS);
    let started = Instant::now();
    let cached = (0..CACHED_CHECKS).filter(|_| check(&tokens[0], 0).is_ok()).count();
    let cached_us = micros(started, CACHED_CHECKS);
    let Ok(grant) = check(&tokens[0], 0) else { return json!({"error": "grant"}) };
    let started = Instant::now();
    let held = (0..GRANT_CHECKS).filter(|_| grant.holds(SystemTime::now())).count();
    let per_request_us = micros(started, GRANT_CHECKS);
    auth.stop();
    json!({
        "issue_us": issue_us,
        "first_check_us": first_us,
        "cached_check_us": cached_us,
        "per_request_us": per_request_us,
        // Every check above must have succeeded for its figure to mean anything.
        "all_granted": granted == tokens.len() && cached == CACHED_CHECKS as usize && held == GRANT_CHECKS as usize,
    })
}
