//! Client misbehaviour: garbage bytes, half-closed sockets, truncated frames, too many
//! connections — each gets its specific error frame and/or close, and the worker keeps
//! serving everyone else.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{read_all_messages, temp_dir, WorkerProc};
use pupa_host::client::{fetch_and_verify, Connection, EvidencePolicy};
use pupa_protocol::msg::{ErrorCode, EvidenceRequest, Message};

const T: Duration = Duration::from_secs(30);

fn still_serves(w: &WorkerProc) {
    let mut c = Connection::connect(&w.addr.to_string(), None, T).unwrap();
    fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev()).expect("a fresh client is served");
}

fn error_code(m: &Message) -> ErrorCode {
    match m {
        Message::Error(e) => e.code,
        m => panic!("expected an error frame, got {:?}", m.kind()),
    }
}

fn evidence_request() -> Vec<u8> {
    Message::EvidenceRequest(EvidenceRequest { nonce: [9; 32] })
        .to_frame()
        .unwrap()
}

#[test]
fn garbage_half_close_and_truncation() {
    let dir = temp_dir("bad-input");
    let mut w = WorkerProc::start(&["--tee", "dev", "--compute", "cpu"], &dir);

    // Garbage (an HTTP request): one error frame, then the worker closes.
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (msgs, eof) = read_all_messages(&mut s, T);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(error_code(&msgs[0]), ErrorCode::UnsupportedVersion);
    assert!(eof, "the worker closes after a stream error");
    still_serves(&w);

    // Much more garbage than the worker reads before answering: the reply still arrives
    // (closing drains the rest instead of resetting the connection).
    let mut s = TcpStream::connect(w.addr).unwrap();
    let _ = s.write_all(&vec![0xA5; 256 * 1024]);
    let (msgs, _) = read_all_messages(&mut s, T);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    still_serves(&w);

    // A request, then the client half-closes: the answer still comes, then the close.
    let mut s = TcpStream::connect(w.addr).unwrap();
    s.write_all(&evidence_request()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (msgs, eof) = read_all_messages(&mut s, T);
    assert!(
        matches!(msgs.as_slice(), [Message::Evidence(e)] if e.nonce == [9; 32]),
        "{msgs:?}"
    );
    assert!(eof);

    // Half a frame, then half-close: TruncatedFrame, then the close.
    let mut s = TcpStream::connect(w.addr).unwrap();
    let req = evidence_request();
    s.write_all(&req[..req.len() / 2]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (msgs, eof) = read_all_messages(&mut s, T);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(error_code(&msgs[0]), ErrorCode::TruncatedFrame);
    assert!(eof);

    // A client that connects and vanishes (reset with a request in flight).
    for _ in 0..20 {
        let mut s = TcpStream::connect(w.addr).unwrap();
        let _ = s.write_all(&evidence_request());
        drop(s);
    }
    still_serves(&w);
    assert!(w.alive(), "{}", w.log());
    assert!(!w.log().contains("panicked"), "{}", w.log());
}

#[test]
fn connections_beyond_the_limit_are_answered_busy() {
    let dir = temp_dir("busy");
    let w = WorkerProc::start(
        &["--tee", "dev", "--compute", "cpu", "--max-connections", "2"],
        &dir,
    );
    // Two connections mid-frame: busy, not idle, so neither is evicted.
    let req = evidence_request();
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(w.addr).unwrap();
            s.write_all(&req[..10]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(w.addr).unwrap();
    let (msgs, eof) = read_all_messages(&mut third, T);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(error_code(&msgs[0]), ErrorCode::Busy);
    assert!(eof);
    // The held ones finish their frames and are answered.
    for s in held.iter_mut() {
        s.write_all(&req[10..]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (msgs, _) = read_all_messages(s, T);
        assert!(
            matches!(msgs.as_slice(), [Message::Evidence(_)]),
            "{msgs:?}"
        );
    }
    still_serves(&w);
}

#[test]
fn a_client_that_does_not_read_is_held_back_then_answered_in_full() {
    use std::io::Read;

    use pupa_protocol::frame::FrameDecoder;

    let dir = temp_dir("backpressure");
    let w = WorkerProc::start(&["--tee", "dev", "--compute", "cpu"], &dir);
    // ~15 MB of evidence replies (~300 bytes each): more than both sockets' kernel buffers
    // (a few MB on loopback) plus the 1 MiB backlog at which the session stops reading, so
    // the worker must hold the unread requests, not drop or mis-frame them.
    const N: usize = 50_000;
    let reqs: Vec<u8> = (0..N).flat_map(|_| evidence_request()).collect();
    let mut s = TcpStream::connect(w.addr).unwrap();
    let mut writer = s.try_clone().unwrap();
    let t = std::thread::spawn(move || writer.write_all(&reqs).is_ok());
    std::thread::sleep(Duration::from_millis(1000));
    // Meanwhile the others are served.
    still_serves(&w);
    s.set_read_timeout(Some(T)).unwrap();
    let (mut dec, mut got, mut buf) = (FrameDecoder::new(), 0, vec![0u8; 64 * 1024]);
    while got < N {
        let n = s.read(&mut buf).expect("replies keep coming");
        assert!(n > 0, "closed after {got} replies: {}", w.log());
        dec.feed(&buf[..n]);
        while let Ok(Some(f)) = dec.next_frame() {
            let m = Message::from_frame(&f).unwrap();
            assert!(
                matches!(m, Message::Evidence(ref e) if e.nonce == [9; 32]),
                "{:?}",
                m.kind()
            );
            got += 1;
        }
    }
    assert!(t.join().unwrap());
}
