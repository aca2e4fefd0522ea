//! One connection: bytes in → reply bytes out, never blocking, never panicking.
//!
//! States: *open* (reading and answering frames), *closing* (a stream-level error was
//! answered, the peer finished, or a deadline passed: flush what is pending, then close),
//! *closed*. Stream-level errors — wrong protocol version, unknown kind, oversized length, a
//! stream that ends or stalls inside a frame — get one specific error frame and close the
//! connection, since the byte stream cannot be re-synchronised. Message-level errors
//! (malformed body, bad job, replay, ...) get an error frame and the connection stays open.
//!
//! Deadlines are absolute, so a client cannot extend them by trickling bytes:
//! - a frame must be complete `frame_timeout + length / min_rate` after its first byte;
//! - replies must be sent `send_timeout + length / min_rate` after they were produced;
//! - a connection with no unfinished frame and nothing to send is closed after
//!   `idle_timeout` (and the platform may close it sooner when it needs the slot).
//!
//! Memory: the decoder keeps exactly one frame buffered (the session feeds it no further than
//! the next frame boundary), and both that buffer and the pending replies are reserved in the
//! worker's [`Budget`](super::Budget) before they grow; when the budget is exhausted the
//! client gets `Busy` and the connection closes.
//!
//! Backpressure: while more than `Config::max_output_backlog` reply bytes wait, the session
//! stops taking input ([`Session::wants_read`] is false and [`Session::receive`] consumes
//! nothing), so a client that does not read its replies cannot grow the guest's memory.

use alloc::format;
use alloc::vec::Vec;

use pupa_protocol::frame::{FeedError, FrameDecoder, FrameError};
use pupa_protocol::msg::ErrorCode;

use super::budget::Reservation;
use super::worker::{push_error, AdmittedJob, Worker};
use super::{Clock, Compute, Entropy, Tee};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closing,
    Closed,
}

/// The state machine of one connection.
#[derive(Debug)]
pub struct Session {
    decoder: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    state: State,
    /// Memory held by the decoder's buffer.
    in_mem: Reservation,
    /// Memory held by `out`.
    out_mem: Reservation,
    /// When the unfinished frame must be complete (None: no unfinished frame).
    frame_deadline: Option<u64>,
    /// When the pending replies must be sent (None: nothing pending).
    send_deadline: Option<u64>,
    /// Since when the connection has had nothing in flight in either direction (recorded by
    /// `poll`; None while something is in flight).
    idle_since: Option<u64>,
    max_backlog: usize,
    /// A job [`Worker::handle_frame`] handed back to run elsewhere: the session reads no
    /// further frame until its replies are in (replies stay in request order).
    job: JobState,
}

// Held in place (about 700 bytes per session) rather than boxed: no allocation per job.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum JobState {
    None,
    /// Admitted, waiting for the platform to take it ([`Session::take_job`]).
    Admitted(AdmittedJob),
    /// Taken by the platform; back with [`Session::complete_job`].
    Running,
}

/// Nanoseconds to move `len` bytes at `rate` bytes per second.
fn transfer_ns(len: usize, rate: u64) -> u64 {
    (len as u64).saturating_mul(1_000_000_000) / rate.max(1)
}

impl Session {
    /// A new connection of `worker`, accepted now.
    pub fn new<T: Tee, E: Entropy, C: Clock, K: Compute>(worker: &Worker<T, E, C, K>) -> Self {
        Session {
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            out_pos: 0,
            state: State::Open,
            in_mem: worker.budget().empty(),
            out_mem: worker.budget().empty(),
            frame_deadline: None,
            send_deadline: None,
            idle_since: Some(worker.now_ns()),
            max_backlog: worker.config().max_output_backlog,
            job: JobState::None,
        }
    }

    /// A connection the guest cannot take now (no free slot): it is answered `Busy` with
    /// `detail` and closed without reading anything.
    pub fn refuse<T: Tee, E: Entropy, C: Clock, K: Compute>(
        worker: &Worker<T, E, C, K>,
        detail: &str,
    ) -> Self {
        let mut s = Session::new(worker);
        s.close_with(worker, ErrorCode::Busy, detail);
        s
    }

    /// Whether the session takes input now.
    pub fn wants_read(&self) -> bool {
        self.state == State::Open && !self.backlogged() && !self.has_job()
    }

    /// Whether a job of this session is admitted or running elsewhere.
    pub fn has_job(&self) -> bool {
        !matches!(self.job, JobState::None)
    }

