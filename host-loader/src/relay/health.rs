//! The application-level health check: connect to the guest's job port, send `Hello`, expect
//! `Evidence` within a deadline.
//!
//! A QEMU process that is alive says nothing about the guest inside it: a wedged guest (stuck
//! in a loop, out of slots, its network stack dead) keeps the process running. The supervisor
//! ([`super::supervise`]) probes every [`HealthConfig::period`] and restarts the guest after
//! [`HealthConfig::failures`] failed probes in a row.
//!
//! The guest runs jobs synchronously, so a probe can wait behind a running job: with the
//! defaults (period 10 s, deadline 15 s, 3 failures) a guest is declared wedged only when it
//! has answered nothing for at least 3 × 15 s + 2 × 10 s = 65 s, which covers a job of up to
//! 60 s (the bound the guest's per-job compute deadline is meant to enforce). A guest that
//! answers `Error{Busy}` (no free slot or memory) is alive: full is not wedged.
//!
//! The probe closes its connection cleanly after the reply (half-close, then close), so it uses
//! a guest connection slot only while it waits.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pupa_protocol::frame::{FrameDecoder, Kind};
use pupa_protocol::msg::{ErrorCode, Hello, Message};

/// How the supervisor checks the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between the end of one probe and the start of the next.
    pub period: Duration,
    /// How long one probe waits for its `Evidence` (connect included).
    pub deadline: Duration,
    /// Failed probes in a row before the guest is restarted.
    pub failures: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            period: Duration::from_secs(10),
            deadline: Duration::from_secs(15),
            failures: 3,
        }
    }
}

/// A guest that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It sent its evidence.
    Serving,
    /// It said `Busy`: alive, but full.
    Busy,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The job port did not accept.
    #[error("cannot connect to {addr}: {err}")]
    Connect {
        /// The guest's job port.
        addr: SocketAddr,
        /// Why.
        err: io::Error,
    },
    /// No reply within the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection ended before a reply.
    #[error("the guest closed the connection without a reply")]
    Closed,
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The reply did not decode.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A reply other than `Evidence` or `Busy`.
    #[error("unexpected reply {0}")]
    Unexpected(String),
}

/// One probe of the guest at `addr`: `Hello` → `Evidence` (or `Busy`) within `deadline`.
pub fn probe(addr: SocketAddr, deadline: Duration) -> Result<Health, ProbeError> {
    let end = Instant::now() + deadline;
    let mut s = TcpStream::connect_timeout(&addr, deadline)
        .map_err(|err| ProbeError::Connect { addr, err })?;
    let _ = s.set_nodelay(true);
    let hello = Message::Hello(Hello {})
        .to_frame()
        .map_err(|e| ProbeError::Malformed(e.to_string()))?;
    let left = |end: Instant| {
        let l = end.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err(ProbeError::Timeout(deadline))
        } else {
            Ok(l)
        }
    };
    s.set_write_timeout(Some(left(end)?))?;
    s.write_all(&hello)?;
    let reply = read_one(&mut s, end, deadline);
    // Done with this connection either way: half-close so that the guest sees a clean end,
    // then drop it.
    let _ = s.shutdown(Shutdown::Write);
    match reply? {
        Message::Evidence(_) => Ok(Health::Serving),
        Message::Error(e) if e.code == ErrorCode::Busy => Ok(Health::Busy),
        Message::Error(e) => Err(ProbeError::Unexpected(format!(
            "error {:?}: {}",
            e.code, e.detail
        ))),
        m => Err(ProbeError::Unexpected(format!("{:?}", m.kind()))),
    }
}

fn read_one(s: &mut TcpStream, end: Instant, deadline: Duration) -> Result<Message, ProbeError> {
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout(deadline));
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut buf) {
            Ok(0) => return Err(ProbeError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ProbeError::Timeout(deadline))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        dec.feed(&buf[..n]);
        match dec.next_frame() {
            Ok(Some(f)) if f.kind == Kind::Evidence || f.kind == Kind::Error => {
                return Message::from_frame(&f).map_err(|e| ProbeError::Malformed(e.to_string()))
            }
            Ok(Some(f)) => return Err(ProbeError::Unexpected(format!("{:?}", f.kind))),
            Ok(None) => {}
            Err(e) => return Err(ProbeError::Malformed(e.to_string())),
        }
    }
}

/// Probes `addr` until it answers (`Serving` or `Busy`), `timeout` passes or `stop` is set;
/// returns the last failure otherwise.
pub fn wait_healthy(
    addr: SocketAddr,
    timeout: Duration,
    deadline: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Health, ProbeError> {
    let end = Instant::now() + timeout;
    loop {
        let d = deadline.min(end.saturating_duration_since(Instant::now()));
        let err = match probe(addr, d.max(Duration::from_millis(100))) {
            Ok(h) => return Ok(h),
            Err(e) => e,
        };
        if Instant::now() >= end || stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(err);
        }
        tracing::debug!(%addr, error = %err, "guest not answering yet");
        std::thread::sleep(Duration::from_millis(50));
    }
}
