//! The host cannot read jobs: a random canary goes into a job's tensor; every byte the host
//! saw — both TCP streams of the relay (recorded by independent proxies on either side), the
//! relay's logs at `trace` level, every file it wrote — is searched for it (raw and as hex):
//! not found. Meanwhile the guest's opened result contains the canary, proving the guest read it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::guest_process::GuestProcess;
use common::*;
use pupa_host::client::fetch_and_verify;
use pupa_protocol::job::{DType, Job, Layout, Op};
use pupa_protocol::msg::{Message, SealedJob};
use pupa_protocol::seal::{Aead, KeyPair};

type Tape = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy that records every byte in both directions.
fn recorder(target: SocketAddr) -> (SocketAddr, Tape) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let tape: Tape = Arc::default();
    let t = tape.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(a) = s else { continue };
            let Ok(b) = TcpStream::connect(target) else {
                continue;
            };
            for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                let t = t.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                t.lock().unwrap().extend_from_slice(&buf[..n]);
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, tape)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every 8-byte window of the canary, raw and as lowercase/uppercase hex.
fn find_canary(hay: &[u8], canary: &[u8]) -> Option<String> {
    for i in 0..=canary.len() - 8 {
        let w = &canary[i..i + 8];
        let hx = hex(w);
        for needle in [
            w.to_vec(),
            hx.clone().into_bytes(),
            hx.to_uppercase().into_bytes(),
        ] {
            if hay.windows(needle.len()).any(|x| x == needle.as_slice()) {
                return Some(format!("window {i} ({hx})"));
            }
        }
    }
    None
}

fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
}

#[test]
fn the_host_never_sees_the_canary_the_guest_does() {
    let guest = GuestProcess::start();
    let (guest_side, guest_tape) = recorder(guest.addr());
    let dir = temp_dir("canary");
    let log = std::fs::File::create(dir.join("relay.stderr")).unwrap();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_pupa-host"))
        .args([
            "run",
            "--guest-addr",
            &guest_side.to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--receipts-log")
        .arg(dir.join("receipts.jsonl"))
        .current_dir(&dir)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(relay.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let relay_addr: SocketAddr = line
        .trim()
        .strip_prefix("pupa-host: listening on ")
        .expect("ready line")
        .parse()
        .unwrap();
    let (client_side, client_tape) = recorder(relay_addr);

    // The canary: 8 random f32 in [1, 2) (32 random-looking bytes), A's first row; B = I.
    let canary_f: Vec<f32> = (0..8).map(|_| 1.0 + rand::random::<f32>()).collect();
    let canary: Vec<u8> = canary_f.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (m, k) = (4usize, 8usize);
    let mut a: Vec<u8> = canary.clone();
    a.extend((0..(m - 1) * k).flat_map(|i| (i as f32 * 0.25 - 3.0).to_le_bytes()));
    let b: Vec<u8> = (0..k * k)
        .flat_map(|i| (if i / k == i % k { 1.0f32 } else { 0.0 }).to_le_bytes())
        .collect();

    let mut c = connect(client_side);
    let w = fetch_and_verify(&mut c, &DEV).unwrap();
    let me = KeyPair::derive(&rand::random());
    let job = Job {
        job_id: rand::random(),
        op: Op::Matmul {
            m: m as u32,
            n: k as u32,
            k: k as u32,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
        },
        dtype: DType::F32,
        tensors: vec![serde_bytes::ByteBuf::from(a), serde_bytes::ByteBuf::from(b)],
        reply_key: me.pk,
        reply_aead: Aead::Aes256Gcm,
        client_seq: pupa_host::client::next_client_seq(),
        voucher: serde_bytes::ByteBuf::new(),
    };
    let sealed = SealedJob::seal(&job, &w.hpke_pk, Aead::Aes256Gcm, &rand::random()).unwrap();
    let enc = sealed.enc;
    let frame = Message::SealedJob(sealed).to_frame().unwrap();
    c.send_raw(&frame).unwrap();
    let Message::SealedResult(sr) = c.recv().unwrap() else {
        panic!("no sealed result")
    };
    let Message::Receipt(r) = c.recv().unwrap() else {
        panic!("no receipt")
    };
    r.statement.verify(&w.receipt_pk).unwrap();
    let result = sr.open(&me, &w.hpke_pk, &enc).unwrap();
    // The guest read the canary: row 0 of A·I is A's row 0, bit for bit.
    assert_eq!(
        &result.data[..32],
        canary.as_slice(),
        "the guest's result must carry the canary"
    );
    drop(c);
    thread::sleep(Duration::from_millis(300));
    relay.kill().unwrap();
    relay.wait().unwrap();
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);

    let client_bytes = client_tape.lock().unwrap().clone();
    let guest_bytes = guest_tape.lock().unwrap().clone();
    // The tapes did record the traffic: the sealed job crossed both hops unchanged.
    for (name, t) in [("client side", &client_bytes), ("guest side", &guest_bytes)] {
        assert!(
            t.windows(frame.len()).any(|x| x == frame.as_slice()),
            "{name} tape lacks the sealed job"
        );
    }
    let mut seen: Vec<(String, Vec<u8>)> = vec![
        ("client-side stream".into(), client_bytes),
        ("guest-side stream".into(), guest_bytes),
        ("relay stdout".into(), [line.into_bytes(), rest].concat()),
    ];
    files_under(&dir, &mut seen);
    // The search itself works: it finds the canary raw and as hex inside other bytes.
    assert!(find_canary(&[&b"xx"[..], &canary[5..20], b"yy"].concat(), &canary).is_some());
    assert!(find_canary(
        format!("log {} end", hex(&canary[9..30])).as_bytes(),
        &canary
    )
    .is_some());
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("receipts.jsonl"))
            && names.iter().any(|n| n.ends_with("relay.stderr")),
        "{names:?}"
    );
    let logs = std::fs::read_to_string(dir.join("relay.stderr")).unwrap();
    assert!(
        logs.contains("client frame") && logs.contains("SealedJob"),
        "trace logs were written:\n{logs}"
    );
    for (name, bytes) in &seen {
        if let Some(w) = find_canary(bytes, &canary) {
            panic!("the canary ({w}) appears in {name}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
