//! The serving loop: the firmware's (guest/src/platform/net.rs) on std's nonblocking TCP
//! sockets, one runtime [`Session`] per connection, all driven from one thread.
//!
//! Every step is bounded, whatever clients do:
//! - at most [`Limits::sessions`] connections are served at once; when all slots are taken
//!   the longest-idle connection (idle ≥ [`Limits::evict_idle`]) is closed to make room,
//!   else the newcomer is answered `Busy` (`Session::refuse`) — at most [`Limits::busy`] such
//!   answers in flight, beyond which new connections are closed unanswered;
//! - the session contract is followed exactly: input only while `wants_read`, what it did not
//!   take is held (backpressure) and offered again before reading more; EOF → `peer_closed`
//!   (pending replies are still sent, so a half-closed client gets its answers); `poll` each
//!   round (deadlines); `pending`/`advance` to write; `should_close` → the socket is shut
//!   for writing (FIN after the last reply) and lingers up to [`Limits::linger`] draining
//!   what the peer still sends, so that unread input does not turn the close into a reset
//!   that could destroy the last reply;
//! - a socket error on read or write ends that connection only.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pupa_runtime::{Clock, Compute, Entropy, Session, Tee, Worker};

/// How much the loop takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub sessions: usize,
    /// Connections beyond `sessions` that are answered `Busy` (then closed).
    pub busy: usize,
    /// A serving connection idle this long may be closed to free its slot.
    pub evict_idle: Duration,
    /// How long a closed connection drains the peer's input before it is dropped.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sessions: 64,
            busy: 16,
            evict_idle: Duration::from_secs(1),
            linger: Duration::from_secs(5),
        }
    }
}

/// Most reads of one connection per round (the others get their turn).
const READS_PER_ROUND: usize = 16;
/// The longest idle pause between rounds.
const MAX_PAUSE: Duration = Duration::from_millis(1);

struct Conn {
    sock: TcpStream,
    session: Session,
    /// Counts against the serving slots (false: a `Busy` answer).
    serving: bool,
    eof: bool,
    /// Received bytes the session did not take yet (it was backlogged).
    held: Vec<u8>,
}

struct Lingering {
    sock: TcpStream,
    until: Instant,
}

