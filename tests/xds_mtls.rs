//! Mesh mTLS over the real xDS server with a scripted Envoy: SDS sends only the secrets
//! Envoy names, they carry a certificate from the mesh CA in the store, and a rotation sends
//! the secrets again and nothing else (listeners and clusters name the secrets, so their
//! bytes do not change).

mod common;

use std::time::{Duration, Instant};

use common::ads::{grpc_env, CDS, LDS};
use higuma::daemon::Daemon;
use higuma::envoy::discovery::DiscoveryResponse;
use higuma::envoy::tls_secret::Secret;
use higuma::model::{rest, ResourceKey, ResourceType, Spec};
use higuma::xds::resource_kind::ResourceKind;
use protobuf::Message;
use serde_json::{json, Value};

const SDS: ResourceKind = ResourceKind::Secret;
const IDENTITY: &str = "identity_cert:secret:default";
const TRUST: &str = "mesh_ca:secret:default";

fn apply(d: &Daemon, value: Value) {
    let env = rest::from_json(value).unwrap();
    let key = ResourceKey::new(env.rtype, env.mesh.clone().unwrap_or_default(), &env.name);
    match d.store.get(&key) {
        Ok(cur) => d.store.update(&key, env.spec, cur.meta.version).map(|_| ()).unwrap(),
        Err(_) => d.store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).map(|_| ()).unwrap(),
    }
}

fn secrets(r: &DiscoveryResponse) -> Vec<Secret> {
    r.resources.iter().map(|a| Secret::parse_from_bytes(&a.value).unwrap()).collect()
}

fn leaf_serial(s: &[Secret]) -> String {
    let id = s.iter().find(|s| s.name == IDENTITY).expect("the identity secret");
    let cert = openssl::x509::X509::from_pem(id.tls_certificate().certificate_chain.inline_bytes()).unwrap();
    cert.serial_number().to_bn().unwrap().to_hex_str().unwrap().to_string()
}

#[test]
fn sds_serves_named_secrets_and_a_rotation_sends_only_them() {
    let mut config = common::test_config(60_000);
    config.defaults.skip_mesh_creation = true;
    let d = Daemon::start(config).unwrap();
    apply(
        &d,
        json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"],
               "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin",
                        "dpCert": {"rotation": {"expiration": "3s"}}}]}}),
    );
    apply(
        &d,
        json!({"type": "Dataplane", "mesh": "default", "name": "backend-1", "networking": {"address": "127.0.0.1",
               "inbound": [{"port": 9090, "servicePort": 9091, "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}}]}}),
    );
    let env = grpc_env();
    let mut envoy = common::ads::connect_to(&d, &env, "default.backend-1");
    let (cds, _, lds) = envoy.converge(&[]);
    // Only what Envoy names: the identity alone first.
    envoy.subscribe(SDS, &[IDENTITY]);
    let first = envoy.expect(SDS);
    assert_eq!(secrets(&first).iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [IDENTITY]);
    envoy.ack(&first, &[IDENTITY, TRUST]);
    let both = envoy.expect(SDS);
    let s = secrets(&both);
    assert_eq!(s.len(), 2, "both secrets once both are named");
    envoy.ack(&both, &[IDENTITY, TRUST]);
    // The trust bundle is the CA in the store; the certificate is signed by it.
    let ca = d.store.get(&ResourceKey::new(ResourceType::Secret, "default", "default.ca-builtin-cert-ca-1")).unwrap();
    let Spec::Secret(ca) = &ca.spec else { panic!() };
    let trust = s.iter().find(|s| s.name == TRUST).unwrap();
    assert_eq!(trust.validation_context().trusted_ca.inline_bytes(), ca.bytes());
    let ca_cert = openssl::x509::X509::from_pem(ca.bytes()).unwrap();
    let id = s.iter().find(|s| s.name == IDENTITY).unwrap();
    let chain = id.tls_certificate().certificate_chain.inline_bytes();
    assert!(higuma::mtls::issuer::chain_verifies(chain, ca.bytes()), "the chain leads to the mesh CA");
    // Leaves are signed by an issuing intermediate the CA certified (issuer.rs), which travels
    // in the chain.
    let certs = openssl::x509::X509::stack_from_pem(chain).unwrap();
    assert_eq!(certs.len(), 2, "leaf and intermediate");
    assert!(certs[1].verify(&ca_cert.public_key().unwrap()).unwrap());
    assert!(!certs[0].verify(&ca_cert.public_key().unwrap()).unwrap_or(false));
    let serial = leaf_serial(&s);

    // 3 s lifetime: re-issued at 2.4 s. Within 4 s, SDS responses only, with a new serial.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rotated = None;
    while Instant::now() < deadline {
        let Some(r) = envoy.recv(Duration::from_millis(200)) else { continue };
        assert_eq!(r.type_url, SDS.type_url(), "a rotation sent {} (version {})", r.type_url, r.version_info);
        envoy.ack(&r, &[IDENTITY, TRUST]);
        let s = secrets(&r);
        if leaf_serial(&s) != serial {
            rotated = Some(s);
        }
    }
    let rotated = rotated.expect("the certificate was rotated");
    assert_eq!(rotated.len(), 2);
    assert_eq!(
        rotated.iter().find(|s| s.name == TRUST).unwrap().validation_context().trusted_ca.inline_bytes(),
        ca.bytes()
    );
    // Nothing else moved: the same listeners and clusters.
    envoy.expect_nothing(Duration::from_millis(200));
    let _ = (CDS, LDS, cds, lds);
}
