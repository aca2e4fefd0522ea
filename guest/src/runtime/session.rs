//! One connection: bytes in → reply bytes out, never blocking, never panicking.
//!
//! States: *open* (reading and answering frames), *closing* (a stream-level error was
//! answered, or the peer finished: flush what is pending, then close), *closed*.
//! Stream-level errors — wrong protocol version, unknown kind, oversized length, a stream that
//! ends or stalls inside a frame — get one specific error frame and close the connection,
//! since the byte stream cannot be re-synchronised. Message-level errors (malformed body,
//! bad job, replay, ...) get an error frame and the connection stays open.
//!
//! Backpressure: while more than `Config::max_output_backlog` reply bytes wait, the session
//! stops taking input ([`Session::wants_read`] is false and [`Session::receive`] consumes
//! nothing), so a client that does not read its replies cannot grow the guest's memory.

use alloc::format;
use alloc::vec::Vec;

use pupa_protocol::frame::{FrameDecoder, FrameError};
use pupa_protocol::msg::ErrorCode;

use super::worker::{push_error, Worker};
use super::{Clock, Entropy, Tee};

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
    last_rx_ns: u64,
    max_backlog: usize,
}

impl Session {
    /// A new connection of `worker`, accepted now.
    pub fn new<T: Tee, E: Entropy, C: Clock>(worker: &Worker<T, E, C>) -> Self {
        Session {
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            out_pos: 0,
            state: State::Open,
            last_rx_ns: worker.now_ns(),
            max_backlog: worker.config().max_output_backlog,
        }
    }

    /// Whether the session takes input now.
    pub fn wants_read(&self) -> bool {
        self.state == State::Open && !self.backlogged()
    }

    fn backlogged(&self) -> bool {
        self.pending().len() > self.max_backlog
    }

    /// Feeds received bytes and answers every complete frame. Returns how many bytes were
    /// consumed: all of them, or 0 when the session does not read (closing, or backlogged).
    pub fn receive<T: Tee, E: Entropy, C: Clock>(
        &mut self,
        worker: &mut Worker<T, E, C>,
        data: &[u8],
    ) -> usize {
        if self.state != State::Open || self.backlogged() {
            return 0;
        }
        self.last_rx_ns = worker.now_ns();
        self.decoder.feed(data);
        self.process(worker);
        data.len()
    }

    /// The peer will send nothing more (EOF). An unfinished frame is answered
    /// `TruncatedFrame`; pending replies are still flushed before closing.
    pub fn peer_closed<T: Tee, E: Entropy, C: Clock>(&mut self, worker: &mut Worker<T, E, C>) {
        if self.state != State::Open {
            return;
        }
        self.process(worker);
        if let Err(e) = self.decoder.finish() {
            if !self.decoder.is_failed() {
                self.stream_error(&e);
            }
        }
        if self.state == State::Open {
            self.state = State::Closing;
        }
    }

    /// Periodic work: answers frames held back by backpressure once the backlog drained, and
    /// applies the frame and idle timeouts.
    pub fn poll<T: Tee, E: Entropy, C: Clock>(&mut self, worker: &mut Worker<T, E, C>) {
        if self.state != State::Open {
            return;
        }
        self.process(worker);
        let idle = worker.now_ns().saturating_sub(self.last_rx_ns);
        if self.decoder.buffered() > 0 && idle > worker.config().frame_timeout_ns {
            if let Err(e) = self.decoder.finish() {
                self.stream_error(&e);
            }
        } else if self.decoder.buffered() == 0
            && self.pending().is_empty()
            && idle > worker.config().idle_timeout_ns
        {
            self.state = State::Closing;
        }
    }

    fn process<T: Tee, E: Entropy, C: Clock>(&mut self, worker: &mut Worker<T, E, C>) {
        while self.state == State::Open && !self.backlogged() {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.compact_out();
                    worker.handle_frame(frame, &mut self.out);
                }
                Ok(None) => break,
                Err(e) => self.stream_error(&e),
            }
        }
    }

    fn stream_error(&mut self, e: &FrameError) {
        let code = match e {
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::UnknownKind { .. } => ErrorCode::UnknownKind,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::Truncated { .. } => ErrorCode::TruncatedFrame,
        };
        push_error(
            &mut self.out,
            code,
            None,
            &format!("{e}; closing the connection"),
        );
        self.state = State::Closing;
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
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Whether the connection should be closed now (closing and everything sent). After this
    /// returns true the session is finished.
    pub fn should_close(&mut self) -> bool {
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
