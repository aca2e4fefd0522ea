//! Requests awaiting the guest's reply on one relayed connection, and how the ones left when
//! the guest connection ends are answered (see [`super::proxy`]'s module docs).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pupa_protocol::msg::ErrorCode;

use super::proxy::{error_frame, BUSY_DETAIL, JOB_LOST_DETAIL};
use super::tls::WriteHalf;

/// How long, after the guest connection ended, requests the client is still sending are
/// answered before its connection is closed.
const LATE_REQUEST_GRACE: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request awaiting the guest's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    Job,
    Other,
}

/// Requests awaiting the guest's reply, in order.
#[derive(Default)]
pub(super) struct PendingState {
    pub(super) queue: VecDeque<Pending>,
    /// Answers the guest sent before the relay saw the request they answer (a guest that
    /// refuses a connection says `Busy` at once): that many next requests are answered.
    pub(super) credit: usize,
    /// Bytes of jobs written to the guest.
    pub(super) job_bytes_sent: u64,
    /// The client → guest pump has ended (client EOF or error): no more requests come.
    pub(super) up_done: bool,
}

impl PendingState {
    /// A request went to the guest.
    pub(super) fn push(&mut self, p: Pending) {
        if self.credit > 0 {
            self.credit -= 1;
        } else {
            self.queue.push_back(p);
        }
    }

    /// The guest answered one request.
    pub(super) fn answered(&mut self) {
        if self.queue.pop_front().is_none() {
            self.credit += 1;
        }
    }
}

pub(super) type PendingQueue = Arc<Mutex<PendingState>>;

/// What the guest said so far on one connection.
#[derive(Default)]
pub(super) struct GuestSaid {
    pub(super) bytes: u64,
    pub(super) busy: bool,
}

/// Answers every pending request with `code`/`detail`, including requests the client is still
/// sending (for up to [`LATE_REQUEST_GRACE`], or until it stops sending), counting each in
/// `counter`; returns how many were answered.
pub(super) fn answer_pending(
    id: u64,
    client: &mut dyn WriteHalf,
    pending: &PendingQueue,
    code: ErrorCode,
    detail: &str,
    counter: &AtomicU64,
) -> usize {
    let mut answered = 0;
    // Requests already read and those the client is still sending all get this answer; wait
    // briefly for the client to finish sending (or close), so that none goes unanswered.
    let grace_end = Instant::now() + LATE_REQUEST_GRACE;
    loop {
        let (left, done): (Vec<Pending>, bool) = {
            let mut p = lock(pending);
            (p.queue.drain(..).collect(), p.up_done)
        };
        for p in &left {
            if client.write_all(&error_frame(code, detail)).is_err() {
                break;
            }
            answered += 1;
            counter.fetch_add(1, Ordering::Relaxed);
            if *p == Pending::Job && detail == JOB_LOST_DETAIL {
                tracing::warn!(
                    conn = id,
                    "guest connection ended with a job in flight: job lost"
                );
            }
        }
        if (done && lock(pending).queue.is_empty()) || Instant::now() >= grace_end {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    answered
}

/// The answer for requests still pending when the guest connection ended (see the module
/// docs).
pub(super) fn guest_end_answer(
    p: &PendingState,
    said: &GuestSaid,
    cut: &AtomicBool,
) -> (ErrorCode, &'static str) {
    if said.busy {
        (ErrorCode::Busy, BUSY_DETAIL)
    } else if cut.load(Ordering::SeqCst) || p.job_bytes_sent > 0 || said.bytes > 0 {
        (ErrorCode::Internal, JOB_LOST_DETAIL)
    } else {
        // Refused or reset before any byte was exchanged: the guest took nothing.
        (ErrorCode::Busy, BUSY_DETAIL)
    }
}
