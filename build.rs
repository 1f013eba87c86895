//! Generates Rust code for the Envoy v3 API subset declared under `proto/`.
//!
//! Uses rust-protobuf's pure-Rust parser (no `protoc` needed). The output goes
//! to `$OUT_DIR/envoy_protos/` and is included by `src/envoy/mod.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_protos(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
}

fn main() {
    let root = Path::new("proto");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let mut inputs = Vec::new();
    collect_protos(root, &mut inputs);
    inputs.sort();
    assert!(!inputs.is_empty(), "no .proto files under proto/");

    // rust-protobuf names each generated module after the file stem only and
    // puts them all side by side, so two files with the same stem (even in
    // different directories) would overwrite each other. Refuse that loudly.
    let mut stems: BTreeMap<String, &Path> = BTreeMap::new();
    for input in &inputs {
        let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
        if let Some(prev) = stems.insert(stem.clone(), input) {
            panic!(
                "proto files {} and {} share the stem `{stem}`; rust-protobuf would \
                 generate both into the same module. Rename one (keep its `package` \
                 line unchanged: only imports refer to the path).",
                prev.display(),
                input.display()
            );
        }
    }

    protobuf_codegen::Codegen::new()
        .pure()
        .include(root)
        .inputs(&inputs)
        .cargo_out_dir("envoy_protos")
        .run_from_script();
}