    /// The admitted job waiting to run, if any (the platform runs it with
    /// [`AdmittedJob::execute`] and returns it with [`Session::complete_job`]).
    pub fn take_job(&mut self) -> Option<AdmittedJob> {
        match core::mem::replace(&mut self.job, JobState::Running) {
            JobState::Admitted(a) => Some(a),
            other => {
                self.job = other;
                None
            }
        }
    }

    /// Hands back a job [`Session::take_job`] gave out, after it ran: its replies are queued
    /// (dropped if the session was closed meanwhile) and the session reads again.
    pub fn complete_job<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &mut Worker<T, E, C, K>,
        job: AdmittedJob,
    ) {
        self.job = JobState::None;
        if self.state == State::Closed {
            return; // the connection is gone; nothing was acknowledged
        }
        self.compact_out();
        worker.complete_job(job, &mut self.out);
        self.after_output(worker);
    }

    fn backlogged(&self) -> bool {
        self.pending().len() > self.max_backlog
    }

    fn is_idle(&self) -> bool {
        self.state == State::Open
            && self.decoder.buffered() == 0
            && self.pending().is_empty()
            && !self.has_job()
    }

    /// Feeds received bytes and answers every complete frame. Returns how many bytes were
    /// consumed: at most `data.len()`; fewer (possibly 0) when the session stops reading
    /// (closing, backlogged): the rest stays with the caller.
    pub fn receive<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &mut Worker<T, E, C, K>,
        data: &[u8],
    ) -> usize {
        let mut used = 0;
        while used < data.len() && self.wants_read() {
            if self.decoder.wanted() == 0 && !self.next(worker) {
                break; // cannot happen: a buffered header or frame is always taken
            }
            let rest = data.get(used..).unwrap_or(&[]);
            let chunk = rest
                .get(..self.decoder.wanted().min(rest.len()))
                .unwrap_or(&[]);
            if self.decoder.buffered() == 0 {
                // The first byte of a frame: its deadline starts now (the length term is
                // added once the header is known).
                self.frame_deadline = Some(worker.now_ns() + worker.config().frame_timeout_ns);
                self.idle_since = None;
            }
            let mem = &mut self.in_mem;
            if let Err(e) = self.decoder.try_feed(chunk, |more| mem.try_grow(more)) {
                self.refuse_input(worker, e);
                break;
            }
            used += chunk.len();
            self.next(worker);
        }
        used
    }

    /// Takes the next complete frame from the decoder, if any, and answers it. Returns
    /// whether the decoder made progress (false: more bytes are needed).
    fn next<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &mut Worker<T, E, C, K>,
    ) -> bool {
        let had_header = self.decoder.announced().is_some();
        match self.decoder.next_frame() {
            Ok(Some(frame)) => {
                self.frame_deadline = None;
                self.compact_out();
                if let Some(job) = worker.handle_frame(frame, &mut self.out) {
                    self.job = JobState::Admitted(job);
                }
                self.in_mem.set(self.decoder.capacity());
                self.after_output(worker);
                true
            }
            Ok(None) => {
                if let (false, Some((_, len)), Some(d)) =
                    (had_header, self.decoder.announced(), self.frame_deadline)
                {
                    let rate = worker.config().min_rate_bytes_per_s;
                    self.frame_deadline = Some(d.saturating_add(transfer_ns(len as usize, rate)));
                }
                false
            }
            Err(e) => {
                self.stream_error(worker, &e);
                true
            }
        }
    }

    /// The input could not be buffered (memory budget or allocator): `Busy`, then close.
    fn refuse_input<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &Worker<T, E, C, K>,
        e: FeedError,
    ) {
        let b = worker.budget();
        let detail = format!(
            "guest memory is committed to other connections ({e}; {} of {} bytes in use); retry",
            b.used(),
            b.limit()
        );
        self.close_with(worker, ErrorCode::Busy, &detail);
    }

    /// The peer will send nothing more (EOF). An unfinished frame is answered
    /// `TruncatedFrame`; pending replies are still flushed before closing.
    pub fn peer_closed<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &mut Worker<T, E, C, K>,
    ) {
        if self.state != State::Open {
            return;
        }
        while self.wants_read() && self.decoder.wanted() == 0 && self.next(worker) {}
        if let Err(e) = self.decoder.finish() {
            if !self.decoder.is_failed() {
                self.stream_error(worker, &e);
            }
        }
        self.begin_closing();
    }

    /// Periodic work: answers frames held back by backpressure once the backlog drained, and
    /// applies the deadlines.
    pub fn poll<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &mut Worker<T, E, C, K>,
    ) {
        let now = worker.now_ns();
        if self.send_deadline.is_some_and(|d| now > d) {
            // The client does not read its replies: drop them and close.
            self.out = Vec::new();
            self.out_pos = 0;
            self.out_mem.set(0);
            self.send_deadline = None;
            self.state = State::Closed;
            return;
        }
        if self.state != State::Open {
            return;
        }
        if !self.is_idle() {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        if self.frame_deadline.is_some_and(|d| now > d) {
            let e = match self.decoder.finish() {
                Err(FrameError::Truncated { have, need }) => format!(
                    "frame not complete within its deadline ({have} of {need} bytes received)"
                ),
                _ => "frame not complete within its deadline".into(),
            };
            self.close_with(worker, ErrorCode::TruncatedFrame, &e);
        } else if self
            .idle_since_ns()
            .is_some_and(|t| now.saturating_sub(t) > worker.config().idle_timeout_ns)
        {
            self.begin_closing();
        }
    }

    /// Since when the connection has been idle — no unfinished frame, nothing to send —
    /// or `None` if it is not idle. The platform closes the longest-idle connection first
    /// when it runs out of slots.
    pub fn idle_since_ns(&self) -> Option<u64> {
        self.idle_since.filter(|_| self.is_idle())
    }

    /// Closes an idle connection to give its slot to a new one, telling the client why
    /// (`Busy`: reconnect when it has something to send).
    pub fn close_idle<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &Worker<T, E, C, K>,
    ) {
        if self.idle_since_ns().is_some() {
            let d = "idle connection closed to free a slot for another client; reconnect";
            self.close_with(worker, ErrorCode::Busy, d);
        }
    }

    /// The earliest time at which [`poll`](Self::poll) has work to do, if any: for the
    /// platform's idle wait.
    pub fn next_deadline_ns<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &self,
        worker: &Worker<T, E, C, K>,
    ) -> Option<u64> {
        let idle = self
            .idle_since_ns()
            .map(|t| t.saturating_add(worker.config().idle_timeout_ns));
        [self.frame_deadline, self.send_deadline, idle]
            .into_iter()
            .flatten()
            .min()
    }

    fn begin_closing(&mut self) {
        if self.state == State::Open {
            self.state = State::Closing;
        }
    }

    fn close_with<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &Worker<T, E, C, K>,
        code: ErrorCode,
        detail: &str,
    ) {
        // The stream is abandoned: its buffer goes now.
        self.decoder = FrameDecoder::new();
        self.in_mem.set(0);
        self.frame_deadline = None;
        self.compact_out();
        push_error(&mut self.out, code, None, detail);
        self.after_output(worker);
        self.state = State::Closing;
    }

    fn stream_error<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &Worker<T, E, C, K>,
        e: &FrameError,
    ) {
        let code = match e {
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::UnknownKind { .. } => ErrorCode::UnknownKind,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::Truncated { .. } => ErrorCode::TruncatedFrame,
        };
        self.close_with(worker, code, &format!("{e}; closing the connection"));
    }

    /// Books the reply bytes and starts their send deadline.
    fn after_output<T: Tee, E: Entropy, C: Clock, K: Compute>(
        &mut self,
        worker: &Worker<T, E, C, K>,
    ) {
        self.out_mem.set(self.out.capacity());
        let pending = self.pending().len();
        if pending == 0 {
            self.send_deadline = None;
        } else if self.send_deadline.is_none() {
            self.idle_since = None;
            let c = worker.config();
            self.send_deadline = Some(
                worker
                    .now_ns()
                    .saturating_add(c.send_timeout_ns)
                    .saturating_add(transfer_ns(pending, c.min_rate_bytes_per_s)),
            );
        }
    }

    fn compact_out(&mut self) {
        if self.out_pos > 0 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Reply bytes waiting to be sent.
    pub fn pending(&self) -> &[u8] {
        self.out.get(self.out_pos..).unwrap_or(&[])
    }

    /// Marks `n` pending bytes as sent.
    pub fn advance(&mut self, n: usize) {
        self.out_pos = self.out_pos.saturating_add(n).min(self.out.len());
        if self.out_pos == self.out.len() {
            // Everything sent: free the buffer (a sealed result can be tens of MiB).
            self.out = Vec::new();
            self.out_pos = 0;
            self.out_mem.set(0);
            self.send_deadline = None;
        }
    }

    /// Whether the connection should be closed now (closing and everything sent). After this
    /// returns true the session is finished.
    pub fn should_close(&mut self) -> bool {
        if self.has_job() {
            // Its job still holds this session (and its slot) until it comes back.
            return false;
        }
        if self.state == State::Closing && self.pending().is_empty() {
            self.state = State::Closed;
        }
        self.state == State::Closed
    }

    /// Whether the session has finished.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}