/// Serves `listener` with `worker` until `stop` is set.
pub fn serve<T, E, C, K>(
    listener: &TcpListener,
    worker: &mut Worker<T, E, C, K>,
    limits: Limits,
    stop: &AtomicBool,
) -> std::io::Result<()>
where
    T: Tee,
    E: Entropy,
    C: Clock,
    K: Compute,
{
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut lingering: Vec<Lingering> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pause = Duration::from_micros(20);
    let mut most_serving = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut moved = accept(listener, &mut conns, worker, &limits);
        let serving = conns.iter().filter(|c| c.serving).count();
        if serving > most_serving {
            most_serving = serving;
            tracing::info!(
                "connections high-water {serving} of {} slots",
                limits.sessions
            );
        }
        for c in conns.iter_mut() {
            moved |= drive(c, worker, &mut buf);
        }
        let mut i = 0;
        while i < conns.len() {
            if conns[i].session.should_close() {
                let c = conns.swap_remove(i);
                let _ = c.sock.shutdown(Shutdown::Write);
                if lingering.len() < limits.sessions + limits.busy {
                    let until = Instant::now() + limits.linger;
                    lingering.push(Lingering {
                        sock: c.sock,
                        until,
                    });
                }
                moved = true;
            } else {
                i += 1;
            }
        }
        moved |= drain_lingering(&mut lingering, &mut buf);
        if moved {
            pause = Duration::from_micros(20);
        } else {
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
    Ok(())
}

/// Takes every waiting connection: a serving slot (evicting the longest-idle connection if
/// that frees one), a `Busy` answer, or — with both full — an immediate close.
fn accept<T: Tee, E: Entropy, C: Clock, K: Compute>(
    listener: &TcpListener,
    conns: &mut Vec<Conn>,
    worker: &Worker<T, E, C, K>,
    limits: &Limits,
) -> bool {
    let mut moved = false;
    loop {
        let sock = match listener.accept() {
            Ok((s, peer)) => {
                tracing::debug!(%peer, "connection");
                s
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return moved,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // ECONNABORTED, EMFILE, ...: this connection is lost, the listener is fine.
                tracing::warn!("accept failed: {e}");
                return moved;
            }
        };
        moved = true;
        if sock.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = sock.set_nodelay(true);
        let serving = conns.iter().filter(|c| c.serving).count();
        let free = serving < limits.sessions || evict_idle(conns, worker, limits);
        let busy = conns.iter().filter(|c| !c.serving).count();
        let (session, serving) = if free {
            (Session::new(worker), true)
        } else if busy < limits.busy {
            let detail = "no free worker slot: every connection is in use; retry";
            (Session::refuse(worker, detail), false)
        } else {
            tracing::warn!("connection dropped: every slot and busy answer is in use");
            continue;
        };
        conns.push(Conn {
            sock,
            session,
            serving,
            eof: false,
            held: Vec::new(),
        });
    }
}

/// Closes the serving connection idle longest, if idle at least `limits.evict_idle`; its slot
/// is free at once (it has nothing in flight).
fn evict_idle<T: Tee, E: Entropy, C: Clock, K: Compute>(
    conns: &mut [Conn],
    worker: &Worker<T, E, C, K>,
    limits: &Limits,
) -> bool {
    let now = worker.now_ns();
    let min_idle = u64::try_from(limits.evict_idle.as_nanos()).unwrap_or(u64::MAX);
    let victim = conns
        .iter_mut()
        .filter(|c| c.serving)
        .filter_map(|c| Some((c.session.idle_since_ns()?, c)))
        .filter(|(t, _)| now.saturating_sub(*t) >= min_idle)
        .min_by_key(|(t, _)| *t);
    match victim {
        Some((_, c)) => {
            c.session.close_idle(worker);
            c.serving = false;
            true
        }
        None => false,
    }
}

/// One connection's round: held input, socket input, EOF, deadlines, output. Returns whether
/// any byte or state moved.
fn drive<T: Tee, E: Entropy, C: Clock, K: Compute>(
    c: &mut Conn,
    worker: &mut Worker<T, E, C, K>,
    buf: &mut [u8],
) -> bool {
    let mut moved = false;
    if c.session.wants_read() && !c.held.is_empty() {
        let used = c.session.receive(worker, &c.held);
        c.held.drain(..used);
        moved |= used > 0;
    }
    let mut reads = 0;
    while c.session.wants_read() && c.held.is_empty() && !c.eof && reads < READS_PER_ROUND {
        reads += 1;
        match c.sock.read(buf) {
            Ok(0) => {
                c.eof = true;
                c.session.peer_closed(worker);
                moved = true;
            }
            Ok(n) => {
                let used = c.session.receive(worker, &buf[..n]);
                c.held.extend_from_slice(&buf[used..n]);
                moved = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("read failed: {e}");
                c.eof = true;
                c.session.peer_closed(worker);
                moved = true;
            }
        }
    }
    c.session.poll(worker);
    while !c.session.pending().is_empty() {
        match c.sock.write(c.session.pending()) {
            Ok(n) if n > 0 => {
                c.session.advance(n);
                moved = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => {
                // The peer is gone (reset, or a write that takes nothing): drop the replies.
                if let Err(e) = other {
                    tracing::debug!("write failed: {e}");
                }
                let n = c.session.pending().len();
                c.session.advance(n);
                c.eof = true;
                c.session.peer_closed(worker);
                moved = true;
            }
        }
    }
    moved
}

/// Reads and discards what lingering peers still send; drops those that finished (EOF or
/// error) or whose linger time is over.
fn drain_lingering(lingering: &mut Vec<Lingering>, buf: &mut [u8]) -> bool {
    let now = Instant::now();
    let before = lingering.len();
    let mut moved = false;
    lingering.retain_mut(|l| {
        if now >= l.until {
            return false;
        }
        for _ in 0..READS_PER_ROUND {
            match l.sock.read(buf) {
                Ok(0) => return false,
                Ok(_) => moved = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    });
    moved || lingering.len() != before
}
