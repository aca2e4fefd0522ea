//! Frame bookkeeping for the client → guest direction without buffering bodies.
//!
//! The relay streams a client's bytes to the guest as they arrive (a 64 MiB sealed job is
//! never held whole on the host) and only follows the frame headers
//! (`pupa_protocol::frame::parse_header`: version, kind, length limit) to know which requests
//! await a reply. A bad header does not stop the bytes: the guest answers it with the specific
//! error and closes, which the relay passes back; the tracker just stops following the stream.

use pupa_protocol::frame::{parse_header, FrameError, Kind, HEADER_LEN};

/// Where the tracker is in the byte stream.
#[derive(Debug)]
enum State {
    /// Collecting a header (`have` bytes of it so far).
    Header { buf: [u8; HEADER_LEN], have: usize },
    /// Inside a body; `left` bytes to go; `job`: of a sealed job.
    Body { left: u64, job: bool },
    /// The stream broke framing; nothing more is followed.
    Broken,
}

/// Follows frame boundaries of a byte stream, reporting each header as it completes.
#[derive(Debug)]
pub struct HeaderTracker {
    state: State,
}

impl Default for HeaderTracker {
    fn default() -> Self {
        HeaderTracker {
            state: State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
        }
    }
}

/// What one header told the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEvent {
    /// A valid frame of this kind and body length starts.
    Frame(Kind, u32),
    /// The stream broke framing here (the guest will answer it and close).
    Broken(FrameError),
}

impl HeaderTracker {
    /// Follows `data`, calling `on` for every header completed in it.
    pub fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(HeaderEvent)) {
        while !data.is_empty() {
            match &mut self.state {
                State::Broken => return,
                State::Body { left, .. } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = State::Header {
                            buf: [0; HEADER_LEN],
                            have: 0,
                        };
                    }
                }
                State::Header { buf, have } => {
                    let take = (HEADER_LEN - *have).min(data.len());
                    buf[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have < HEADER_LEN {
                        continue;
                    }
                    match parse_header(buf) {
                        Ok((kind, len)) => {
                            on(HeaderEvent::Frame(kind, len));
                            self.state = if len == 0 {
                                State::Header {
                                    buf: [0; HEADER_LEN],
                                    have: 0,
                                }
                            } else {
                                State::Body {
                                    left: u64::from(len),
                                    job: kind == Kind::SealedJob,
                                }
                            };
                        }
                        Err(e) => {
                            on(HeaderEvent::Broken(e));
                            self.state = State::Broken;
                        }
                    }
                }
            }
        }
    }

    /// Whether the tracker is inside a `SealedJob` frame's body.
    pub fn in_job(&self) -> bool {
        matches!(self.state, State::Body { job: true, .. })
    }

    /// Whether the stream is between frames (nothing unfinished).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pupa_protocol::frame::encode_frame;

    fn events(stream: &[u8], chunk: usize) -> Vec<HeaderEvent> {
        let mut t = HeaderTracker::default();
        let mut ev = Vec::new();
        for c in stream.chunks(chunk) {
            t.feed(c, |e| ev.push(e));
        }
        ev
    }

    #[test]
    fn follows_frames_in_any_split() {
        let mut s = encode_frame(Kind::Hello, &[]).unwrap();
        s.extend(encode_frame(Kind::SealedJob, &[9u8; 300]).unwrap());
        s.extend(encode_frame(Kind::EvidenceRequest, &[1u8; 32]).unwrap());
        let want = vec![
            HeaderEvent::Frame(Kind::Hello, 0),
            HeaderEvent::Frame(Kind::SealedJob, 300),
            HeaderEvent::Frame(Kind::EvidenceRequest, 32),
        ];
        for chunk in [1, 2, 5, 6, 7, 100, 1000] {
            assert_eq!(events(&s, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn bad_header_breaks_once() {
        let mut s = encode_frame(Kind::Hello, &[]).unwrap();
        s.extend([0, 0, 0, 0, 9, 1]); // version 9
        s.extend(encode_frame(Kind::Hello, &[]).unwrap());
        let ev = events(&s, 3);
        assert_eq!(
            ev,
            vec![
                HeaderEvent::Frame(Kind::Hello, 0),
                HeaderEvent::Broken(FrameError::UnsupportedVersion { got: 9 })
            ]
        );
    }
}
