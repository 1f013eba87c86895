//! Structure-aware fuzz targets for every input the control plane takes, on stable Rust
//! (proptest: generation, shrinking to a minimal failing input, deterministic seeds).
//!
//! Each target draws a vector of choices and a small interpreter turns it into an input
//! that is mostly well-formed (so it gets past parsing into validation, storage and
//! generation) with a few wrong parts; proptest shrinks the choices on a failure. The
//! oracles: no panic anywhere (the test thread, the API handler, the reconciler's
//! threads), no 500 for bad input, and round trips where they exist.
//!
//! | target | input | path |
//! |---|---|---|
//! | `rest_bodies` | PUT bodies of every type in `ResourceType::ALL` (fields learned from each type's decoder) | router → validation → store → reconciler (policy engine, generators) |
//! | `raw_http` | request bytes: request line, headers, framing, bodies, pipelining | `http::conn` parser → router |
//! | `config` | YAML files from the defaults tree, mutated, plus `KUMA_*` env values | `config::load` |
//! | `jwt` | user tokens: signed with arbitrary claims, mutated, garbage; `Authorization` headers | `UserTokens::validate`, router |
//! | `xds_stream` | DiscoveryRequest sequences | `xds::stream::StreamState` |
//! | `xds_reconciler` | DiscoveryRequests (node, metadata, type URLs, names, nonces, error details) on several streams | `Reconciler` (dispatcher, workers) |
//! | `bootstrap` | `POST /bootstrap` bodies in kuma-dp's shape | router → bootstrap |
//!
//! Cases per target in the suite are the `CASES_*` constants; `HIGUMA_FUZZ_SECONDS=N`
//! (see `scripts/fuzz.sh`) instead runs each target for N seconds with fresh seeds, and
//! `HIGUMA_FUZZ_SEED="<the 32 bytes a failure printed>"` replays a failure.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once, RwLock};
use std::time::{Duration, Instant};

use higuma::api::authn::{tokens, UserTokens};
use higuma::api::{router, ApiContext, Request};
use higuma::config::Config;
use higuma::envoy::discovery::{DiscoveryRequest, DiscoveryResponse};
use higuma::model::{rest, ResourceType};
use higuma::reconcile::{Reconciler, Settings};
use higuma::store::{MemoryStore, SharedStore};
use higuma::xds::resource_kind::ResourceKind;
use higuma::xds::server::StreamHub;
use higuma::xds::stream::{RequestOutcome, RequestView, SendDecision, StreamState};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Map, Value};

const CASES_REST: u32 = 3000;
const CASES_RAW_HTTP: u32 = 4000;
const CASES_CONFIG: u32 = 600;
const CASES_JWT: u32 = 1000;
const CASES_XDS_STREAM: u32 = 10000;
const CASES_XDS_RECONCILER: u32 = 500;
const CASES_BOOTSTRAP: u32 = 3000;

// ---- harness -----------------------------------------------------------------------------

/// Outcomes per target, printed at the end: a target whose inputs all fail at the first
/// check explores nothing, and this shows it.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, what: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(what.into()).or_default() += 1;
    }

    fn print(&self, target: &str) {
        eprintln!("fuzz {target} outcomes: {:?}", self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn get(&self, what: &str) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(what).copied().unwrap_or(0)
    }
}

/// A panic on one of the control plane's own threads (reconciler, HTTP workers) does not
/// fail the test thread: the hook records it and each case checks.
static BACKGROUND_PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            if ["xds-", "api-", "diagnostics", "http"].iter().any(|p| thread.starts_with(p)) {
                let mut slot = BACKGROUND_PANIC.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("{thread}: {info}"));
            }
            previous(info);
        }));
    });
}

fn background_panic() -> Result<(), TestCaseError> {
    match BACKGROUND_PANIC.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        Some(p) => Err(TestCaseError::fail(format!("a control-plane thread panicked: {p}"))),
        None => Ok(()),
    }
}

/// Runs `test` for `cases` generated inputs (or for `HIGUMA_FUZZ_SECONDS`).
fn fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    install_panic_hook();
    let seconds: Option<u64> = std::env::var("HIGUMA_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok());
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let mut total = 0u64;
    let mut round = 0u64;
    loop {
        // Fixed seeds in the suite (a failure reproduces), fresh ones in long runs.
        let replay: Option<[u8; 32]> = std::env::var("HIGUMA_FUZZ_SEED").ok().and_then(|hex| {
            let bytes: Vec<u8> = hex
                .split(|c: char| !c.is_ascii_hexdigit())
                .filter(|s| !s.is_empty())
                .filter_map(|b| u8::from_str_radix(b, 16).ok())
                .collect();
            bytes.try_into().ok()
        });
        let seed: [u8; 32] = if let Some(seed) = replay {
            seed
        } else if deadline.is_some() {
            std::array::from_fn(|_| fastrand::u8(..))
        } else {
            let mut s = [0u8; 32];
            for (i, b) in name.bytes().chain(round.to_le_bytes()).enumerate() {
                s[i % 32] ^= b;
            }
            s
        };
        let config = PtConfig { cases, failure_persistence: None, max_shrink_iters: 2000, ..PtConfig::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed (seed {seed:02x?}): {e}");
        }
        total += u64::from(cases);
        round += 1;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!("fuzz {name}: {total} cases in {:.1?}", started.elapsed());
}

/// Choices drawn by proptest, read by the generators below; past the end every choice is
/// 0, the simplest option, which is what shrinking moves towards.
struct Choices<'a> {
    data: &'a [u32],
    pos: usize,
}

impl<'a> Choices<'a> {
    fn new(data: &'a [u32]) -> Self {
        Choices { data, pos: 0 }
    }

    fn below(&mut self, n: usize) -> usize {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        if n == 0 {
            0
        } else {
            v as usize % n
        }
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    fn raw(&mut self) -> u32 {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }
}

fn choices(max: usize) -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(any::<u32>(), 0..max)
}

/// Strings that have broken parsers before: empty, long, control and bidi characters,
/// non-ASCII, path and template syntax, numbers and durations at their edges.
const NASTY_STRINGS: &[&str] = &[
    "",
    " ",
    "default",
    "*",
    "kuma.io/service",
    "kuma.io/protocol",
    "http",
    "tcp",
    "grpc",
    "web",
    "backend",
    "5s",
    "0s",
    "-1s",
    "1h30m",
    "9999999999999h",
    "3000000000000000h",
    "2562048h",
    "1e400s",
    "10.0.0.1",
    "::1",
    "127.0.0.1",
    "0.0.0.0/0",
    "a.b",
    "/",
    "..",
    "%00",
    "\u{0}",
    "\u{202e}rtl",
    "日本語",
    "\r\nX-Injected: 1",
    "{{ .Name }}",
    "Mesh",
    "MeshService",
    "MeshSubset",
    "MeshHTTPRoute",
    "Dataplane",
    "TLSv1_2",
    "null",
    "true",
    "18446744073709551616",
    "-9223372036854775809",
];

