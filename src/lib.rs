//! Higuma: a Kuma-compatible service-mesh control plane for Universal deployments.
//!
//! A synchronous daemon built from thread pools; no async runtime in this crate's own code.
//!
//! Map of the modules, in the order data flows through them:
//!
//! | module        | concern                                                                  |
//! |---------------|--------------------------------------------------------------------------|
//! | [`config`]    | `higuma.yaml` + `KUMA_*` env: defaults < file < env, validation, masking  |
//! | [`model`]     | Kuma's resources (Mesh, Dataplane, policies, insights), REST envelope,    |
//! |               | validation that names the offending field                                |
//! | [`policies`]  | one folder per policy type, the engine core (targetRef rules, old-style   |
//! |               | ranking), resolved confs that generators read                            |
//! | [`store`]     | the `ResourceStore` trait, change events, the in-memory backend           |
//! | [`cache`]     | sharded TTL cache with per-key fetch sharing (Kuma's cached read path)   |
//! | [`envoy`]     | the Envoy v3 API subset we serve, generated from `proto/` at build time  |
//! | [`xds`]       | ADS server glue, stream state machine, generators, encoded snapshots     |
//! | [`reconcile`] | the reconciler: timer wheel of due dataplanes, worker pool, status       |
//! | [`http`]      | the small synchronous HTTP/1.1 server the API and diagnostics share:     |
//! |               | TLS (OpenSSL), size limits, slow-client time-outs, bounded backlog       |
//! | [`api`]       | the REST API on 5681 (HTTP) and 5682 (HTTPS), Kuma's paths and errors;    |
//! |               | user tokens, localhost-is-admin and `access.static` (`api::authn`)        |
//! | [`dpserver`]  | the DP server on 5678: TLS front end, `/bootstrap`, routing to ADS        |
//! | [`diagnostics`] | `/healthy`, `/ready`, `/metrics`, pprof CPU profiles on port 5680     |
//! | [`leader`]    | leader election on Postgres (Kuma's `kuma-cp-lock` lease) and the        |
//! |               | leader-only jobs: defaults, dataplane GC, subscription finalizer         |
//! | [`daemon`]    | `higuma run`: wires config, store and servers; shutdown                  |
//! | `cli` (binary) | the `higuma` command line (run, config, apply, get, delete, inspect),  |
//! |               | in the binary crate: the only place `anyhow` is used                     |
//! | [`loadgen`]   | the benchmark harness behind `higuma-load` (fleet over TLS, token costs) |
//! | [`tls`]       | TLS settings, the generated CA and certificate, reloadable acceptors     |
//! | [`tokens`]    | dataplane tokens: RS256 JWTs, per-mesh signing keys, revocations         |
//! | [`logsafe`]   | client-supplied values made safe to log; per-peer log rate limiting      |
//! | [`clock`]     | injectable time; `ManualClock` tests timers and TTLs without sleeps      |
//! | [`threads`]   | every thread-name prefix, so `top -H` tells which pool is busy            |

pub mod api;
pub mod cache;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod diagnostics;
pub mod dpserver;
pub mod envoy;
pub mod http;
pub mod leader;
pub mod loadgen;
pub mod logsafe;
pub mod model;
pub mod mtls;
pub mod policies;
pub mod reconcile;
pub mod store;
pub mod threads;
pub mod tls;
pub mod tokens;
pub mod xds;
