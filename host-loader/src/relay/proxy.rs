//! The job relay: client connections in, one guest connection per client connection out,
//! bytes copied through without ever being opened.
//!
//! Per client connection two threads pump bytes:
//! - *up* (client → guest) streams each chunk to the guest as it arrives, following only the
//!   frame headers ([`super::track::HeaderTracker`]) to note which requests await a reply;
//! - *down* (guest → client) cuts the guest's output into frames with the protocol's
//!   `FrameDecoder` (so at most one sealed result per connection is in host memory), answers
//!   the bookkeeping, writes `Receipt` frames to the receipt journal (fsync'd) *before* the
//!   client sees them, and forwards every frame unchanged.
//!
//! Every request a client sends gets exactly one answer. A guest `Error` frame answers one
//! pending request. When the guest connection ends while requests are still pending:
//! - the guest said `Busy` on this connection (no free slot or memory: it accepts, sends one
//!   `Error{Busy}` and closes), or the connection was refused/reset before the guest sent a
//!   byte and before a job was sent to it: each is answered `Busy` ("no free worker slot;
//!   retry") — retryable with the same evidence;
//! - a job had been sent, or the supervisor cut the connection because the guest died or was
//!   restarted: `Internal` with [`JOB_LOST_DETAIL`] — the new guest has new keys, so the client
//!   must fetch fresh evidence and re-seal.
//!
//! If the receipt journal cannot store a receipt, the receipt is *not* forwarded: its request
//! is answered `Internal` "relay: the receipt could not be stored" (the client holds the
//! sealed result, but no receipt it could take for acknowledged), later requests on the
//! connection get the same error, and the connection closes.
//!
//! What the host sees is sizes, kinds and timing; logs carry nothing else.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use pupa_protocol::frame::{FrameDecoder, Kind, HEADER_LEN};
use pupa_protocol::msg::{ErrorCode, ErrorReply, Message};
use pupa_protocol::PROTOCOL_VERSION;

use super::journal::Journal;
use super::pending::{answer_pending, guest_end_answer, GuestSaid, Pending, PendingQueue};
use super::tls::{split_plain, split_tls, Split, WriteHalf};
use super::track::{HeaderEvent, HeaderTracker};

/// Detail text of the error sent for requests lost when the guest dies.
pub const JOB_LOST_DETAIL: &str =
    "worker restarted: job lost in flight; fetch fresh evidence and resubmit";
/// Detail text of `Busy` answers for requests the guest did not take.
pub const BUSY_DETAIL: &str = "no free worker slot; retry";
/// Detail text of the answer to a job whose receipt could not be journaled.
pub const RECEIPT_NOT_STORED_DETAIL: &str = "relay: the receipt could not be stored";

/// How the relay serves clients.
#[derive(Clone)]
pub struct RelayConfig {
    /// TLS for client connections (None: plain TCP, for 127.0.0.1 or a trusted network).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most client connections served at once; more are answered `Busy` and closed.
    pub max_connections: usize,
    /// How long a new client connection waits for a guest that is (re)starting.
    pub guest_wait: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            tls: None,
            max_connections: 256,
            guest_wait: Duration::from_secs(30),
        }
    }
}

/// Counters of the relay's work since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Sealed job frames forwarded to the guest.
    pub jobs_forwarded: u64,
    /// Receipts forwarded to clients.
    pub receipts: u64,
    /// Requests answered "job lost" because the guest went away.
    pub lost: u64,
    /// Requests answered `Busy` because the guest had no room for them.
    pub busy: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    jobs_forwarded: AtomicU64,
    receipts: AtomicU64,
    lost: AtomicU64,
    busy: AtomicU64,
}

struct Shared {
    cfg: RelayConfig,
    journal: Option<Journal>,
    guest: RwLock<Option<SocketAddr>>,
    /// Guest connections by client connection id, with the flag set when the supervisor cut
    /// them (the guest died or is being restarted).
    guest_conns: Mutex<HashMap<u64, (TcpStream, Arc<AtomicBool>)>>,
    next_id: AtomicU64,
    active: AtomicUsize,
    counters: Counters,
}

/// The relay; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An encoded `Error` frame (always encodable: the detail is short).
pub fn error_frame(code: ErrorCode, detail: &str) -> Vec<u8> {
    Message::Error(ErrorReply::new(code, None, detail))
        .to_frame()
        .unwrap_or_default()
}

impl Relay {
    /// A relay forwarding to `guest` (None until a guest is up), journaling receipts to
    /// `journal` when given.
    pub fn new(cfg: RelayConfig, journal: Option<Journal>, guest: Option<SocketAddr>) -> Relay {
        Relay {
            shared: Arc::new(Shared {
                cfg,
                journal,
                guest: RwLock::new(guest),
                guest_conns: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                active: AtomicUsize::new(0),
                counters: Counters::default(),
            }),
        }
    }

