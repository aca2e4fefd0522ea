//! The relay end to end against the guest runtime in a host process (no QEMU): jobs, bad
//! input, a guest that dies with a job in flight, TLS, concurrency.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::guest_process::GuestProcess;
use common::*;
use pupa_host::client::{fetch_and_verify, run_job, ClientError, EvidencePolicy, JobSpec};
use pupa_host::relay::journal::{read_all, Line, Record};
use pupa_host::relay::{supervise, RelayConfig, Supervision, JOB_LOST_DETAIL};
use pupa_protocol::frame::{encode_frame, Kind, MAX_JOB_FRAME};
use pupa_protocol::msg::{ErrorCode, Message, SealedJob};
use pupa_protocol::receipt::job_hash;
use pupa_protocol::seal::{Aead, KeyPair};

#[test]
fn jobs_through_the_relay_match_the_reference_and_receipts_are_journaled() {
    let guest = GuestProcess::start();
    let dir = temp_dir("journal");
    let log = dir.join("receipts.jsonl");
    let (relay, addr) = relay_to(guest.addr(), RelayConfig::default(), Some(&log));
    let mut c = connect(addr);
    let w = fetch_and_verify(&mut c, &DEV).unwrap();
    assert_eq!(w.hpke_pk, guest.keys().hpke_pk);
    assert_eq!(w.receipt_pk, guest.keys().receipt_pk);
    let specs = [
        r#"{"op":"matmul","m":33,"n":17,"k":65,"dtype":"f32","seed":3}"#,
        r#"{"op":"matmul","m":16,"n":16,"k":64,"dtype":"bf16","seed":4}"#,
        r#"{"op":"attention","seq_q":16,"seq_k":32,"heads":4,"kv_heads":2,"dim":64,"causal":true,"dtype":"f16","seed":5}"#,
    ];
    let mut hashes = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let job = JobSpec::from_json(s).unwrap().build().unwrap();
        let out = run_job(&mut c, &w, job.job.clone()).unwrap();
        let chk = job.check(&out.result).unwrap();
        assert!(chk.passed, "{s}: {chk:?}");
        // Billed in the protocol's work units (flops, scores and bytes moved).
        let units = job.job.validate().unwrap().units;
        assert_eq!(out.receipt.statement.receipt.units, units);
        // One reply key per job, so each receipt is the first of its client.
        assert_eq!(out.receipt.statement.receipt.seq, 1, "job {i}");
        hashes.push(out.job_hash);
    }
    drop(c);
    let lines = read_all(&log).unwrap();
    assert_eq!(lines.len(), 3);
    for ((_, l), h) in lines.iter().zip(&hashes) {
        let want: String = h.iter().map(|b| format!("{b:02x}")).collect();
        match l {
            Ok(Line::Record(Record::Receipt { job_hash, .. })) => assert_eq!(job_hash, &want),
            other => panic!("not a receipt record: {other:?}"),
        }
    }
    let st = relay.stats();
    assert_eq!((st.jobs_forwarded, st.receipts, st.lost), (3, 3, 0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dev_evidence_is_refused_unless_allowed() {
    let guest = GuestProcess::start();
    let (_relay, addr) = relay_to(guest.addr(), RelayConfig::default(), None);
    let mut c = connect(addr);
    let e = fetch_and_verify(&mut c, &EvidencePolicy::STRICT).unwrap_err();
    assert!(matches!(e, ClientError::InsecureDevRefused), "{e}");
}

/// Sends `bytes` on a fresh raw connection through the relay and returns the error code
/// answered (None: closed without a reply). `half_close`: end the stream after the bytes.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> Option<ErrorCode> {
    if half_close {
        // `Connection` has no half-close; use a raw socket.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let mut d = pupa_protocol::frame::FrameDecoder::new();
        d.feed(&all);
        while let Ok(Some(f)) = d.next_frame() {
            if let Ok(Message::Error(e)) = Message::from_frame(&f) {
                return Some(e.code);
            }
        }
        return None;
    }
    let mut c = connect(addr);
    c.send_raw(bytes).unwrap();
    next_error(&mut c)
}

#[test]
fn bad_input_gets_specific_errors_and_the_next_job_succeeds() {
    let guest = GuestProcess::start();
    let (relay, addr) = relay_to(guest.addr(), RelayConfig::default(), None);
    let w = {
        let mut c = connect(addr);
        fetch_and_verify(&mut c, &DEV).unwrap()
    };
    let mut job = small_job(1);
    job.job.reply_key = KeyPair::derive(&rand::random()).pk;
    job.job.client_seq = pupa_host::client::next_client_seq();
    let sealed = SealedJob::seal(&job.job, &w.hpke_pk, Aead::Aes256Gcm, &rand::random()).unwrap();
    let job_frame = Message::SealedJob(sealed.clone()).to_frame().unwrap();

    // Truncated frame: half a sealed job, then end of stream.
    let half = &job_frame[..job_frame.len() / 2];
    assert_eq!(
        raw_exchange(addr, half, true),
        Some(ErrorCode::TruncatedFrame)
    );
    normal_job(addr);

    // Oversized length.
    let mut big = (MAX_JOB_FRAME + 1).to_le_bytes().to_vec();
    big.extend([1, Kind::SealedJob as u8, 0, 0, 0]);
    assert_eq!(
        raw_exchange(addr, &big, false),
        Some(ErrorCode::FrameTooLarge)
    );
    normal_job(addr);

    // Garbage bytes.
    let mut garbage: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    garbage[4] = 0xEE; // the version byte of the first "header"
    assert_eq!(
        raw_exchange(addr, &garbage, false),
        Some(ErrorCode::UnsupportedVersion)
    );
    // Garbage that happens to carry version 1 and an unknown kind.
    let mut g2 = garbage.clone();
    (g2[4], g2[5]) = (1, 0xEE);
    assert_eq!(raw_exchange(addr, &g2, false), Some(ErrorCode::UnknownKind));
    normal_job(addr);

    // Wrong protocol version.
    let mut v2 = encode_frame(Kind::Hello, &[]).unwrap();
    v2[4] = 2;
    assert_eq!(
        raw_exchange(addr, &v2, false),
        Some(ErrorCode::UnsupportedVersion)
    );
    normal_job(addr);

    // A job sealed to another key.
    let other = KeyPair::derive(&rand::random());
    let foreign =
        SealedJob::seal(&job.job, &other.pk, Aead::ChaCha20Poly1305, &rand::random()).unwrap();
    assert_eq!(
        raw_exchange(
            addr,
            &Message::SealedJob(foreign).to_frame().unwrap(),
            false
        ),
        Some(ErrorCode::WrongRecipient)
    );
    normal_job(addr);

    // A tampered job (sealed to us, one ciphertext bit flipped).
    let mut tampered = sealed.clone();
    tampered.ciphertext[10] ^= 1;
    assert_eq!(
        raw_exchange(
            addr,
            &Message::SealedJob(tampered).to_frame().unwrap(),
            false
        ),
        Some(ErrorCode::OpenFailed)
    );
    normal_job(addr);

    // A replayed sealed job: the first run succeeds, the replay (on another connection) is refused.
    let mut c = connect(addr);
    c.send_raw(&job_frame).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::SealedResult(_)));
    assert!(matches!(c.recv().unwrap(), Message::Receipt(_)));
    assert_eq!(
        raw_exchange(addr, &job_frame, false),
        Some(ErrorCode::Replay)
    );
    normal_job(addr);

    // A malformed body in a well-formed frame keeps the connection usable.
    let mut c = connect(addr);
    c.send_raw(&encode_frame(Kind::SealedJob, &[0xff; 40]).unwrap())
        .unwrap();
    assert_eq!(next_error(&mut c), Some(ErrorCode::MalformedMessage));
    let w2 = fetch_and_verify(&mut c, &DEV).unwrap();
    let out = run_job(&mut c, &w2, small_job(9).job).unwrap();
    assert_eq!(out.receipt.statement.receipt.seq, 1);
    assert_eq!(relay.stats().lost, 0);
}

