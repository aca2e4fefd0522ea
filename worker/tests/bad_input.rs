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
