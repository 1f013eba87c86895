//! The benchmark harness as a smoke test at N = 200: every simulated dataplane configured,
//! changes reach exactly the affected dataplanes, nothing lost. Correctness only: speed is
//! measured by `scripts/bench.sh`, never asserted here.

use std::process::Command;

#[test]
fn harness_smoke_at_200_dataplanes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke.json");
    let status = Command::new(env!("CARGO_BIN_EXE_higuma-load"))
        .args(["run", "--services", "20", "--instances", "10", "--outbounds", "3", "--ramp", "1"])
        .args([
            "--idle",
            "1",
            "--settle",
            "1",
            "--changes",
            "6",
            "--churn",
            "2",
            "--churn-rate",
            "20",
            "--policy-mix",
            "--check",
            "--higuma",
        ])
        .arg(env!("CARGO_BIN_EXE_higuma"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "higuma-load failed");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["cold"]["configured"], 200, "{}", r["cold"]);
    assert_eq!(r["idle"]["responses_sent"], 0, "an idle control plane pushed: {}", r["idle"]);
    assert_eq!(r["targeted"]["lost"], 0, "{}", r["targeted"]);
    assert_eq!(r["targeted"]["spurious_pushes"], 0, "{}", r["targeted"]);
    assert_eq!(r["targeted"]["affected_dataplanes"], r["targeted"]["dataplanes_that_received"], "{}", r["targeted"]);
    assert_eq!(r["targeted_policy"]["lost"], 0, "{}", r["targeted_policy"]);
    assert_eq!(r["targeted_policy"]["spurious_pushes"], 0, "{}", r["targeted_policy"]);
    assert!(r["mesh_wide"]["all_acked_ms"].is_number(), "{}", r["mesh_wide"]);
    assert_eq!(r["churn"]["lost"], 0, "{}", r["churn"]);
    assert!(r["floor"]["encode_floor_ms"].is_number());
}