    /// Points new connections at `addr` (None: the guest is down; new connections wait).
    pub fn set_guest(&self, addr: Option<SocketAddr>) {
        *self.shared.guest.write().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Where new connections go now.
    pub fn guest(&self) -> Option<SocketAddr> {
        *self.shared.guest.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The guest died: cuts every guest connection, so that each client with a request in
    /// flight gets the "job lost" error. Returns how many connections were cut.
    pub fn guest_lost(&self) -> usize {
        let conns = lock(&self.shared.guest_conns);
        for (s, cut) in conns.values() {
            cut.store(true, Ordering::SeqCst);
            let _ = s.shutdown(Shutdown::Both);
        }
        conns.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.shared.counters;
        RelayStats {
            connections: c.connections.load(Ordering::Relaxed),
            jobs_forwarded: c.jobs_forwarded.load(Ordering::Relaxed),
            receipts: c.receipts.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
        }
    }

    /// Accepts clients on `listener` forever, one thread pair per connection.
    pub fn serve(&self, listener: TcpListener) {
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            self.shared
                .counters
                .connections
                .fetch_add(1, Ordering::Relaxed);
            let shared = self.shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("relay-{id}"))
                .spawn(move || {
                    shared.active.fetch_add(1, Ordering::SeqCst);
                    handle(&shared, stream, id);
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot spawn a connection thread");
            }
        }
    }

    /// Binds `addr` and serves it on a background thread; returns the bound address.
    pub fn spawn(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let me = self.clone();
        thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || me.serve(listener))?;
        Ok(local)
    }
}

fn connect_guest(shared: &Shared) -> Option<TcpStream> {
    let deadline = Instant::now() + shared.cfg.guest_wait;
    loop {
        let addr = *shared.guest.read().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = addr {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => return Some(s),
                Err(e) => tracing::debug!(%addr, error = %e, "guest connect failed; retrying"),
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn handle(shared: &Arc<Shared>, client: TcpStream, id: u64) {
    let peer = client
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = client.set_nodelay(true);
    let split = match &shared.cfg.tls {
        Some(cfg) => split_tls(client, cfg.clone()),
        None => split_plain(client),
    };
    let Split { reader, mut writer } = match split {
        Ok(s) => s,
        Err(e) => return tracing::warn!(conn = id, %peer, error = %e, "cannot set up connection"),
    };
    if shared.active.load(Ordering::SeqCst) > shared.cfg.max_connections {
        tracing::warn!(conn = id, %peer, "too many connections; refusing");
        let _ = writer.write_all(&error_frame(ErrorCode::Busy, "relay: too many connections"));
        writer.close_write();
        return;
    }
    let Some(guest) = connect_guest(shared) else {
        tracing::warn!(conn = id, %peer, "no guest reachable; refusing");
        let _ = writer.write_all(&error_frame(
            ErrorCode::Busy,
            "relay: the worker is not reachable (restarting?)",
        ));
        writer.close_write();
        return;
    };
    let _ = guest.set_nodelay(true);
    let (guest_up, guest_ctl) = match (guest.try_clone(), guest.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return tracing::warn!(conn = id, "cannot clone the guest socket"),
    };
    let cut = Arc::new(AtomicBool::new(false));
    lock(&shared.guest_conns).insert(id, (guest_ctl, cut.clone()));
    tracing::info!(conn = id, %peer, tls = shared.cfg.tls.is_some(), "client connected");

    let pending: PendingQueue = Arc::default();
    let up = {
        let (pending, shared) = (pending.clone(), shared.clone());
        thread::Builder::new()
            .name(format!("relay-{id}-up"))
            .spawn(move || pump_up(&shared, id, reader, guest_up, &pending))
    };
    let down = pump_down(shared, id, guest, writer.as_mut(), &pending, &cut);
    // Whatever ended the down direction, the client connection is over: the client got FIN
    // after its last reply; give it a moment to read and close (closing a socket with unread
    // input would reset it and could destroy the replies), then cut it.
    writer.close_write();
    let up_bytes = match up {
        Ok(h) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            writer.abort();
            h.join().unwrap_or(0)
        }
        Err(_) => {
            writer.abort();
            0
        }
    };
    lock(&shared.guest_conns).remove(&id);
    tracing::info!(conn = id, %peer, bytes_up = up_bytes, bytes_down = down.bytes, lost = down.lost, busy = down.busy, "connection closed");
}

/// Client → guest. Returns bytes forwarded.
fn pump_up(
    shared: &Shared,
    id: u64,
    mut client: Box<dyn Read + Send>,
    mut guest: TcpStream,
    pending: &PendingQueue,
) -> u64 {
    let mut tracker = HeaderTracker::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut guest_open = true;
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(conn = id, error = %e, "client read failed");
                break;
            }
        };
        // Whether this chunk carries (part of) a job body or header.
        let mut in_job = tracker.in_job();
        tracker.feed(&buf[..n], |ev| match ev {
            HeaderEvent::Frame(kind, len) => {
                tracing::trace!(conn = id, ?kind, len, "client frame");
                let p = if kind == Kind::SealedJob {
                    in_job = true;
                    shared
                        .counters
                        .jobs_forwarded
                        .fetch_add(1, Ordering::Relaxed);
                    Pending::Job
                } else {
                    Pending::Other
                };
                lock(pending).push(p);
            }
            HeaderEvent::Broken(e) => {
                // Passed on: the guest answers it specifically and closes.
                tracing::info!(conn = id, error = %e, "client stream broke framing");
                lock(pending).push(Pending::Other);
            }
        });
        if guest_open {
            if let Err(e) = guest.write_all(&buf[..n]) {
                // The guest closed (after answering a stream error, or it died): drain the
                // client until it closes, so that its replies are not reset away.
                tracing::debug!(conn = id, error = %e, "guest write failed");
                guest_open = false;
            } else {
                total += n as u64;
                if in_job {
                    lock(pending).job_bytes_sent += n as u64;
                }
            }
        }
    }
    // Half-close: the guest answers what it has (or a truncated frame) and closes.
    let _ = guest.shutdown(Shutdown::Write);
    lock(pending).up_done = true;
    total
}

