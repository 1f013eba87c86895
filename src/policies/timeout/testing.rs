//! Test fixtures for the timeout and retry plugins of both generations: a mesh built from a
//! YAML list of resources, the confs the engine resolves for one of its dataplanes, and
//! golden files of the Envoy config generated for it (`<dir>/<case>.input.yaml` →
//! `<dir>/<case>.golden.yaml`; `UPDATE_GOLDEN_FILES=true` regenerates them).

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{rest, ResourceKey, ResourceType, Spec};
use crate::policies::resolved::ResolvedProxy;
use crate::policies::{Plugin, ResolveCx};
use crate::store::{MemoryStore, ResourceStore};
use crate::xds::context::MeshContext;
use crate::xds::debug::snapshot_to_json;

/// A mesh `default` made of the resources in a YAML document list (each validated as the
/// REST API would).
pub struct Fixture {
    store: Arc<MemoryStore>,
    pub ctx: MeshContext,
}

impl Fixture {
    pub fn new(yaml: &str) -> Fixture {
        let store = Arc::new(MemoryStore::new());
        for doc in rest::parse_documents(yaml).unwrap() {
            let env = rest::from_json(doc).unwrap_or_else(|e| panic!("invalid input: {e}"));
            store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
        }
        let ctx = MeshContext::build(store.as_ref(), "default", None).unwrap();
        Fixture { store, ctx }
    }

    fn dataplane(&self, name: &str) -> Arc<crate::model::Resource> {
        self.store.get(&ResourceKey::new(ResourceType::Dataplane, "default", name)).unwrap()
    }

    /// Every plugin's decisions for dataplane `name`.
    pub fn resolve(&self, name: &str) -> ResolvedProxy {
        let dp = self.dataplane(name);
        let Spec::Dataplane(spec) = &dp.spec else { panic!("{name} is not a Dataplane") };
        self.ctx.resolve(&dp, spec)
    }

    /// Runs one plugin's `resolve` again on `proxy` (e.g. after a test changed what an
    /// earlier plugin decided).
    pub fn rerun(&self, name: &str, plugin: &dyn Plugin, proxy: &mut ResolvedProxy) {
        let dp = self.dataplane(name);
        let Spec::Dataplane(spec) = &dp.spec else { panic!("{name} is not a Dataplane") };
        let Spec::Mesh(mesh) = &self.ctx.mesh.spec else { panic!("no Mesh") };
        let protocol_of = |s: &str| self.ctx.protocol_of(s);
        let cx = ResolveCx {
            mesh_name: "default",
            mesh,
            policies: &self.ctx.policies,
            name,
            dataplane: spec,
            protocol_of: &protocol_of,
            tls_ready: &|_| false,
        };
        plugin.resolve(&cx, proxy);
    }

    /// The Envoy config generated for dataplane `name`, as YAML.
    pub fn render(&self, name: &str) -> String {
        let dp = self.dataplane(name);
        let chain = crate::xds::generate::default_chain();
        let snapshot = crate::xds::generate::generate(&chain, &self.ctx, &dp).unwrap();
        serde_yaml_ng::to_string(&snapshot_to_json(&snapshot)).unwrap()
    }
}

/// [`Fixture::resolve`] in one call.
pub fn resolve(yaml: &str, dataplane: &str) -> ResolvedProxy {
    Fixture::new(yaml).resolve(dataplane)
}

/// Compares the config generated for `dataplane` from `<dir>/<case>.input.yaml` (`dir`
/// relative to the crate root) with `<dir>/<case>.golden.yaml`.
#[track_caller]
pub fn check_golden(dir: &str, case: &str, dataplane: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let input = std::fs::read_to_string(dir.join(format!("{case}.input.yaml"))).unwrap();
    let actual = Fixture::new(&input).render(dataplane);
    let golden = dir.join(format!("{case}.golden.yaml"));
    if std::env::var("UPDATE_GOLDEN_FILES").as_deref() == Ok("true") {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        actual == expected,
        "{case}: generated config differs from {}.\n--- actual ---\n{actual}\nRegenerate with: UPDATE_GOLDEN_FILES=true cargo test --lib {case}",
        golden.display()
    );
}
