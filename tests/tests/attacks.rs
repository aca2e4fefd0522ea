//! The attacks of issue 11, replayed against the real image under QEMU, one guest for the
//! whole suite (phases run in order; each ends by checking that a legitimate job still
//! succeeds). Figures are printed for the closing note: `cargo test -p pupa-tests --test
//! attacks -- --nocapture`.
//!
//! Every loop here is bounded in count and time and talks only to 127.0.0.1.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pupa_host::client::jobspec::JobSpec;
use pupa_host::client::{self, ClientError, Connection, EvidencePolicy, VerifiedWorker};
use pupa_host::vm::Guest;
use pupa_protocol::frame::{FrameDecoder, Kind, MAX_JOB_FRAME};
use pupa_protocol::job::{DType, Job, Op};
use pupa_protocol::msg::{ErrorCode, Hello, Message, SealedJob};
use pupa_protocol::seal::{Aead, KeyPair};
use pupa_protocol::serde_bytes::ByteBuf;
use pupa_protocol::PROTOCOL_VERSION;
use pupa_tests::boot_with_nic;

struct Target {
    guest: Guest,
    addr: String,
}

fn start() -> Target {
    let (guest, port) = boot_with_nic();
    Target {
        guest,
        addr: format!("127.0.0.1:{port}"),
    }
}

impl Target {
    fn connect(&self) -> Connection {
        Connection::connect(&self.addr, None, Duration::from_secs(60)).expect("connect")
    }

    fn worker(&self, c: &mut Connection) -> VerifiedWorker {
        let policy = EvidencePolicy {
            allow_insecure_dev: true,
            ..Default::default()
        };
        client::fetch_and_verify(c, &policy).expect("evidence")
    }

    /// A small legitimate job on a fresh connection (retrying on `Busy`, as clients do, for
    /// at most 20 s); its round trip.
    fn small_job(&self) -> Duration {
        let policy = EvidencePolicy {
            allow_insecure_dev: true,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut c, w) = loop {
            let mut c = self.connect();
            match client::fetch_and_verify(&mut c, &policy) {
                Ok(w) => break (c, w),
                Err(ClientError::Worker(e))
                    if e.code == ErrorCode::Busy && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("evidence: {e}"),
            }
        };
        let spec =
            JobSpec::from_json(r#"{"op":"matmul","m":16,"n":16,"k":16,"dtype":"f32","seed":9}"#)
                .unwrap();
        let t = Instant::now();
        let out = client::run_job(&mut c, &w, spec.build().unwrap().job).expect("small job");
        let rt = t.elapsed();
        assert!(spec.check(&out.result).unwrap().passed);
        rt
    }

    /// Drains the console for `d`, returning the lines seen.
    fn console_for(&mut self, d: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        let _ = self.guest.wait_for(
            "nothing",
            d,
            |_| false,
            |l| {
                println!("guest | {l}");
                lines.push(l.to_string());
            },
        );
        assert!(
            self.guest.is_running(),
            "the guest died: {:?}",
            self.guest.console
        );
        lines
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn header(kind: Kind, len: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&[PROTOCOL_VERSION, kind as u8]);
    h
}

/// Reads whatever the guest answers until it closes (or `limit`), decoded.
fn replies(s: &mut TcpStream, limit: Duration) -> Vec<Message> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    replies_from(&buf)
}

/// Finding 1: connections whose data and FIN arrive together, or that connect and close,
/// used to leak slots for good.
fn half_closes(t: &mut Target) {
    let hello = Message::Hello(Hello {}).to_frame().unwrap();
    let mut answered = 0;
    for i in 0..50 {
        let mut s = TcpStream::connect(&t.addr).unwrap();
        if i % 2 == 0 {
            s.write_all(&hello).unwrap();
            s.shutdown(Shutdown::Write).unwrap(); // nc -N
            let r = replies(&mut s, Duration::from_secs(30));
            assert!(
                matches!(&r[..], [Message::Evidence(_)]),
                "half-close {i}: {r:?}"
            );
            answered += 1;
        } // odd: connect and close at once
    }
    let rt = t.small_job();
    println!("attack 1: 50 half-closed connections ({answered} answered before close); then a job in {rt:?}");
}

/// Findings 2 and 5: shapes the kernels cannot bound get InvalidJob, not a crash or minutes
/// of work.
fn absurd_shapes(t: &mut Target) {
    let mut c = t.connect();
    let w = t.worker(&mut c);
    let attn = |seq_q: u32, seq_k: u32, dim: u32| {
        let q = (seq_q * dim * 2) as usize;
        let kv = (seq_k as usize) * (dim as usize) * 2;
        Job {
            job_id: rand_id(),
            op: Op::Attention {
                seq_q,
                seq_k,
                heads: 1,
                kv_heads: 1,
                dim,
                causal: false,
            },
            dtype: DType::Bf16,
            tensors: vec![
                ByteBuf::from(vec![0u8; q]),
                ByteBuf::from(vec![0u8; kv]),
                ByteBuf::from(vec![0u8; kv]),
            ],
            reply_key: [0; 32],
            reply_aead: Aead::Aes256Gcm,
            client_seq: 0,
            voucher: ByteBuf::new(),
        }
    };
    for (what, job) in [
        ("dim 200,000", attn(1, 1, 200_000)),
        ("seq_k 5,000,000 dim 1", attn(1, 5_000_000, 1)),
    ] {
        let t0 = Instant::now();
        match client::run_job(&mut c, &w, job) {
            Err(ClientError::Worker(e)) => {
                assert_eq!(e.code, ErrorCode::InvalidJob, "{what}: {e:?}");
                println!(
                    "attack 2/5: {what}: InvalidJob in {:?}: {}",
                    t0.elapsed(),
                    e.detail
                );
            }
            other => panic!("{what}: expected InvalidJob, got {other:?}"),
        }
    }
    t.small_job();
}

/// Distinct test values (ids, key seeds): a counter mixed with the clock and the pid.
fn rand_id() -> [u8; 16] {
    use std::sync::atomic::AtomicU64;
    static CTR: AtomicU64 = AtomicU64::new(0);
    let n = CTR.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n ^ u64::from(std::process::id()) << 40).to_le_bytes());
    id[8..].copy_from_slice(&t.to_le_bytes());
    id
}