#[test]
fn a_stalled_or_garbage_client_does_not_block_others() {
    let guest = GuestProcess::start();
    let (_relay, addr) = relay_to(guest.addr(), RelayConfig::default(), None);
    // A client that sends half a header and then nothing, and one that floods garbage.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&[5, 0, 0]).unwrap();
    let flood = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let junk = vec![0xA5u8; 1 << 20];
        for _ in 0..8 {
            if s.write_all(&junk).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for _ in 0..5 {
        normal_job(addr);
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    flood.join().unwrap();
    drop(stalled);
}

#[test]
fn eight_concurrent_clients_all_get_verified_results() {
    let guest = GuestProcess::start();
    let (relay, addr) = relay_to(guest.addr(), RelayConfig::default(), None);
    let hs: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut c = connect(addr);
                let w = fetch_and_verify(&mut c, &DEV).unwrap();
                for _ in 0..4 {
                    let job = small_job(rand::random());
                    let out = run_job(&mut c, &w, job.job.clone()).unwrap();
                    assert!(job.check(&out.result).unwrap().passed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(relay.stats().receipts, 32);
}

#[test]
fn a_guest_that_dies_is_restarted_and_jobs_in_flight_are_reported_lost() {
    let first = GuestProcess::start();
    let die = first.die_handle();
    let old_keys = first.keys();
    let (relay, addr) = relay_to(first.addr(), RelayConfig::default(), None);
    let stop = Arc::new(AtomicBool::new(false));
    let sup = {
        let (relay, stop) = (relay.clone(), stop.clone());
        thread::spawn(move || {
            let mut backend = FixtureBackend {
                guest: Some(first),
                starts: 0,
            };
            let sup = Supervision {
                poll: Duration::from_millis(20),
                health: None,
                ..Supervision::default()
            };
            supervise(&relay, &mut backend, &sup, &stop);
            backend.starts
        })
    };
    // Two clients with a verified worker; one more idle connection.
    let mut a = connect(addr);
    let wa = fetch_and_verify(&mut a, &DEV).unwrap();
    let mut b = connect(addr);
    let wb = fetch_and_verify(&mut b, &DEV).unwrap();
    // The guest dies as the job arrives.
    die.store(true, Ordering::SeqCst);
    let err = run_job(&mut a, &wa, small_job(2).job).unwrap_err();
    match err {
        ClientError::Worker(e) => {
            assert_eq!(e.code, ErrorCode::Internal);
            assert_eq!(e.detail, JOB_LOST_DETAIL);
        }
        e => panic!("expected the job-lost error, got {e}"),
    }
    // The other client had nothing in flight: its connection just ends.
    let e = run_job(&mut b, &wb, small_job(3).job).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Closed | ClientError::Io(_) | ClientError::Worker(_)
        ),
        "{e}"
    );
    // A new connection reaches the restarted guest, which has new keys.
    let t = Instant::now();
    let (w, _) = loop {
        let mut c = connect(addr);
        match fetch_and_verify(&mut c, &DEV) {
            Ok(w) => {
                let out = run_job(&mut c, &w, small_job(4).job).unwrap();
                break (w, out);
            }
            Err(e) if t.elapsed() < Duration::from_secs(10) => {
                eprintln!("waiting for the restart: {e}");
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("restarted guest unreachable: {e}"),
        }
    };
    assert_ne!(w.hpke_pk, old_keys.hpke_pk);
    assert!(relay.stats().lost >= 1);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(sup.join().unwrap(), 1, "restarted exactly once");
}

#[test]
fn a_sealed_job_is_the_same_bytes_on_both_sides_of_the_relay() {
    // The relay forwards the sealed job unchanged: the guest's receipt names the hash of
    // exactly the bytes the client sealed.
    let guest = GuestProcess::start();
    let (_relay, addr) = relay_to(guest.addr(), RelayConfig::default(), None);
    let mut c = connect(addr);
    let w = fetch_and_verify(&mut c, &DEV).unwrap();
    let job = small_job(11);
    let client = KeyPair::derive(&rand::random());
    let mut j = job.job.clone();
    j.reply_key = client.pk;
    j.client_seq = pupa_host::client::next_client_seq();
    let sealed = SealedJob::seal(&j, &w.hpke_pk, Aead::Aes256Gcm, &rand::random()).unwrap();
    let h = job_hash(&sealed.enc, &sealed.ciphertext);
    c.send(&Message::SealedJob(sealed)).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::SealedResult(_)));
    let Message::Receipt(r) = c.recv().unwrap() else {
        panic!("no receipt")
    };
    r.statement.verify(&w.receipt_pk).unwrap();
    assert_eq!(r.statement.receipt.job_hash, h);
}
