//! The client endpoint over TLS (rustls on both sides, a self-signed test certificate from
//! rcgen): jobs work, a client that does not trust the certificate is refused, a plain-TCP
//! client gets nothing it can use.

mod common;

use std::time::Duration;

use common::guest_process::GuestProcess;
use common::*;
use pupa_host::client::{fetch_and_verify, run_job, Connection, TlsClient};
use pupa_host::relay::tls::server_config;
use pupa_host::relay::RelayConfig;

fn cert(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn jobs_over_tls_and_untrusted_or_plain_clients_fail() {
    let dir = temp_dir("tls");
    let (crt, key) = cert(&dir, "relay");
    let (other_crt, _) = cert(&dir, "other");
    let guest = GuestProcess::start();
    let cfg = RelayConfig {
        tls: Some(server_config(&crt, &key).unwrap()),
        ..RelayConfig::default()
    };
    let (_relay, addr) = relay_to(guest.addr(), cfg, None);
    let t = Duration::from_secs(20);

    let tls = TlsClient::new(&crt, "localhost").unwrap();
    let mut c = Connection::connect(&addr.to_string(), Some(&tls), t).unwrap();
    let w = fetch_and_verify(&mut c, &DEV).unwrap();
    for seed in 0..3 {
        let job = small_job(seed);
        let out = run_job(&mut c, &w, job.job.clone()).unwrap();
        assert!(job.check(&out.result).unwrap().passed);
    }

    // Wrong trust anchor: the handshake fails.
    let untrusting = TlsClient::new(&other_crt, "localhost").unwrap();
    let mut c = Connection::connect(&addr.to_string(), Some(&untrusting), t).unwrap();
    assert!(fetch_and_verify(&mut c, &DEV).is_err());
    // Wrong name.
    let wrong_name = TlsClient::new(&crt, "example.org").unwrap();
    let mut c = Connection::connect(&addr.to_string(), Some(&wrong_name), t).unwrap();
    assert!(fetch_and_verify(&mut c, &DEV).is_err());
    // Plain TCP to the TLS endpoint.
    let mut c = Connection::connect(&addr.to_string(), None, Duration::from_secs(5)).unwrap();
    assert!(fetch_and_verify(&mut c, &DEV).is_err());
    // And the relay still serves.
    let mut c = Connection::connect(&addr.to_string(), Some(&tls), t).unwrap();
    let w = fetch_and_verify(&mut c, &DEV).unwrap();
    run_job(&mut c, &w, small_job(7).job).unwrap();

    // Missing or wrong files give specific errors.
    assert!(server_config(&dir.join("nope.crt"), &key).is_err());
    assert!(server_config(&key, &key).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
