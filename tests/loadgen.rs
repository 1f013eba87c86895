//! The benchmark harness as a smoke test at N = 200: every simulated dataplane configured,
//! changes reach exactly the affected dataplanes, nothing lost. Correctness only: speed is
//! measured by `scripts/bench.sh`, never asserted here.

use std::process::Command;

/// One harness run at N = 200 with `extra` flags; its result file, checked for what every
/// run must show.
fn smoke(extra: &[&str]) -> serde_json::Value {
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
            "--check",
            "--higuma",
        ])
        .arg(env!("CARGO_BIN_EXE_higuma"))
        .arg("--out")
        .arg(&out)
        .args(extra)
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
    assert_eq!(r["token_cost"]["all_granted"], true, "{}", r["token_cost"]);
    quiet_writes_reached_nobody(&r, 200);
    r
}

/// The field-regression writes (identical re-PUTs, read-only metadata, another mesh, the
/// status burst on Postgres) all landed and no dataplane received anything.
fn quiet_writes_reached_nobody(r: &serde_json::Value, dataplanes: u64) {
    let fr = r["field_regressions"].as_object().expect("the field regressions ran");
    assert_eq!(fr["dataplane_reput"]["writes"], dataplanes, "{}", r["field_regressions"]);
    assert!(fr["policy_reput"]["writes"].as_u64().is_some_and(|n| n > 0), "{}", r["field_regressions"]);
    for (name, v) in fr {
        assert!(v["error"].is_null(), "{name}: {v}");
        assert_eq!(v["responses"], 0, "{name} reached dataplanes: {v}");
    }
}

#[test]
fn harness_smoke_at_200_dataplanes_with_the_policy_mix() {
    let r = smoke(&["--policy-mix"]);
    assert_eq!(r["config"]["policy_mix"], true);
    assert_eq!(r["cold"]["tls"], false, "{}", r["cold"]);
}

/// Kuma's defaults on the DP server (every simulated sidecar verifies the generated
/// certificate and presents its own dataplane token, joiners in the churn too) and mesh
/// mTLS: every sidecar is configured only once its certificate arrived over SDS, a
/// permission change reaches only the instances of its service, a rotation wave reaches all.
#[test]
fn harness_smoke_at_200_dataplanes_over_tls_with_tokens_and_mtls() {
    let r = smoke(&["--secure", "--mtls"]);
    assert_eq!(r["config"]["secure"], true);
    assert_eq!(r["cold"]["tls"], true, "{}", r["cold"]);
    assert_eq!(r["cold"]["tokens"], true, "{}", r["cold"]);
    assert!(r["cold"]["tokens_issued_s"].as_f64().unwrap() > 0.0, "{}", r["cold"]);
    let p = &r["targeted_permission"];
    assert_eq!(p["lost"], 0, "{p}");
    assert_eq!(p["spurious_pushes"], 0, "{p}");
    assert!(p["affected_dataplanes"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(r["rotation_wave"]["dataplanes"], 200, "{}", r["rotation_wave"]);
    assert!(r["rotation_wave"]["all_rotated_ms"].is_number(), "{}", r["rotation_wave"]);
}

/// `--cp-instances 3`: the fleet spread over three higuma instances on one Postgres (the
/// harness starts its own); every dataplane configured, changes made on the first instance
/// reach consumers on the others, and each instance reports its own Postgres query rate.
#[test]
fn harness_spreads_the_fleet_over_three_instances() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("multi.json");
    let status = Command::new(env!("CARGO_BIN_EXE_higuma-load"))
        .args(["run", "--store", "postgres", "--cp-instances", "3"])
        .args(["--services", "10", "--instances", "6", "--outbounds", "3", "--ramp", "1"])
        .args(["--idle", "2", "--settle", "1", "--changes", "6", "--churn", "2", "--churn-rate", "10", "--check"])
        .arg("--higuma")
        .arg(env!("CARGO_BIN_EXE_higuma"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "higuma-load failed");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["config"]["cp_instances"], 3);
    assert_eq!(r["cold"]["configured"], 60, "{}", r["cold"]);
    assert_eq!(r["targeted"]["lost"], 0, "{}", r["targeted"]);
    assert_eq!(r["targeted"]["instances"], 3, "{}", r["targeted"]);
    quiet_writes_reached_nobody(&r, 60);
    // On Postgres the burst rewrites the DataplaneInsight rows written so far behind the
    // instances' backs (checked above: no response).
    assert!(r["field_regressions"]["status_burst"].is_object(), "{}", r["field_regressions"]);
    let cross = &r["targeted"]["cross_instance"];
    assert!(cross["count"].as_u64().is_some_and(|n| n > 0), "writes reached other instances: {cross}");
    for window in ["idle", "churn"] {
        let qps = r[window]["pg_queries_per_s_by_instance"].as_array().cloned().unwrap_or_default();
        assert_eq!(qps.len(), 3, "{window}: {}", r[window]);
        // Every instance talks to Postgres (lease, listener checks) and is counted.
        assert!(qps.iter().all(|q| q.as_f64().is_some_and(|q| q > 0.0)), "{window}: {qps:?}");
    }
}
