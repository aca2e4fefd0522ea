//! The session API driven by a real (std, non-blocking) TCP loop, the way the guest's smoltcp
//! loop drives it: several clients at once, one stalled mid-frame and one sending garbage,
//! while the others get their evidence, results and receipts.

mod runtime_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pupa_protocol::evidence::{verify_dev, Evidence};
use pupa_protocol::frame::FrameDecoder;
use pupa_protocol::job::{DType, Layout};
use pupa_protocol::msg::{ErrorCode, Hello, Message, SealedJob};
use pupa_protocol::seal::KeyPair;
use pupa_runtime::{Clock, Config, DevTee, Session, Worker};
use runtime_common::*;

struct WallClock(Instant);
impl Clock for WallClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    let mut w = Worker::new(
        DevTee {
            image_sha384: IMAGE,
        },
        TestEntropy {
            seed: 9,
            ctr: 0,
            fail_after: None,
        },
        WallClock(Instant::now()),
        Config::default(),
    )
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut conns: Vec<(TcpStream, Session)> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        while let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(true).unwrap();
            conns.push((s, Session::new(&w)));
        }
        for (sock, sess) in &mut conns {
            if sess.wants_read() {
                match sock.read(&mut buf) {
                    Ok(0) => sess.peer_closed(&mut w),
                    // Fewer bytes are taken only once the session stops reading (here: a
                    // stream error closes it; this test never fills the output backlog).
                    Ok(n) => {
                        let used = sess.receive(&mut w, &buf[..n]);
                        assert!(used == n || !sess.wants_read(), "{used} of {n}");
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => sess.peer_closed(&mut w),
                }
            }
            sess.poll(&mut w);
            match sock.write(sess.pending()) {
                Ok(n) => sess.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => sess.advance(usize::MAX),
            }
        }
        conns.retain_mut(|(sock, sess)| {
            let close = sess.should_close();
            if close {
                let _ = sock.shutdown(std::net::Shutdown::Both);
            }
            !close
        });
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads until `n` messages arrived (or EOF); returns them and whether EOF was seen.
fn read_messages(s: &mut TcpStream, n: usize) -> (Vec<Message>, bool) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut d = FrameDecoder::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        let k = s.read(&mut buf).expect("reply within the timeout");
        if k == 0 {
            return (out, true);
        }
        d.feed(&buf[..k]);
        while let Some(f) = d.next_frame().unwrap() {
            out.push(Message::from_frame(&f).unwrap());
        }
    }
    (out, false)
}

fn hello(addr: std::net::SocketAddr) -> (TcpStream, Evidence) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&frame(&Message::Hello(Hello {}))).unwrap();
    let (m, _) = read_messages(&mut s, 1);
    let [Message::Evidence(ev)] = &m[..] else {
        panic!("{m:?}")
    };
    assert_eq!(verify_dev(ev), Ok(IMAGE));
    (s, ev.clone())
}

#[test]
fn several_clients_over_tcp_with_a_staller_and_garbage() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = std::thread::spawn({
        let stop = stop.clone();
        move || serve(listener, stop)
    });

    // A client that sends half a header and then nothing.
    let mut staller = TcpStream::connect(addr).unwrap();
    staller.write_all(&[10, 0, 0]).unwrap();

    // A client that sends garbage: a specific error, then the guest closes.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"\x01\x00\x00\x00\x07\x01x").unwrap();
    let (m, eof) = read_messages(&mut garbage, 2);
    assert!(eof);
    assert!(
        matches!(&m[..], [Message::Error(e)] if e.code == ErrorCode::UnsupportedVersion),
        "{m:?}"
    );

    // Meanwhile, four clients in parallel run jobs.
    let clients: Vec<_> = (0..4u8)
        .map(|i| {
            std::thread::spawn(move || {
                let (mut s, ev) = hello(addr);
                let c = Client {
                    key: KeyPair::derive(&[40 + i; 32]),
                    evidence: ev,
                };
                for j in 0..3u8 {
                    let (job, _, _) = matmul_job(&c, j, 16, 16, 16, DType::Bf16, Layout::ColMajor);
                    let sj =
                        SealedJob::seal(&job, &c.evidence.hpke_pk, job.reply_aead, &fresh_ikm())
                            .unwrap();
                    s.write_all(&frame(&Message::SealedJob(sj.clone())))
                        .unwrap();
                    let (replies, _) = read_messages(&mut s, 2);
                    let (res, r) = expect_result(
                        &c,
                        &sj,
                        &Exchange {
                            replies,
                            closed: false,
                        },
                    );
                    assert_eq!(
                        (res.dims.as_slice(), r.receipt.seq),
                        (&[16u32, 16][..], u64::from(j) + 1)
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }

    // The staller is still connected and unanswered; finishing its frame gets it served.
    staller
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        staller.read(&mut [0u8; 16]).is_err(),
        "no reply to a partial frame"
    );
    staller.write_all(&[0, 1, 1]).unwrap(); // len 10: a Hello with a 10-byte body
    staller.write_all(&[0; 10]).unwrap();
    let (m, _) = read_messages(&mut staller, 1);
    assert!(
        matches!(&m[..], [Message::Error(e)] if e.code == ErrorCode::MalformedMessage),
        "{m:?}"
    );

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