fn nasty_string(c: &mut Choices<'_>) -> String {
    match c.below(10) {
        0 => "x".repeat(c.below(5000)),
        1 => (0..c.below(12)).map(|_| char::from_u32(c.raw() % 0x11_0000).unwrap_or('?')).collect(),
        _ => c.pick(NASTY_STRINGS).to_string(),
    }
}

fn nasty_number(c: &mut Choices<'_>) -> Value {
    match c.below(12) {
        0 => json!(0),
        1 => json!(1),
        2 => json!(-1),
        3 => json!(65535),
        4 => json!(65536),
        5 => json!(u64::MAX),
        6 => json!(i64::MIN),
        7 => json!(1.5),
        8 => json!(-0.0),
        9 => json!(1e308),
        10 => json!(4_294_967_296u64),
        _ => json!(c.raw()),
    }
}

/// Any JSON value, depth-limited.
fn any_json(c: &mut Choices<'_>, depth: usize) -> Value {
    match c.below(if depth == 0 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(c.chance(50)),
        2 => nasty_number(c),
        3 => Value::String(nasty_string(c)),
        4 => Value::Array((0..c.below(4)).map(|_| any_json(c, depth - 1)).collect()),
        _ => Value::Object((0..c.below(4)).map(|_| (nasty_string(c), any_json(c, depth - 1))).collect()),
    }
}

// ---- schemas learned from the decoders ---------------------------------------------------

/// The shape of a spec as its decoder reveals it.
#[derive(Debug, Clone)]
enum Shape {
    Object(BTreeMap<String, Shape>),
    List(Box<Shape>),
    /// A string enum and its variants.
    Enum(Vec<String>),
    /// Anything else; the kinds of value its decoder accepts (none known: any value).
    Leaf(Kinds),
}

#[derive(Debug, Clone, Copy, Default)]
struct Kinds {
    string: bool,
    /// Takes "5s" but not "web".
    duration: bool,
    /// Takes only base64 text.
    base64: bool,
    number: bool,
    boolean: bool,
    map: bool,
    string_list: bool,
    number_list: bool,
}

const PROBE: &str = "__fuzz_probe";
/// A leaf of unknown kind: any value.
static ANY_LEAF: Shape = Shape::Leaf(Kinds {
    string: false,
    duration: false,
    base64: false,
    number: false,
    boolean: false,
    map: false,
    string_list: false,
    number_list: false,
});

/// The names serde lists in "unknown field `x`, expected one of `a`, `b`" (also variants).
fn expected_names(message: &str) -> Option<Vec<String>> {
    let rest = message.split_once("expected")?.1;
    let names: Vec<String> = rest.split('`').skip(1).step_by(2).map(str::to_string).collect();
    (!names.is_empty()).then_some(names)
}

/// Decodes a spec (no semantic validation) and returns the first violation's reason.
fn decode_error(rtype: ResourceType, spec: Value) -> Option<String> {
    higuma::model::Spec::from_json(rtype, spec)
        .err()
        .map(|e| e.violations.first().map(|v| v.reason.clone()).unwrap_or_default())
}

fn envelope(rtype: ResourceType, spec: Value) -> Value {
    let mut doc = match rtype.envelope() {
        higuma::model::types::Envelope::Flat => match spec {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        higuma::model::types::Envelope::Spec => {
            let mut m = Map::new();
            m.insert("spec".into(), spec);
            m
        }
    };
    doc.insert("type".into(), Value::from(rtype.name()));
    doc.insert("name".into(), Value::from("probe"));
    if !rtype.is_global() {
        doc.insert("mesh".into(), Value::from("default"));
    }
    Value::Object(doc)
}

/// Sets `value` at `path` inside `root` (objects and single-element lists).
fn put_at(root: &mut Value, path: &[Step], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return;
    };
    match first {
        Step::Key(k) => {
            if !root.is_object() {
                *root = Value::Object(Map::new());
            }
            if let Value::Object(m) = root {
                put_at(m.entry(k.clone()).or_insert(Value::Null), rest, value);
            }
        }
        Step::Item => {
            let mut item = Value::Null;
            put_at(&mut item, rest, value);
            *root = Value::Array(vec![item]);
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Item,
}

fn learn(rtype: ResourceType, path: &mut Vec<Step>, depth: usize) -> Shape {
    let probe = |value: Value, path: &[Step]| {
        let mut spec = Value::Object(Map::new());
        put_at(&mut spec, path, value);
        decode_error(rtype, spec)
    };
    if depth > 0 {
        if let Some(reason) = probe(json!({ PROBE: 1 }), path) {
            if reason.contains(PROBE) {
                let mut fields = BTreeMap::new();
                for name in expected_names(&reason).unwrap_or_default() {
                    path.push(Step::Key(name.clone()));
                    fields.insert(name, learn(rtype, path, depth - 1));
                    path.pop();
                }
                return Shape::Object(fields);
            }
        }
        if let Some(reason) = probe(json!([{ PROBE: 1 }]), path) {
            if reason.contains(PROBE) {
                path.push(Step::Item);
                let item = learn(rtype, path, depth - 1);
                path.pop();
                return Shape::List(Box::new(item));
            }
        }
    }
    if let Some(reason) = probe(Value::from(PROBE), path) {
        if reason.contains("variant") {
            if let Some(variants) = expected_names(&reason) {
                return Shape::Enum(variants);
            }
        }
    }
    let string = probe(json!("web"), path).is_none();
    Shape::Leaf(Kinds {
        string,
        duration: !string && probe(json!("5s"), path).is_none(),
        base64: !string && probe(json!("aGVsbG8="), path).is_none(),
        number: probe(json!(80), path).is_none(),
        boolean: probe(json!(true), path).is_none(),
        map: probe(json!({"kuma.io/service": "web"}), path).is_none(),
        string_list: probe(json!(["GET"]), path).is_none(),
        number_list: probe(json!([500]), path).is_none(),
    })
}

/// Every type's spec shape, learned once.
fn schemas() -> &'static Vec<(ResourceType, Shape)> {
    static SCHEMAS: std::sync::OnceLock<Vec<(ResourceType, Shape)>> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| ResourceType::ALL.iter().map(|t| (*t, learn(*t, &mut Vec::new(), 7))).collect())
}