struct DownEnd {
    bytes: u64,
    lost: usize,
    busy: usize,
}

/// Why the guest → client direction ended.
enum DownStop {
    /// The guest connection ended (EOF, reset, or cut by the supervisor).
    GuestEnded,
    /// The client went away.
    ClientGone,
    /// The guest's output broke framing.
    Malformed,
    /// A receipt could not be journaled; its request is answered, the rest get this too.
    NotStored,
}

/// Guest → client, until the guest connection ends; then answers every request left.
fn pump_down(
    shared: &Shared,
    id: u64,
    mut guest: TcpStream,
    client: &mut dyn WriteHalf,
    pending: &PendingQueue,
    cut: &AtomicBool,
) -> DownEnd {
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut said = GuestSaid::default();
    let mut bytes = 0u64;
    let stop = loop {
        let n = match guest.read(&mut buf) {
            Ok(0) => break DownStop::GuestEnded,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(conn = id, error = %e, "guest read failed");
                break DownStop::GuestEnded;
            }
        };
        said.bytes += n as u64;
        dec.feed(&buf[..n]);
        match forward_frames(shared, id, &mut dec, client, pending, &mut said, &mut bytes) {
            Ok(()) => {}
            Err(stop) => {
                let _ = guest.shutdown(Shutdown::Both);
                break stop;
            }
        }
    };
    let (code, detail) = match stop {
        DownStop::ClientGone => {
            tracing::debug!(conn = id, "client went away");
            return DownEnd {
                bytes,
                lost: 0,
                busy: 0,
            };
        }
        DownStop::Malformed => (
            ErrorCode::Internal,
            "relay: the worker's reply was malformed",
        ),
        DownStop::NotStored => (ErrorCode::Internal, RECEIPT_NOT_STORED_DETAIL),
        DownStop::GuestEnded => guest_end_answer(&lock(pending), &said, cut),
    };
    let counter = if code == ErrorCode::Busy {
        &shared.counters.busy
    } else {
        &shared.counters.lost
    };
    let n = answer_pending(id, client, pending, code, detail, counter);
    let (lost, busy) = if code == ErrorCode::Busy {
        (0, n)
    } else {
        (n, 0)
    };
    let _ = client.flush();
    client.close_write();
    DownEnd { bytes, lost, busy }
}

/// Forwards every complete frame in `dec` to the client, journaling receipts first.
fn forward_frames(
    shared: &Shared,
    id: u64,
    dec: &mut FrameDecoder,
    client: &mut dyn WriteHalf,
    pending: &PendingQueue,
    said: &mut GuestSaid,
    bytes: &mut u64,
) -> Result<(), DownStop> {
    loop {
        let frame = match dec.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::error!(conn = id, error = %e, "guest output broke framing; dropping the connection");
                return Err(DownStop::Malformed);
            }
        };
        tracing::trace!(conn = id, kind = ?frame.kind, len = frame.body.len(), "guest frame");
        match frame.kind {
            Kind::Evidence => lock(pending).answered(),
            Kind::Error => {
                if let Ok(Message::Error(e)) = Message::from_frame(&frame) {
                    said.busy |= e.code == ErrorCode::Busy;
                }
                lock(pending).answered();
            }
            Kind::Receipt => {
                if let Some(j) = &shared.journal {
                    // docs/DESIGN.md §9: receipts are on disk before the client sees them.
                    if let Err(e) = j.append(&frame.body) {
                        tracing::error!(conn = id, error = %e, "cannot store the receipt; withholding it");
                        return Err(DownStop::NotStored);
                    }
                }
                lock(pending).answered();
                shared.counters.receipts.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let len = frame.body.len() as u32; // bounded by the kind's limit
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4] = PROTOCOL_VERSION;
        header[5] = frame.kind as u8;
        if client
            .write_all(&header)
            .and_then(|_| client.write_all(&frame.body))
            .is_err()
        {
            return Err(DownStop::ClientGone);
        }
        *bytes += (HEADER_LEN + frame.body.len()) as u64;
    }
}
