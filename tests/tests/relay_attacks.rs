//! The operator's side of issue 11 against the real image, through the real `pupa-host`
//! binary: 300 concurrent clients get Evidence or `Busy` and nothing else; `kill -9` of QEMU
//! mid-job and of `pupa-host` under load lose no acknowledged receipt (every receipt a client
//! got is in the journal) and leave no process behind.
//!
//! Bounded: a few client threads, loops capped in count and time, 127.0.0.1 only.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pupa_host::client::jobspec::JobSpec;
use pupa_host::client::{self, ClientError, Connection, EvidencePolicy};
use pupa_host::relay::journal::{read_all, Line, Record};
use pupa_host::vm::procfs::{children, gone};
use pupa_protocol::frame::FrameDecoder;
use pupa_protocol::msg::{ErrorCode, Hello, Message};
use pupa_tests::{start_host, workspace, HostProcess};

fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn qemu_of(host: &HostProcess) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = children(host.child.id(), "qemu")
            .into_iter()
            .find(|&c| !gone(c))
        {
            return c;
        }
        assert!(Instant::now() < deadline, "no QEMU child of pupa-host");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Job hashes in the journal (every line must parse).
fn journaled(path: &Path) -> HashSet<String> {
    read_all(path)
        .unwrap()
        .into_iter()
        .map(|(n, l)| match l {
            Ok(Line::Record(Record::Receipt { job_hash, .. })) => job_hash,
            other => panic!("journal line {n}: {other:?}"),
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Clients running small jobs until `stop`, recording every receipt they were given; they
/// reconnect (fresh evidence) after an error, as a client must after a restart.
fn load(
    addr: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|i| {
            let (addr, stop) = (addr.to_string(), stop.clone());
            thread::spawn(move || {
                let policy = EvidencePolicy {
                    allow_insecure_dev: true,
                    ..Default::default()
                };
                let spec = JobSpec::from_json(&format!(
                    r#"{{"op":"matmul","m":32,"n":32,"k":32,"dtype":"f32","seed":{i}}}"#
                ))
                .unwrap();
                let mut acked = Vec::new();
                let end = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let Ok(mut c) = Connection::connect(&addr, None, Duration::from_secs(30))
                    else {
                        thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    let Ok(w) = client::fetch_and_verify(&mut c, &policy) else {
                        thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        match client::run_job(&mut c, &w, spec.build().unwrap().job) {
                            Ok(out) => acked.push(hex(&out.job_hash)),
                            Err(ClientError::Worker(_)) | Err(_) => break,
                        }
                    }
                }
                acked
            })
        })
        .collect()
}

#[test]
fn three_hundred_clients_get_evidence_or_busy() {
    let dir = tempdir("hellos");
    let host = start_host(&dir.join("journal"));
    let hello = Message::Hello(Hello {}).to_frame().unwrap();
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    let threads: Vec<_> = (0..300)
        .map(|_| {
            let (addr, hello, counts) = (host.addr.clone(), hello.clone(), counts.clone());
            thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("the relay accepts");
                // Generous: under TCG a burst of 300 connections queues in the VMM's
                // user network stack for tens of seconds before the guest sees them.
                // Two of four runs on 2026-12-03 left some clients waiting past 150 s (an open question:
                // stop 17 passed at 150 s); the property checked is an answer, not its latency.
                s.set_read_timeout(Some(Duration::from_secs(360))).unwrap();
                s.write_all(&hello).unwrap();
                let mut d = FrameDecoder::new();
                let mut buf = [0u8; 8192];
                let m = loop {
                    let n = s.read(&mut buf).expect("an answer, not a reset");
                    assert!(n > 0, "EOF without an answer");
                    d.feed(&buf[..n]);
                    if let Some(f) = d.next_frame().unwrap() {
                        break Message::from_frame(&f).unwrap();
                    }
                };
                let mut c = counts.lock().unwrap();
                match m {
                    Message::Evidence(_) => c.0 += 1,
                    Message::Error(e) if e.code == ErrorCode::Busy => c.1 += 1,
                    other => panic!("expected Evidence or Busy, got {other:?}"),
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("every client got Evidence or Busy");
    }
    let (ev, busy) = *counts.lock().unwrap();
    println!("300 concurrent Hellos through pupa-host: {ev} Evidence, {busy} Busy");
    assert_eq!(ev + busy, 300);
    assert!(ev >= 8);
}

#[test]
fn kill_9_of_qemu_or_pupa_host_loses_no_acknowledged_receipt() {
    let dir = tempdir("kill9");
    let journal = dir.join("journal");
    let host = start_host(&journal);

    // kill -9 QEMU mid-job: the supervisor restarts the guest, clients re-fetch evidence.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&host.addr, 3, &stop);
    thread::sleep(Duration::from_secs(5));
    let qemu = qemu_of(&host);
    kill9(qemu);
    let t = Instant::now();
    let restarted = loop {
        let q = children(host.child.id(), "qemu")
            .into_iter()
            .find(|&c| c != qemu && !gone(c));
        if let Some(q) = q {
            break q;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "guest not restarted"
        );
        thread::sleep(Duration::from_millis(100));
    };
    thread::sleep(Duration::from_secs(10)); // jobs on the restarted guest
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let stored = journaled(&journal);
    let missing = acked.iter().filter(|h| !stored.contains(*h)).count();
    println!(
        "kill -9 QEMU mid-job: {} receipts acknowledged, {} in the journal, {missing} missing",
        acked.len(),
        stored.len()
    );
    assert_eq!(missing, 0);
    assert!(!acked.is_empty());

    // kill -9 pupa-host under load: its QEMU goes with it; the journal holds every receipt.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&host.addr, 3, &stop);
    thread::sleep(Duration::from_secs(5));
    kill9(host.child.id());
    let t = Instant::now();
    while !gone(restarted) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "QEMU outlived pupa-host"
        );
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let acked2: Vec<String> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let stored = journaled(&journal);
    let missing = acked2.iter().filter(|h| !stored.contains(*h)).count();
    println!(
        "kill -9 pupa-host under load: {} more receipts acknowledged, journal now {} (all readable), {missing} missing; QEMU gone in {:?}",
        acked2.len(),
        stored.len(),
        t.elapsed()
    );
    assert_eq!(missing, 0);
}

fn tempdir(name: &str) -> PathBuf {
    let d = workspace()
        .join("target")
        .join("relay-attacks")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