/// Finding 4: slow-drip and idle connections must not starve a legitimate client.
fn slow_drip_and_idle(t: &mut Target) {
    let unloaded: Vec<Duration> = (0..9).map(|_| t.small_job()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..16 {
        let (addr, stop) = (t.addr.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            // Announce a 1 MiB job and send it one byte every 2 s; reconnect when closed.
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(mut s) = TcpStream::connect(&addr) else {
                    break;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                let mut bytes = header(Kind::SealedJob, 1 << 20);
                bytes.resize(1 << 20, 0x5a);
                for b in bytes.iter().take(64) {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    let mut sink = [0u8; 256];
                    match s.read(&mut sink) {
                        Ok(0) => break,
                        Err(e)
                            if e.kind() != ErrorKind::WouldBlock
                                && e.kind() != ErrorKind::TimedOut =>
                        {
                            break
                        }
                        _ => {}
                    }
                    thread::sleep(Duration::from_millis(1950 + 10 * i));
                }
            }
        }));
    }
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&t.addr).unwrap())
        .collect();
    thread::sleep(Duration::from_secs(3));
    let loaded: Vec<Duration> = (0..9).map(|_| t.small_job()).collect();
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join().unwrap();
    }
    drop(idle);
    let (u, l) = (median(unloaded), median(loaded));
    println!(
        "attack 4: small job median {u:?} unloaded, {l:?} under 16 slow-drip + 8 idle connections ({:.2}x)",
        l.as_secs_f64() / u.as_secs_f64()
    );
}

/// How many connections the guest holds at once: 100 connections each start a 64 MiB
/// frame (an unfinished frame is not idle, so not evictable, and its deadline is 74 s); the
/// guest holds as many as it has slots, answers `Busy` on its spare sockets, and the VMM's
/// connection attempts beyond those are reset.
fn connections_held(t: &mut Target) {
    let mut start = header(Kind::SealedJob, MAX_JOB_FRAME);
    start.push(0);
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(&t.addr).unwrap();
            s.write_all(&start).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    let (mut held, mut busy, mut reset) = (Vec::new(), 0, 0);
    for mut s in conns {
        s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                held.push(s)
            }
            Ok(n) if n > 0 => {
                let r = replies_from(&buf[..n]);
                assert!(
                    matches!(&r[..], [Message::Error(e)] if e.code == ErrorCode::Busy),
                    "expected Busy, got {r:?}"
                );
                busy += 1;
            }
            Ok(_) | Err(_) => reset += 1,
        }
    }
    let lines = t.console_for(Duration::from_millis(500));
    let most = t
        .guest
        .console
        .iter()
        .chain(&lines)
        .rev()
        .find_map(|l| l.strip_prefix("pupa: connections high-water "))
        .map(str::to_string);
    println!(
        "connections: {} holding an unfinished frame when sampled, {busy} answered Busy, {reset} reset (no socket free); guest: {}",
        held.len(),
        most.as_deref().unwrap_or("(not reported)")
    );
    assert!(
        held.len() >= 8 && busy >= 1,
        "{} held, {busy} busy",
        held.len()
    );
    // With every slot held by an unfinished frame, a new client is told to retry.
    let mut s = TcpStream::connect(&t.addr).unwrap();
    let _ = s.write_all(&Message::Hello(Hello {}).to_frame().unwrap());
    let r = replies(&mut s, Duration::from_secs(20));
    assert!(
        r.is_empty() || matches!(&r[..], [Message::Error(e)] if e.code == ErrorCode::Busy),
        "a client beyond the slots: {r:?}"
    );
    drop(held);
    t.small_job();
}