/// A plausible value for a field named `name` accepting `kinds`.
fn plausible(name: &str, kinds: Kinds, c: &mut Choices<'_>) -> Option<Value> {
    let lower = name.to_ascii_lowercase();
    let mut options: Vec<Value> = Vec::new();
    if kinds.number {
        options.push(json!(*c.pick(&[1, 3, 5, 10, 80, 100, 8080, 9901, 15001])));
    }
    if kinds.base64 {
        options.push(Value::from(c.pick(&["aGVsbG8=", "AA==", "c2VjcmV0"]).to_string()));
    }
    if kinds.duration {
        options.push(Value::from(c.pick(&["5s", "1s", "100ms", "1m"]).to_string()));
    }
    if kinds.string_list {
        options.push(json!([c.pick(&["GET", "5xx", "connect_failure", "web", "http"]).to_string()]));
    }
    if kinds.number_list {
        options.push(json!([*c.pick(&[200, 500, 503])]));
    }
    if kinds.string {
        let s = if lower.contains("timeout")
            || lower.contains("interval")
            || lower.contains("time")
            || lower.contains("duration")
        {
            c.pick(&["5s", "1s", "100ms", "1m"]).to_string()
        } else if lower.contains("address") {
            "127.0.0.1".to_string()
        } else if lower.contains("port") {
            "8080".to_string()
        } else {
            c.pick(&["web", "backend", "*", "http", "default", "10%", "50"]).to_string()
        };
        options.push(Value::from(s));
    }
    if kinds.boolean {
        options.push(Value::Bool(c.chance(50)));
    }
    if kinds.map {
        options.push(json!({"kuma.io/service": c.pick(&["web", "backend", "*"]).to_string()}));
    }
    if options.is_empty() {
        return None;
    }
    let i = c.below(options.len());
    Some(options.swap_remove(i))
}

/// A document for `shape`. `careful` draws only values the decoders accept (so most
/// documents reach semantic validation and many are stored); otherwise anything goes.
fn from_shape(shape: &Shape, c: &mut Choices<'_>, depth: usize, careful: bool, name: &str) -> Value {
    if !careful && c.chance(4) {
        return any_json(c, 2);
    }
    match shape {
        Shape::Object(fields) if depth > 0 => {
            let mut m = Map::new();
            for (field, child) in fields {
                if c.chance(if careful { 90 } else { 55 }) {
                    m.insert(field.clone(), from_shape(child, c, depth - 1, careful, field));
                }
            }
            if !careful && c.chance(3) {
                m.insert(nasty_string(c), any_json(c, 1));
            }
            Value::Object(m)
        }
        Shape::List(item) if depth > 0 => {
            let n = if careful { 1 + c.below(2) } else { c.below(4) };
            Value::Array((0..n).map(|_| from_shape(item, c, depth - 1, careful, name)).collect())
        }
        Shape::Enum(variants) if !variants.is_empty() && (careful || c.chance(90)) => {
            Value::from(c.pick(variants).clone())
        }
        Shape::Leaf(kinds) if careful => plausible(name, *kinds, c).unwrap_or(Value::Null),
        _ => match c.below(6) {
            0 => nasty_number(c),
            1 => Value::Bool(c.chance(50)),
            2 => {
                let mut tags = Map::new();
                for _ in 0..c.below(3) {
                    tags.insert(c.pick(NASTY_STRINGS).to_string(), Value::from(c.pick(NASTY_STRINGS).to_string()));
                }
                Value::Object(tags)
            }
            _ => Value::String(nasty_string(c)),
        },
    }
}

/// Every resource document in the repository's test data (golden inputs of the generators
/// and the policies), as seeds: mutating real documents reaches deeper than generating.
fn seed_documents() -> Vec<(ResourceType, Value)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml") && !p.to_string_lossy().contains("golden") {
                out.push(p);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("tests/testdata"), &mut files);
    walk(&root.join("src"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for doc in rest::parse_documents(&text).unwrap_or_default() {
            if let Ok(env) = rest::from_json(doc.clone()) {
                out.push((env.rtype, doc));
            }
        }
    }
    out
}

/// One change at a random place of `doc`: a value replaced, a key removed or added, a list
/// item duplicated.
fn mutate(doc: &mut Value, shape: &Shape, c: &mut Choices<'_>) {
    // Walk down to a random node, remembering the way as a JSON pointer.
    let mut pointer = String::new();
    let mut node: &Value = doc;
    let mut sub: &Shape = shape;
    for _ in 0..c.below(6) {
        let step = match node {
            Value::Object(m) if !m.is_empty() => m.keys().nth(c.below(m.len())).cloned(),
            Value::Array(a) if !a.is_empty() => Some(c.below(a.len()).to_string()),
            _ => None,
        };
        let Some(step) = step else { break };
        let child = match node {
            Value::Object(m) => m.get(&step),
            Value::Array(a) => step.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match child {
            Some(n) if !n.is_null() => {
                sub = match sub {
                    Shape::Object(fields) => fields.get(&step).unwrap_or(&ANY_LEAF),
                    Shape::List(item) => item,
                    other => other,
                };
                pointer.push('/');
                pointer.push_str(&step.replace('~', "~0").replace('/', "~1"));
                node = n;
            }
            _ => break,
        }
    }
    let Some(node) = doc.pointer_mut(&pointer) else { return };
    match (c.below(5), &mut *node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(c.below(m.len())).cloned().unwrap_or_default();
            m.remove(&k);
        }
        (1, Value::Object(m)) => {
            m.insert(nasty_string(c), any_json(c, 2));
        }
        (2, Value::Array(a)) if !a.is_empty() => {
            let dup = a[c.below(a.len())].clone();
            a.push(dup);
        }
        (3, _) => *node = from_shape(sub, c, 3, true, ""),
        _ => *node = any_json(c, 2),
    }
}

// ---- fixtures ----------------------------------------------------------------------------

fn dataplane_json(name: &str, service: &str, port: u32, outbound: &[(&str, u32)]) -> Value {
    let outbound: Vec<Value> =
        outbound.iter().map(|(s, p)| json!({"port": p, "tags": {"kuma.io/service": s}})).collect();
    json!({"type": "Dataplane", "mesh": "default", "name": name, "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": port, "servicePort": port + 1000, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}],
        "outbound": outbound,
    }})
}

fn settings() -> Settings {
    Settings {
        refresh_interval: Duration::from_millis(200),
        nack_backoff: Duration::from_millis(50),
        status_flush_interval: Duration::from_millis(200),
        cache_ttl: Duration::from_millis(50),
        subscription_limit: 2,
        event_push: true,
        change_history: 16,
        idle_timeout: Duration::from_secs(300),
        disconnect_delay: Duration::ZERO,
    }
}

