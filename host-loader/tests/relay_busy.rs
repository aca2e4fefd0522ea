//! A full guest is not a dead guest: clients get `Busy` ("no free worker slot; retry"), never
//! "job lost", and every request gets exactly one answer.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;
use pupa_host::relay::{RelayConfig, BUSY_DETAIL};
use pupa_protocol::frame::{encode_frame, FrameDecoder, Kind};
use pupa_protocol::msg::{ErrorCode, ErrorReply, Message};

/// A guest that treats every connection with `serve`.
fn fake_guest(serve: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || serve(c));
        }
    });
    addr
}

/// The new guest's answer when it has no slot: one `Error{Busy}`, then close.
fn says_busy(mut c: TcpStream) {
    let f = Message::Error(ErrorReply::new(ErrorCode::Busy, None, BUSY_DETAIL))
        .to_frame()
        .unwrap();
    let _ = c.write_all(&f);
    let _ = c.shutdown(Shutdown::Write);
    // Read what the relay sends until it closes, as the guest's stack would.
    let _ = std::io::copy(&mut c, &mut std::io::sink());
}

/// A guest that resets the connection before any byte is exchanged (SO_LINGER 0, close).
fn resets(c: TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this function owns, with a correctly sized linger.
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(c);
}

/// Sends `frames` at once on a raw connection, half-closes, returns every reply frame.
fn exchange(addr: SocketAddr, frames: &[Vec<u8>]) -> Vec<Message> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&frames.concat()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let mut d = FrameDecoder::new();
    d.feed(&all);
    let mut out = Vec::new();
    while let Ok(Some(f)) = d.next_frame() {
        out.push(Message::from_frame(&f).unwrap());
    }
    out
}

fn hello() -> Vec<u8> {
    encode_frame(Kind::Hello, &[]).unwrap()
}

fn codes(replies: &[Message]) -> Vec<(ErrorCode, String)> {
    replies
        .iter()
        .map(|m| match m {
            Message::Error(e) => (e.code, e.detail.clone()),
            m => panic!("not an error reply: {:?}", m.kind()),
        })
        .collect()
}

#[test]
fn a_busy_guest_gives_every_request_one_busy_answer() {
    let (relay, addr) = relay_to(fake_guest(says_busy), RelayConfig::default(), None);
    for n in [1, 3] {
        let replies = exchange(addr, &vec![hello(); n]);
        let got = codes(&replies);
        assert_eq!(got.len(), n, "one answer per request: {got:?}");
        for (code, detail) in &got {
            assert_eq!(*code, ErrorCode::Busy, "{got:?}");
            assert_eq!(detail, BUSY_DETAIL);
        }
    }
    assert_eq!(relay.stats().lost, 0);
    // The guest's own Busy answers one request per connection; the relay answers the rest.
    assert!(relay.stats().busy >= 2, "{:?}", relay.stats());
}

#[test]
fn a_guest_that_resets_before_any_byte_gives_busy() {
    let (relay, addr) = relay_to(fake_guest(resets), RelayConfig::default(), None);
    let got = codes(&exchange(addr, &[hello()]));
    assert_eq!(got, vec![(ErrorCode::Busy, BUSY_DETAIL.to_string())]);
    assert_eq!(relay.stats().lost, 0);
}

#[test]
fn busy_through_the_client_library_is_a_worker_busy_error() {
    let (_relay, addr) = relay_to(fake_guest(says_busy), RelayConfig::default(), None);
    let mut c = connect(addr);
    let e = pupa_host::client::fetch_and_verify(&mut c, &DEV).unwrap_err();
    match e {
        pupa_host::client::ClientError::Worker(w) => assert_eq!(w.code, ErrorCode::Busy),
        e => panic!("expected Busy, got {e}"),
    }
}
