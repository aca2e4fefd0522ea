//! Shared helpers of the relay and client tests.
#![allow(dead_code)]

pub mod guest_process;
pub mod procs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use guest_process::GuestProcess;
use pupa_host::client::{
    fetch_and_verify, run_job, BuiltJob, Connection, EvidencePolicy, JobOutcome, JobSpec,
    VerifiedWorker,
};
use pupa_host::relay::{GuestBackend, Journal, Relay, RelayConfig, StartError};
use pupa_protocol::msg::{ErrorCode, Message};

/// Dev evidence allowed (the fixture has no TEE).
pub const DEV: EvidencePolicy = EvidencePolicy::insecure_dev();

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pupa-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A relay on 127.0.0.1 (any port) in front of `guest`, optionally journaling receipts.
pub fn relay_to(
    guest: SocketAddr,
    cfg: RelayConfig,
    journal: Option<&std::path::Path>,
) -> (Relay, SocketAddr) {
    let j = journal.map(|p| Journal::open(p).unwrap());
    let relay = Relay::new(cfg, j, Some(guest));
    let addr = relay.spawn("127.0.0.1:0".parse().unwrap()).unwrap();
    (relay, addr)
}

/// Connects (plain TCP) with a 20 s reply timeout.
pub fn connect(addr: SocketAddr) -> Connection {
    Connection::connect(&addr.to_string(), None, Duration::from_secs(20)).unwrap()
}

/// A small matmul job.
pub fn small_job(seed: u64) -> BuiltJob {
    JobSpec::from_json(&format!(
        r#"{{"op":"matmul","m":8,"n":16,"k":32,"dtype":"f32","seed":{seed}}}"#
    ))
    .unwrap()
    .build()
    .unwrap()
}

/// Connects, verifies the evidence, runs a small job and checks it against the reference.
pub fn normal_job(addr: SocketAddr) -> (VerifiedWorker, JobOutcome) {
    let mut c = connect(addr);
    let w = fetch_and_verify(&mut c, &DEV).expect("evidence verifies");
    let job = small_job(rand::random());
    let out = run_job(&mut c, &w, job.job.clone()).expect("job succeeds");
    let chk = job.check(&out.result).unwrap();
    assert!(chk.passed, "result off the reference: {chk:?}");
    (w, out)
}

/// Reads messages until an `Error` frame, returning its code; `None` if the connection closed
/// without one.
pub fn next_error(c: &mut Connection) -> Option<ErrorCode> {
    loop {
        match c.recv() {
            Ok(Message::Error(e)) => return Some(e.code),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// The fixture as a supervised guest: restart means a fresh runtime with fresh keys.
pub struct FixtureBackend {
    /// The running guest.
    pub guest: Option<GuestProcess>,
    /// Starts so far.
    pub starts: usize,
}

impl GuestBackend for FixtureBackend {
    fn start(&mut self, _stop: &std::sync::atomic::AtomicBool) -> Result<SocketAddr, StartError> {
        let g = GuestProcess::start();
        let a = g.addr();
        self.guest = Some(g);
        self.starts += 1;
        Ok(a)
    }
    fn is_running(&mut self) -> bool {
        self.guest.as_ref().is_some_and(|g| g.is_running())
    }
    fn stop(&mut self) {
        if let Some(mut g) = self.guest.take() {
            g.kill();
        }
    }
}