fn replies_from(bytes: &[u8]) -> Vec<Message> {
    let mut d = FrameDecoder::new();
    d.feed(bytes);
    let mut v = Vec::new();
    while let Ok(Some(f)) = d.next_frame() {
        v.push(Message::from_frame(&f).expect("guest frames decode"));
    }
    v
}

/// Finding 3: 8 connections each announcing a 64 MiB frame and sending 63 MiB of garbage.
fn garbage_frames(t: &mut Target) {
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = t.addr.clone();
            thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
                let _ = s.write_all(&header(Kind::SealedJob, MAX_JOB_FRAME));
                let chunk = vec![0xeeu8; 1 << 20];
                for _ in 0..63 {
                    if s.write_all(&chunk).is_err() {
                        break; // refused (Busy) and closed
                    }
                }
                let r = replies(&mut s, Duration::from_secs(5));
                r.iter()
                    .any(|m| matches!(m, Message::Error(e) if e.code == ErrorCode::Busy))
            })
        })
        .collect();
    let busy = threads
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|b| *b)
        .count();
    let lines = t.console_for(Duration::from_secs(1));
    let hw = t
        .guest
        .console
        .iter()
        .chain(&lines)
        .rev()
        .find_map(|l| l.strip_prefix("pupa: memory budget high-water "))
        .map(str::to_string);
    let rt = t.small_job();
    println!(
        "attack 3: 8 x 63 MiB of a 64 MiB garbage frame in {:?}: {busy} answered Busy; budget high-water {}; then a job in {rt:?}",
        start.elapsed(),
        hw.as_deref().unwrap_or("(not reported)")
    );
}

/// Finding 6: a replay after 20,000 jobs is still refused.
fn replay_after_many_jobs(t: &mut Target) {
    let mut c = t.connect();
    let w = t.worker(&mut c);
    let spec =
        JobSpec::from_json(r#"{"op":"matmul","m":1,"n":1,"k":1,"dtype":"f32","seed":1}"#).unwrap();
    let mut job = spec.build().unwrap().job;
    let me = KeyPair::derive(&[0x42; 32]);
    job.reply_key = me.pk;
    job.client_seq = client::next_client_seq();
    let first =
        Message::SealedJob(SealedJob::seal(&job, &w.hpke_pk, Aead::Aes256Gcm, &[1; 32]).unwrap())
            .to_frame()
            .unwrap();
    c.send_raw(&first).unwrap();
    assert!(matches!(c.recv().unwrap(), Message::SealedResult(_)));
    assert!(matches!(c.recv().unwrap(), Message::Receipt(_)));
    // 20,000 jobs, pipelined in batches of 100 on one connection.
    let t0 = Instant::now();
    let small = spec.build().unwrap().job;
    for _ in 0..200 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let mut j = small.clone();
            j.reply_key = KeyPair::derive(&rand_id_32()).pk;
            j.client_seq = client::next_client_seq();
            let sj = SealedJob::seal(&j, &w.hpke_pk, Aead::Aes256Gcm, &rand_id_32()).unwrap();
            batch.extend(Message::SealedJob(sj).to_frame().unwrap());
        }
        c.send_raw(&batch).unwrap();
        for _ in 0..100 {
            assert!(matches!(c.recv().unwrap(), Message::SealedResult(_)));
            assert!(matches!(c.recv().unwrap(), Message::Receipt(_)));
        }
    }
    let took = t0.elapsed();
    c.send_raw(&first).unwrap();
    match c.recv().unwrap() {
        Message::Error(e) => assert_eq!(e.code, ErrorCode::Replay, "{e:?}"),
        m => panic!("the replay was not refused: {m:?}"),
    }
    println!("attack 6: 20,000 jobs in {took:?}; the first job replayed after them: Replay");
}

fn rand_id_32() -> [u8; 32] {
    let a = rand_id();
    let b = rand_id();
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&a);
    k[16..].copy_from_slice(&b);
    k[0] ^= 0x5a;
    k
}

#[test]
fn attack_suite_against_the_real_image() {
    let mut t = start();
    let rt = t.small_job();
    println!("baseline: a small job in {rt:?}");
    half_closes(&mut t);
    connections_held(&mut t);
    slow_drip_and_idle(&mut t);
    garbage_frames(&mut t);
    replay_after_many_jobs(&mut t);
    absurd_shapes(&mut t);
    t.console_for(Duration::from_millis(200));
    t.guest.stop();
}