/// A store with Mesh `default` and dataplanes, an API on it and a reconciler reading it.
struct World {
    store: SharedStore,
    ctx: ApiContext,
    reconciler: Arc<Reconciler>,
}

impl World {
    fn new(localhost_is_admin: bool) -> World {
        let store: SharedStore = Arc::new(MemoryStore::new());
        higuma::daemon::ensure_default_mesh(&store).unwrap();
        let mut config = Config::default();
        config.api_server.authn.localhost_is_admin = localhost_is_admin;
        higuma::api::authn::bootstrap(&store, &config).unwrap();
        let ctx = ApiContext::new(store.clone(), Arc::new(RwLock::new(config)), "fuzz-0001".into());
        for (name, svc, port, out) in [
            ("dp-1", "web", 8080, vec![("backend", 9001)]),
            ("dp-2", "backend", 8081, vec![]),
            ("dp-3", "backend", 8082, vec![]),
        ] {
            let doc = dataplane_json(name, svc, port, &out);
            let env = rest::from_json(doc).unwrap();
            store.create("default", name, env.spec).unwrap();
        }
        let reconciler = Arc::new(Reconciler::start(
            store.clone(),
            settings(),
            "fuzz-0001".into(),
            2,
            higuma::clock::SystemClock::shared(),
        ));
        World { store, ctx, reconciler }
    }

    fn request(&self, method: &str, path: &str, body: Option<String>, peer: &str) -> higuma::api::Reply {
        let req = Request {
            method: method.into(),
            path: path.into(),
            body,
            peer: Some(peer.parse().unwrap()),
            ..Request::default()
        };
        router::route(&self.ctx, &req)
    }
}

/// An in-process ADS stream on the reconciler.
struct Stream {
    id: u64,
    rx: futures::channel::mpsc::UnboundedReceiver<higuma::xds::wire::EncodedResponse>,
    nonces: Vec<String>,
    versions: Vec<String>,
}

impl Stream {
    fn open(hub: &Reconciler) -> Stream {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let id = hub.open("fuzz:0".into(), tx);
        Stream { id, rx, nonces: Vec::new(), versions: Vec::new() }
    }

