//! Packaging: the systemd unit passes `systemd-analyze verify`, and the Debian package built
//! by `cargo deb` holds the binary, the unit, the config (as a conffile) and the scripts
//! that create the service user.

use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/higuma.service");

fn verify(unit_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists, so point it at the one just built.
    let text = unit_text.replace("/usr/bin/higuma", env!("CARGO_BIN_EXE_higuma"));
    let path = dir.path().join("higuma.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success() && stderr.trim().is_empty(), stderr)
}

#[test]
fn unit_verifies() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let (ok, stderr) = verify(&text);
    assert!(ok, "systemd-analyze verify: {stderr}");
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/bin/higuma config check -c /etc/higuma/higuma.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "LimitNOFILE=",
        "User=higuma",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(text.contains(line), "the unit lacks {line}");
    }
    // The check can fail: a misspelt directive is reported.
    let (ok, stderr) = verify(&text.replace("Type=notify", "Tpye=notify"));
    assert!(!ok && stderr.contains("Tpye"), "{stderr}");
}

#[test]
fn shipped_config_passes_config_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_higuma"))
        .args(["config", "check", "-c", concat!(env!("CARGO_MANIFEST_DIR"), "/etc/higuma.yaml")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn deb_package_lists_its_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // Package the binary this test run built (no release build inside a test).
    let release = root.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    let staged = release.join("higuma");
    if std::fs::metadata(&staged)
        .map(|m| m.modified().ok() < std::fs::metadata(env!("CARGO_BIN_EXE_higuma")).unwrap().modified().ok())
        .unwrap_or(true)
    {
        std::fs::copy(env!("CARGO_BIN_EXE_higuma"), &staged).unwrap();
    }
    let out = Command::new("cargo")
        .args(["deb", "--no-build", "--fast", "-o"])
        .arg(dir.path())
        .current_dir(root)
        .output()
        .expect("cargo deb (scripts/test.sh installs cargo-deb)");
    assert!(out.status.success(), "cargo deb failed: {}", String::from_utf8_lossy(&out.stderr));
    let deb = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let list = Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap();
    let files = String::from_utf8_lossy(&list.stdout);
    for f in ["./usr/bin/higuma", "./etc/higuma/higuma.yaml", "/higuma.service"] {
        assert!(files.contains(f), "{f} missing from the package:\n{files}");
    }
    let control = dir.path().join("control");
    let ok = Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control).status().unwrap();
    assert!(ok.success());
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap_or_default();
    assert!(conffiles.lines().any(|l| l.trim() == "/etc/higuma/higuma.yaml"), "conffiles: {conffiles}");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("higuma"), "{postinst}");
    assert!(
        postinst.contains("systemctl") || postinst.contains("deb-systemd-helper"),
        "unit enabled on install: {postinst}"
    );
}