    /// Collects responses arriving within `wait`.
    fn drain(&mut self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut n = 0;
        loop {
            match self.rx.try_recv() {
                Ok(r) => {
                    if let Ok(resp) = <DiscoveryResponse as protobuf::Message>::parse_from_bytes(&r.0) {
                        self.nonces.push(resp.nonce.clone());
                        self.versions.push(resp.version_info.clone());
                    }
                    n += 1;
                }
                _ if Instant::now() >= deadline => return n,
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

fn subscribe(hub: &Reconciler, stream: &Stream, node: &str, kind: ResourceKind) {
    let mut req = DiscoveryRequest::new();
    req.node.mut_or_insert_default().id = node.to_string();
    req.type_url = kind.type_url().to_string();
    hub.request(stream.id, req);
}

// ---- targets -----------------------------------------------------------------------------

/// REST bodies of every registered type through the whole write path, while a connected
/// dataplane's config is regenerated from whatever got stored.
#[test]
fn rest_bodies() {
    let world = World::new(true);
    let mut watcher = Stream::open(&world.reconciler);
    for kind in [ResourceKind::Cluster, ResourceKind::Endpoint, ResourceKind::Listener] {
        subscribe(&world.reconciler, &watcher, "default.dp-1", kind);
    }
    assert!(watcher.drain(Duration::from_secs(3)) > 0, "the watching dataplane gets its config");
    let shapes = schemas();
    let seeds = seed_documents();
    for (t, shape) in shapes {
        // A type whose decoder revealed nothing would be fuzzed blind: say so.
        assert!(
            matches!(shape, Shape::Object(f) if !f.is_empty()) || *t == ResourceType::DataplaneInsight,
            "no fields learned for {t}: {shape:?}"
        );
    }
    let tally = Tally::default();
    fuzz("rest_bodies", CASES_REST, choices(400), |data| {
        let mut c = Choices::new(&data);
        let (rtype, shape) = c.pick(shapes);
        let names = ["a", "b", "dp-1", "dp-2", "a-very-long-name-0123456789", "a", "b", "x.y", "", "UPPER"];
        let name = names[if c.chance(90) { c.below(5) } else { c.below(names.len()) }].to_string();
        let mesh = if rtype.is_global() {
            String::new()
        } else if c.chance(95) {
            "default".to_string()
        } else {
            "missing".to_string()
        };
        let careful = c.chance(60);
        let mut doc = match seeds.iter().filter(|(t, _)| t == rtype).map(|(_, d)| d).collect::<Vec<_>>() {
            found if !found.is_empty() && c.chance(50) => {
                let mut doc = (*c.pick(&found)).clone();
                for _ in 0..c.below(3) {
                    mutate(&mut doc, shape, &mut c);
                }
                doc
            }
            _ => envelope(*rtype, from_shape(shape, &mut c, 7, careful, "")),
        };
        if let Value::Object(m) = &mut doc {
            m.insert("name".into(), Value::from(name.clone()));
            if !rtype.is_global() {
                m.insert("mesh".into(), Value::from(mesh.clone()));
            }
            if c.chance(2) {
                m.insert("type".into(), Value::from(c.pick(ResourceType::ALL).name()));
            }
        }
        let body = if c.chance(30) { serde_yaml_ng::to_string(&doc).unwrap_or_default() } else { doc.to_string() };
        let path = if rtype.is_global() {
            format!("/{}/{}", rtype.ws_path(), name)
        } else {
            format!("/meshes/{}/{}/{}", mesh, rtype.ws_path(), name)
        };
        let reply = world.request("PUT", &path, Some(body), "127.0.0.1:1");
        tally.add(format!("{}", reply.status));
        if std::env::var("FUZZ_DEBUG").is_ok() && reply.status == 400 {
            let b = reply.body.clone().unwrap_or_default();
            tally.add(format!(
                "{} {}: {}",
                rtype,
                b["invalid_parameters"][0]["field"],
                b["invalid_parameters"][0]["reason"]
                    .as_str()
                    .unwrap_or(b["detail"].as_str().unwrap_or(""))
                    .chars()
                    .take(60)
                    .collect::<String>()
            ));
        }
        prop_assert!(
            [200, 201, 400, 404, 405, 409].contains(&reply.status),
            "PUT {path} answered {}: {:?}",
            reply.status,
            reply.body
        );
        if reply.status < 300 {
            let got = world.request("GET", &path, None, "127.0.0.1:1");
            prop_assert_eq!(got.status, 200, "{:?}", got.body);
            let again = world.request("PUT", &path, got.body.as_ref().map(|b| b.to_string()), "127.0.0.1:1");
            prop_assert_eq!(again.status, 200, "the stored resource, sent back, is accepted: {:?}", again.body);
            if c.chance(20) {
                let del = world.request("DELETE", &path, None, "127.0.0.1:1");
                prop_assert!([200, 400].contains(&del.status), "{:?}", del.body);
            }
        }
        background_panic()
    });
    tally.print("rest_bodies");
    assert!(tally.get("201") + tally.get("200") >= u64::from(CASES_REST) / 20, "too few generated bodies are valid");
    // Let the reconciler finish what the last writes triggered before the last check.
    watcher.drain(Duration::from_millis(500));
    background_panic().unwrap();
    let _ = world.store.list(ResourceType::Mesh, None).unwrap();
}

const PATHS: &[&str] = &[
    "/",
    "/meshes",
    "/meshes/default",
    "/meshes/default/dataplanes",
    "/meshes/default/dataplanes/dp-1",
    "/meshes/default/dataplanes+insights",
    "/dataplanes+insights",
    "/meshes/default/traffic-routes/a",
    "/global-secrets",
    "/global-secrets/admin-user-token",
    "/meshes/default/secrets/s",
    "/tokens/user",
    "/who-am-i",
    "/bootstrap",
    "/config",
    "/policies",
    "//",
    "/meshes/../global-secrets",
    "/meshes/%2e%2e/x",
    "*",
    "http://evil/meshes",
];

/// Request bytes through the HTTP parser into the API.
#[test]
fn raw_http() {
    let world = World::new(false);
    let admin = admin_token(&world.store);
    let handler: higuma::http::Handler = {
        let ctx = world.ctx.clone();
        Arc::new(move |req: &Request| higuma::api::render(router::route(&ctx, req)))
    };
    let tally = Tally::default();
    fuzz("raw_http", CASES_RAW_HTTP, choices(300), |data| {
        let mut c = Choices::new(&data);
        let mut input = Vec::new();
        for _ in 0..1 + c.below(3) {
            let method = c.pick(&["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "get", "G\u{0}T", ""]).to_string();
            let mut target = c.pick(PATHS).to_string();
            if c.chance(30) {
                target.push_str(&format!("?size={}&offset={}", c.pick(&["1", "0", "1001", "-1", "x", ""]), c.raw()));
            }
            if c.chance(5) {
                target = nasty_string(&mut c);
            }
            let version = c.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", ""]);
            let body: Vec<u8> = match c.below(4) {
                0 => Vec::new(),
                1 => dataplane_json("dp-9", "web", 7000, &[]).to_string().into_bytes(),
                2 => json!({"name": nasty_string(&mut c), "groups": [nasty_string(&mut c)], "validFor": c.pick(NASTY_STRINGS)}).to_string().into_bytes(),
                _ => (0..c.below(64)).map(|_| c.raw() as u8).collect(),
            };
            let mut head = format!("{method} {target} {version}\r\n");
            if c.chance(80) {
                head.push_str("Host: cp:5681\r\n");
            }
            match c.below(6) {
                0 => head.push_str(&format!("Authorization: Bearer {admin}\r\n")),
                1 => head
                    .push_str(&format!("Authorization: Bearer {}\r\n", nasty_string(&mut c).replace(['\r', '\n'], ""))),
                2 => head.push_str("Authorization: Basic YWRtaW46YWRtaW4=\r\n"),
                _ => {}
            }
            let chunked = c.chance(20);
            match c.below(5) {
                _ if chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
                0 => {}
                1 => head.push_str(&format!("Content-Length: {}\r\n", c.raw())),
                _ => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
            }
            if c.chance(10) {
                head.push_str("Expect: 100-continue\r\n");
            }
            if c.chance(10) {
                head.push_str(&format!("{}: {}\r\n", nasty_string(&mut c), nasty_string(&mut c)));
            }
            head.push_str("\r\n");
            input.extend_from_slice(head.as_bytes());
            if chunked {
                for piece in body.chunks(1 + c.below(16)) {
                    input.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    input.extend_from_slice(piece);
                    input.extend_from_slice(b"\r\n");
                }
                input.extend_from_slice(b"0\r\n\r\n");
            } else {
                input.extend_from_slice(&body);
            }
        }
        if c.chance(10) {
            let cut = c.below(input.len() + 1);
            input.truncate(cut);
        }
        let counters = higuma::http::metrics::LimitCounters::default();
        let limits = higuma::http::Limits { max_header_bytes: 4096, max_body_bytes: 64 * 1024, ..Default::default() };
        let peer = if c.chance(50) { "10.1.2.3:4" } else { "127.0.0.1:4" };
        let ctx = higuma::http::conn::ConnCtx {
            handler: &handler,
            limits,
            errors: |s, t, d| higuma::api::ApiError::new(s, t, d).into_response(),
            counters: &counters,
            peer: Some(peer.parse().unwrap()),
            secure: false,
            should_yield: &|| false,
        };
        let mut t = higuma::http::conn::MemoryTransport::new(input);
        higuma::http::conn::serve(&mut t, &ctx);
        let out = String::from_utf8_lossy(&t.output).into_owned();
        for line in out.lines().filter(|l| l.starts_with("HTTP/1.1 ")) {
            let code: u16 = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            tally.add(code.to_string());
            prop_assert!((100..500).contains(&code) || code == 501 || code == 503, "status line {line:?} in {out}");
        }
        background_panic()
    });
    tally.print("raw_http");
    assert!(tally.get("200") > 0 && tally.get("401") > 0, "requests get past the parser");
}

/// YAML files derived from the defaults tree, mutated, plus env values.
#[test]
fn config() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let keys = higuma::config::leaf_keys();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("higuma.yaml");
    let tally = Tally::default();
    fuzz("config", CASES_CONFIG, choices(120), |data| {
        let mut c = Choices::new(&data);
        let mut tree = defaults.clone();
        for _ in 0..c.below(6) {
            let key = c.pick(&keys);
            let path: Vec<Step> = key.split('.').map(|k| Step::Key(k.to_string())).collect();
            let cut = c.below(path.len()) + 1;
            let value = match c.below(4) {
                0 => any_json(&mut c, 2),
                1 => Value::String(nasty_string(&mut c)),
                2 => nasty_number(&mut c),
                _ => Value::Null,
            };
            put_at(&mut tree, &path[..cut.min(path.len())], value);
        }
        if c.chance(10) {
            tree[nasty_string(&mut c)] = any_json(&mut c, 2);
        }
        let text = match c.below(10) {
            0 => nasty_string(&mut c),
            1 => "a: [\n  - {".to_string(),
            _ => serde_yaml_ng::to_string(&tree).unwrap_or_default(),
        };
        std::fs::write(&file, &text).unwrap();
        let mut env = std::collections::HashMap::new();
        for _ in 0..c.below(4) {
            let key: &String = c.pick(&keys);
            env.insert(higuma::config::env_var_name(key), nasty_string(&mut c));
        }
        let result = higuma::config::load(Some(&file), &|name| env.get(name).cloned());
        tally.add(match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        });
        if let Ok(loaded) = result {
            prop_assert!(loaded.config.validate().is_ok(), "a loaded config validates");
            // Every duration is added to a clock somewhere (deadlines, timers, back-offs).
            let tree = serde_json::to_value(&loaded.config).unwrap();
            for key in &keys {
                let pointer = format!("/{}", key.replace('.', "/"));
                let (Some(Value::String(text)), Some(Value::String(default))) =
                    (tree.pointer(&pointer), defaults.pointer(&pointer))
                else {
                    continue;
                };
                if default.parse::<higuma::config::Duration>().is_err() {
                    continue;
                }
                if let Ok(d) = text.parse::<higuma::config::Duration>() {
                    prop_assert!(
                        Instant::now().checked_add(d.as_std()).is_some() && d.as_std().as_nanos() <= i64::MAX as u128,
                        "{key}: {text} cannot be used as a time-out or interval"
                    );
                }
            }
            std::fs::write(&file, loaded.config.to_yaml()).unwrap();
            let again = higuma::config::load(Some(&file), &|_| None);
            prop_assert!(again.is_ok(), "its YAML loads again: {:?}", again.err());
            prop_assert_eq!(again.unwrap().config, loaded.config, "and round-trips");
        }
        Ok(())
    });
    tally.print("config");
    assert!(tally.get("ok") > 0 && tally.get("invalid") > 0, "both valid and invalid configs are drawn");
}

fn admin_token(store: &SharedStore) -> String {
    let res = store
        .get(&higuma::model::ResourceKey::new(ResourceType::GlobalSecret, "", tokens::ADMIN_TOKEN_SECRET))
        .unwrap();
    match &res.spec {
        higuma::model::Spec::GlobalSecret(s) => String::from_utf8(s.0.bytes().to_vec()).unwrap(),
        _ => unreachable!(),
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// User tokens: signed with arbitrary claims (checked against a model of what is valid),
/// mutated, or garbage; and `Authorization` headers of every shape through the router.
#[test]
fn jwt() {
    use base64::Engine;
    let world = World::new(false);
    let validator = UserTokens::new(world.store.clone(), Duration::ZERO);
    let (serial, key) = validator.latest_signing_key().unwrap();
    let admin = admin_token(&world.store);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let tally = Tally::default();
    fuzz("jwt", CASES_JWT, choices(200), |data| {
        let mut c = Choices::new(&data);
        let now = now_secs();
        let time = |c: &mut Choices<'_>| -> Value {
            match c.below(8) {
                0 => json!(now + 3600.0),
                1 => json!((now + 3600.0) as i64),
                2 => json!(now - 3600.0),
                3 => json!(1e300),
                4 => json!(-1e300),
                5 => Value::Null,
                6 => Value::String("tomorrow".into()),
                _ => nasty_number(c),
            }
        };
        let mut claims = Map::new();
        let fields = [("Name", 0), ("Groups", 1), ("exp", 2), ("nbf", 3), ("jti", 4)];
        for (field, kind) in fields {
            if c.chance(80) {
                let v = match (kind, c.below(3)) {
                    (0, 0 | 1) => Value::from(c.pick(&["john", "mesh-system:admin", ""]).to_string()),
                    (1, 0 | 1) => json!([c.pick(&["devs", "mesh-system:admin"]).to_string()]),
                    (2 | 3, _) => time(&mut c),
                    (4, 0 | 1) => Value::from(nasty_string(&mut c)),
                    _ => any_json(&mut c, 2),
                };
                claims.insert(field.into(), v);
            }
        }
        // Model: what a valid token is.
        let number = |v: Option<&Value>| v.and_then(Value::as_f64);
        let exp = number(claims.get("exp"));
        let nbf_ok = match claims.get("nbf") {
            None | Some(Value::Null) => Some(true),
            Some(Value::Number(n)) => n.as_f64().map(|f| f <= now),
            Some(_) => Some(false),
        };
        let nbf_boundary = number(claims.get("nbf")).is_some_and(|f| (f - now).abs() <= 2.0);
        let name_ok = matches!(claims.get("Name"), Some(Value::String(n)) if !n.is_empty());
        let groups_ok = match claims.get("Groups") {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.iter().all(Value::is_string),
            _ => false,
        };
        let jti_ok = matches!(claims.get("jti"), None | Some(Value::Null) | Some(Value::String(_)));
        let exp_ok = exp.map(|e| e > now + 2.0);
        let exp_boundary = exp.is_some_and(|e| (e - now).abs() <= 2.0);
        let signed = higuma::api::authn::jwt::sign(&claims, serial, &key).unwrap();
        let token = match c.below(6) {
            0 => {
                // A byte changed, dropped or added somewhere.
                let mut b = signed.clone().into_bytes();
                let at = c.below(b.len());
                match c.below(3) {
                    0 => b[at] = (c.raw() % 128) as u8,
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, (c.raw() % 128) as u8),
                }
                String::from_utf8_lossy(&b).into_owned()
            }
            1 => format!(
                "{}.{}.{}",
                b64(any_json(&mut c, 2).to_string().as_bytes()),
                b64(Value::Object(claims.clone()).to_string().as_bytes()),
                b64(b"sig")
            ),
            2 => nasty_string(&mut c),
            _ => signed.clone(),
        };
        let result = validator.validate(&token);
        tally.add(match &result {
            Ok(_) => "valid".to_string(),
            Err(e) => e.to_string().chars().take(30).collect(),
        });
        if token == signed && !exp_boundary && !nbf_boundary {
            let expected = name_ok && groups_ok && jti_ok && exp_ok == Some(true) && nbf_ok == Some(true);
            prop_assert_eq!(result.is_ok(), expected, "claims {:?}: {:?}", claims, result);
        } else if token != signed {
            // Only the signed token can be valid, unless a change kept it equivalent
            // (base64 padding bits), which then must have kept its claims.
            if let Ok(user) = &result {
                prop_assert_eq!(Some(&Value::from(user.name.clone())), claims.get("Name"));
            }
        }
        // And as a header, through the router, from a remote address.
        let header = match c.below(5) {
            0 => format!("Bearer {token}"),
            1 => format!("bearer  {token}"),
            2 => format!("Bearer {admin}"),
            3 => nasty_string(&mut c),
            _ => format!("Basic {token}"),
        };
        let req = Request {
            method: "GET".into(),
            path: c.pick(&["/meshes", "/global-secrets", "/who-am-i"]).to_string(),
            headers: vec![("Authorization".into(), header)],
            peer: Some("10.0.0.1:1".parse().unwrap()),
            ..Request::default()
        };
        let reply = router::route(&world.ctx, &req);
        prop_assert!([200, 401, 403].contains(&reply.status), "{} {:?}", reply.status, reply.body);
        Ok(())
    });
    tally.print("jwt");
    assert!(tally.get("valid") > 0, "some signed tokens are valid");
}

fn kind_of(c: &mut Choices<'_>) -> String {
    if c.chance(90) {
        c.pick(&ResourceKind::ALL).type_url().to_string()
    } else {
        nasty_string(c)
    }
}

/// The per-stream state machine: any request sequence, with the properties its docs state.
#[test]
fn xds_stream() {
    fuzz("xds_stream", CASES_XDS_STREAM, choices(300), |data| {
        let mut c = Choices::new(&data);
        let mut s = StreamState::new(Duration::from_millis(c.below(10_000) as u64));
        let t0 = Instant::now();
        let mut clock = Duration::ZERO;
        let mut nonces: Vec<String> = Vec::new();
        let mut versions: Vec<String> = vec!["v1".into(), "v2".into(), String::new()];
        // (kind, version) NACKed and not yet followed by an ACK of that kind.
        let mut nacked: Vec<(ResourceKind, String)> = Vec::new();
        let mut last_nonce = 0u64;
        for _ in 0..c.below(40) {
            clock += Duration::from_millis(c.below(3000) as u64);
            let now = t0 + clock;
            match c.below(3) {
                0 => {
                    let view = RequestView {
                        type_url: kind_of(&mut c),
                        version_info: c.pick(&versions).clone(),
                        response_nonce: match c.below(3) {
                            0 => String::new(),
                            1 if !nonces.is_empty() => c.pick(&nonces).clone(),
                            _ => nasty_string(&mut c),
                        },
                        resource_names: (0..c.below(3)).map(|_| nasty_string(&mut c)).collect(),
                        error: c.chance(25).then(|| nasty_string(&mut c)),
                    };
                    let outcome = s.on_request(&view, now);
                    if std::env::var("FUZZ_DEBUG").is_ok() {
                        eprintln!(
                            "req {:?} nonce={:?} err={:?} -> {outcome:?}",
                            view.type_url.rsplit('.').next(),
                            view.response_nonce,
                            view.error.is_some()
                        );
                    }
                    match outcome {
                        RequestOutcome::Nack { kind, version, .. } => nacked.push((kind, version)),
                        RequestOutcome::Ack { kind, .. } => nacked.retain(|(k, _)| *k != kind),
                        _ => {}
                    }
                }
                1 => {
                    let kind = *c.pick(&ResourceKind::ALL);
                    let version = if c.chance(70) { c.pick(&versions).clone() } else { nasty_string(&mut c) };
                    let decision = s.decide(kind, &version, now);
                    if std::env::var("FUZZ_DEBUG").is_ok() {
                        eprintln!("decide {kind} {version:?} at {clock:?} -> {decision:?}");
                    }
                    if !s.is_subscribed(kind) {
                        prop_assert_eq!(&decision, &SendDecision::Skip, "unsubscribed types are never sent");
                    }
                    if nacked.iter().any(|(k, v)| *k == kind && *v == version) {
                        prop_assert_eq!(&decision, &SendDecision::Skip, "a NACKed version is never resent");
                    }
                    if decision == SendDecision::Send {
                        let nonce = s.record_sent_at(kind, &version, now);
                        let n: u64 = nonce.parse().map_err(|_| TestCaseError::fail("nonce is a number"))?;
                        prop_assert!(n > last_nonce, "nonces increase");
                        last_nonce = n;
                        nonces.push(nonce);
                        versions.push(version);
                    }
                }
                _ => {
                    let _ = s.requested_names(*c.pick(&ResourceKind::ALL));
                    let total = s.total();
                    prop_assert!(total.acked + total.rejected <= total.sent, "answers never exceed responses");
                }
            }
        }
        Ok(())
    });
}

fn node_id(c: &mut Choices<'_>) -> String {
    match c.below(9) {
        0 => "default.dp-1".into(),
        1 => "default.dp-2".into(),
        2 => "default.ghost".into(),
        3 => String::new(),
        4 => "a.b.c".into(),
        5 => ".dp-1".into(),
        6 => format!("default.{}", "x".repeat(100_000)),
        _ => nasty_string(c),
    }
}

fn metadata(c: &mut Choices<'_>) -> protobuf::well_known_types::struct_::Struct {
    use protobuf::well_known_types::struct_::{value::Kind, ListValue, Struct, Value as PbValue};
    fn value(c: &mut Choices<'_>, depth: usize) -> PbValue {
        let mut v = PbValue::new();
        v.kind = Some(match c.below(if depth == 0 { 4 } else { 6 }) {
            0 => Kind::StringValue(nasty_string(c)),
            1 => Kind::NumberValue(f64::from_bits(u64::from(c.raw()) << 32 | u64::from(c.raw()))),
            2 => Kind::BoolValue(c.chance(50)),
            3 => Kind::NullValue(Default::default()),
            4 => {
                let mut l = ListValue::new();
                l.values = (0..c.below(3)).map(|_| value(c, depth - 1)).collect();
                Kind::ListValue(l)
            }
            _ => {
                let mut s = Struct::new();
                for _ in 0..c.below(3) {
                    s.fields.insert(nasty_string(c), value(c, depth - 1));
                }
                Kind::StructValue(s)
            }
        });
        v
    }
    let mut s = Struct::new();
    let keys =
        ["dataplane.admin.port", "dataplane.resource", "dataplane.proxyType", "version", "features", "dynamicMetadata"];
    for _ in 0..c.below(4) {
        s.fields.insert(c.pick(&keys).to_string(), value(c, 3));
    }
    s
}

/// DiscoveryRequests of every shape on several streams through the reconciler.
#[test]
fn xds_reconciler() {
    let world = World::new(true);
    let hub = world.reconciler.clone();
    fuzz("xds_reconciler", CASES_XDS_RECONCILER, choices(300), |data| {
        let mut c = Choices::new(&data);
        let mut streams: Vec<Stream> = (0..1 + c.below(3)).map(|_| Stream::open(&hub)).collect();
        for _ in 0..c.below(12) {
            let i = c.below(streams.len());
            let stream = &mut streams[i];
            let mut req = DiscoveryRequest::new();
            if c.chance(70) {
                let node = req.node.mut_or_insert_default();
                node.id = node_id(&mut c);
                node.cluster = nasty_string(&mut c);
                if c.chance(40) {
                    node.metadata = protobuf::MessageField::some(metadata(&mut c));
                }
            }
            req.type_url = kind_of(&mut c);
            req.version_info = match c.below(3) {
                0 if !stream.versions.is_empty() => c.pick(&stream.versions).clone(),
                1 => nasty_string(&mut c),
                _ => String::new(),
            };
            req.response_nonce = match c.below(3) {
                0 if !stream.nonces.is_empty() => c.pick(&stream.nonces).clone(),
                1 => nasty_string(&mut c),
                _ => String::new(),
            };
            req.resource_names = (0..c.below(3)).map(|_| nasty_string(&mut c)).collect();
            if c.chance(20) {
                let e = req.error_detail.mut_or_insert_default();
                e.code = c.raw() as i32;
                e.message = nasty_string(&mut c);
            }
            hub.request(stream.id, req);
            if c.chance(30) {
                stream.drain(Duration::from_millis(5));
            }
        }
        for s in &streams {
            hub.close(s.id);
        }
        background_panic()
    });
    // Still alive: a well-behaved Envoy gets its config, and every stream was closed.
    let mut stream = Stream::open(&hub);
    subscribe(&hub, &stream, "default.dp-1", ResourceKind::Cluster);
    assert!(stream.drain(Duration::from_secs(5)) > 0, "the reconciler still serves after the fuzzing");
    hub.close(stream.id);
    common::wait_until("every fuzzed stream closed", Duration::from_secs(5), || {
        hub.metrics().streams_active.load(Ordering::Relaxed) == 0
    });
    background_panic().unwrap();
}

/// `POST /bootstrap` bodies in kuma-dp's request shape.
#[test]
fn bootstrap() {
    let world = World::new(true);
    // Tokens off: the fuzzed bodies carry arbitrary token text, and a valid request must be
    // able to reach the code that builds a bootstrap.
    let mut config = Config::default();
    config.dp_server.authn.dp_proxy.r#type = "none".into();
    let bootstrap_ctx = higuma::dpserver::bootstrap::BootstrapContext {
        store: world.store.clone(),
        config: Arc::new(RwLock::new(config)),
        tls: None,
        auth: higuma::xds::auth::Authenticator::start(higuma::config::DpAuthn::None, world.store.clone()),
    };
    let dataplane_shape =
        schemas().iter().find(|(t, _)| *t == ResourceType::Dataplane).map(|(_, s)| s.clone()).unwrap();
    let tally = Tally::default();
    fuzz("bootstrap", CASES_BOOTSTRAP, choices(300), |data| {
        let mut c = Choices::new(&data);
        let careful = c.chance(50);
        let dp = envelope(ResourceType::Dataplane, from_shape(&dataplane_shape, &mut c, 6, careful, ""));
        let good = [
            ("mesh", Value::from(c.pick(&["default", "default", "missing"]).to_string())),
            ("name", Value::from(c.pick(&["dp-1", "dp-2", "ghost"]).to_string())),
            ("adminPort", nasty_number(&mut c)),
            ("proxyType", Value::from(c.pick(&["dataplane", "ingress", "egress", ""]).to_string())),
            ("dataplaneToken", Value::from(nasty_string(&mut c))),
            ("dataplaneResource", Value::from(dp.to_string())),
            (
                "version",
                json!({"kumaDp": {"version": nasty_string(&mut c)}, "envoy": {"version": nasty_string(&mut c), "kumaDpCompatible": c.chance(50)}}),
            ),
            ("caCert", Value::from(nasty_string(&mut c))),
            ("dynamicMetadata", json!({nasty_string(&mut c): nasty_string(&mut c)})),
            ("dnsPort", nasty_number(&mut c)),
            ("features", json!([nasty_string(&mut c)])),
        ];
        let mut body = Map::new();
        for (name, value) in good {
            if c.chance(85) {
                let v = if c.chance(80) { value } else { any_json(&mut c, 2) };
                body.insert(name.to_string(), v);
            }
        }
        let text = if c.chance(5) { nasty_string(&mut c) } else { Value::Object(body).to_string() };
        // The DP server's own handler (it serves `/bootstrap` on 5678, as Kuma's does).
        let req = Request {
            method: "POST".into(),
            path: "/bootstrap".into(),
            body: Some(text),
            headers: vec![("Accept".into(), "application/json".into())],
            peer: Some("127.0.0.1:9".parse().unwrap()),
            ..Request::default()
        };
        let reply = higuma::dpserver::bootstrap::handle(&bootstrap_ctx, &req);
        tally.add(format!("{}", reply.status));
        let json: Option<Value> = serde_json::from_slice(&reply.body).ok();
        prop_assert!([200, 400, 404, 422].contains(&reply.status), "{} {:?}", reply.status, json);
        if reply.status == 200 {
            use base64::Engine;
            let b64 = json.as_ref().and_then(|b| b["bootstrap"].as_str()).unwrap_or("");
            let yaml = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed: Result<Value, _> = serde_yaml_ng::from_slice(&yaml);
            prop_assert!(parsed.is_ok(), "the bootstrap is YAML");
        }
        background_panic()
    });
    tally.print("bootstrap");
    assert!(tally.get("200") > 0, "some bootstrap requests succeed");
}

#[test]
fn probing_learns_kumas_field_names() {
    let shapes = schemas();
    let dp = shapes.iter().find(|(t, _)| *t == ResourceType::Dataplane).map(|(_, s)| s).unwrap();
    let Shape::Object(top) = dp else { panic!("{dp:?}") };
    let Some(Shape::Object(net)) = top.get("networking") else { panic!("{top:?}") };
    assert!(net.contains_key("address") && net.contains_key("inbound"), "{net:?}");
    assert!(matches!(net.get("inbound"), Some(Shape::List(_))), "{net:?}");
}

/// Regression, found by `config`: durations longer than Go's maximum were accepted, and a
/// time-out of 3000000000000000h overflowed the clock on the first request, killing the
/// API worker that served it.
#[test]
fn regression_durations_beyond_gos_range_are_refused() {
    for var in ["KUMA_API_SERVER_READ_HEADER_TIMEOUT", "KUMA_XDS_SERVER_NACK_BACKOFF", "KUMA_DIAGNOSTICS_IDLE_TIMEOUT"]
    {
        let err =
            higuma::config::load(None, &|name| (name == var).then(|| "3000000000000000h".to_string())).unwrap_err();
        assert!(err.to_string().contains(var) && err.to_string().contains("maximum"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "apiServer:\n  readTimeout: 9999999999999999999\n").unwrap();
    let err = higuma::config::load(Some(&file), &|_| None).unwrap_err();
    assert!(err.to_string().contains("apiServer.readTimeout"), "{err}");
}
