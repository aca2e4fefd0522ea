//! Framing: every message travels as one frame
//!
//! ```text
//! offset 0  u32 little-endian  body length (header not included)
//! offset 4  u8                 protocol version (must be PROTOCOL_VERSION)
//! offset 5  u8                 kind (see `Kind`)
//! offset 6  body               postcard encoding of the kind's message
//! ```
//!
//! Each kind has a hard length limit ([`Kind::max_len`]): 64 MiB for sealed jobs and results,
//! 256 KiB for evidence, 64 KiB for everything else. The header is checked as soon as its six
//! bytes are in — version first, then kind, then length — so a bad stream is refused before its
//! body is buffered. [`FrameDecoder`] is fed bytes as they arrive (any split) and yields whole
//! frames or a specific [`FrameError`]; after an error it stays failed, since the stream can no
//! longer be re-synchronised.

use alloc::vec::Vec;

use crate::PROTOCOL_VERSION;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 6;
/// Largest body of a sealed job or sealed result frame.
pub const MAX_JOB_FRAME: u32 = 64 << 20;
/// Largest body of an evidence frame (SNP report + VCEK, or a TDX quote with its certificates).
pub const MAX_EVIDENCE_FRAME: u32 = 256 << 10;
/// Largest body of any other (control) frame.
pub const MAX_CONTROL_FRAME: u32 = 64 << 10;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// client → guest: ask for the boot evidence.
    Hello = 1,
    /// client → guest: ask for fresh evidence over the client's nonce.
    EvidenceRequest = 2,
    /// guest → client: evidence binding the guest keys.
    Evidence = 3,
    /// client → guest: an HPKE-sealed job.
    SealedJob = 4,
    /// guest → client: the HPKE-sealed result.
    SealedResult = 5,
    /// guest → client: the signed receipt for a job.
    Receipt = 6,
    /// guest → client: a specific error.
    Error = 7,
}

impl Kind {
    /// The kind for a header byte, if it names one.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::EvidenceRequest,
            3 => Kind::Evidence,
            4 => Kind::SealedJob,
            5 => Kind::SealedResult,
            6 => Kind::Receipt,
            7 => Kind::Error,
            _ => return None,
        })
    }

    /// The hard limit on this kind's body length.
    pub fn max_len(self) -> u32 {
        match self {
            Kind::SealedJob | Kind::SealedResult => MAX_JOB_FRAME,
            Kind::Evidence => MAX_EVIDENCE_FRAME,
            Kind::Hello | Kind::EvidenceRequest | Kind::Receipt | Kind::Error => MAX_CONTROL_FRAME,
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the body holds.
    pub kind: Kind,
    /// The body (a postcard message).
    pub body: Vec<u8>,
}

/// Why a byte stream is not a valid frame sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header names a protocol version this code does not speak.
    #[error("unsupported protocol version {got} (this peer speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
    },
    /// The header names no known kind.
    #[error("unknown frame kind {got}")]
    UnknownKind {
        /// The kind byte received.
        got: u8,
    },
    /// The length exceeds the kind's limit.
    #[error("{kind:?} frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The frame's kind.
        kind: Kind,
        /// The announced body length.
        len: u64,
        /// The limit for that kind.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {have} of {need} bytes")]
    Truncated {
        /// Bytes received of the unfinished frame.
        have: usize,
        /// Bytes the frame needs (header, plus body once the header is known).
        need: usize,
    },
}

/// Why [`FrameDecoder::try_feed`] could not take bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The caller's memory budget refused the growth.
    #[error("memory budget refused {asked} more bytes of frame buffer")]
    Budget {
        /// Bytes of capacity asked for.
        asked: usize,
    },
    /// The allocator refused the growth.
    #[error("allocation of {asked} more bytes of frame buffer failed")]
    Alloc {
        /// Bytes of capacity asked for.
        asked: usize,
    },
}

/// Encodes one frame: header and body.
pub fn encode_frame(kind: Kind, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let max = kind.max_len();
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= max)
        .ok_or(FrameError::TooLarge {
            kind,
            len: body.len() as u64,
            max,
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.push(PROTOCOL_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(body);
    Ok(out)
}

/// Parses and checks a frame header: version, then kind, then length against the kind's limit.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(Kind, u32), FrameError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if h[4] != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { got: h[4] });
    }
    let kind = Kind::from_u8(h[5]).ok_or(FrameError::UnknownKind { got: h[5] })?;
    if len > kind.max_len() {
        return Err(FrameError::TooLarge {
            kind,
            len: u64::from(len),
            max: kind.max_len(),
        });
    }
    Ok((kind, len))
}

/// Streaming frame decoder: [`feed`](Self::feed) bytes in any split, then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. Memory held is what was fed
/// and not yet returned as frames; the caller bounds it by draining frames after each feed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    pos: usize,
    /// Header of the frame being received, once checked.
    header: Option<(Kind, u32)>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Ignored once the decoder has failed.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes still needed before the next frame boundary: the rest of the header, or the
    /// rest of the frame once its header is known. A caller that feeds at most this much
    /// between calls to [`next_frame`](Self::next_frame) keeps exactly one frame buffered.
    pub fn wanted(&self) -> usize {
        let need = match self.header {
            Some((_, len)) => HEADER_LEN + len as usize,
            None => HEADER_LEN,
        };
        need.saturating_sub(self.buffered())
    }

    /// The checked header of the frame being received, once its six bytes are in.
    pub fn announced(&self) -> Option<(Kind, u32)> {
        self.header
    }

    /// Bytes of memory the buffer holds (its capacity).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends received bytes without ever aborting on allocation: the buffer grows only
    /// after `grant(additional capacity)` agreed (the caller's memory budget), geometrically
    /// but never beyond the frame being received, and through a fallible reservation.
    /// Ignored once the decoder has failed.
    pub fn try_feed(
        &mut self,
        data: &[u8],
        grant: impl FnOnce(usize) -> bool,
    ) -> Result<(), FeedError> {
        if self.failed.is_some() {
            return Ok(());
        }
        let need = self.buf.len().saturating_add(data.len());
        if need > self.buf.capacity() {
            // Never more than the frame (header + announced body) or what is needed now.
            let frame = match self.header {
                Some((_, len)) => self.pos + HEADER_LEN + len as usize,
                None => need,
            };
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(4096)
                .min(frame)
                .max(need);
            let extra = target - self.buf.capacity();
            if !grant(extra) {
                return Err(FeedError::Budget { asked: extra });
            }
            self.buf
                .try_reserve_exact(target - self.buf.len())
                .map_err(|_| FeedError::Alloc { asked: extra })?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the stream's error
    /// (returned again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.pos..];
        let (kind, len) = match self.header {
            Some(h) => h,
            None => {
                let Some(h) = avail.first_chunk::<HEADER_LEN>() else {
                    return Ok(None);
                };
                match parse_header(h) {
                    Ok(h) => {
                        self.header = Some(h);
                        h
                    }
                    Err(e) => return Err(self.fail(e)),
                }
            }
        };
        let total = HEADER_LEN + len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        self.header = None;
        let body = if self.pos == 0 && self.buf.len() == total {
            // The buffer is exactly this frame (the usual case for a large job): hand it over
            // instead of holding a second copy of up to MAX_JOB_FRAME bytes.
            let mut b = core::mem::take(&mut self.buf);
            b.drain(..HEADER_LEN);
            b
        } else {
            let b = avail[HEADER_LEN..total].to_vec();
            self.pos += total;
            self.compact();
            b
        };
        Ok(Some(Frame { kind, body }))
    }

    /// Call at end of stream: `Err(Truncated)` if a frame was left unfinished (or the earlier
    /// error if the decoder had failed).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let have = self.buffered();
        if have == 0 {
            return Ok(());
        }
        let need = match self.header {
            Some((_, len)) => HEADER_LEN + len as usize,
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated { have, need })
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the decoder has failed.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.pos = 0;
        e
    }

    /// Drops consumed bytes once they are at least half the buffer (amortised O(1) per byte).
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_by_byte_equals_whole() {
        let mut stream = encode_frame(Kind::Hello, &[]).unwrap();
        stream.extend(encode_frame(Kind::SealedJob, &[7u8; 1000]).unwrap());
        stream.extend(encode_frame(Kind::Error, b"x").unwrap());
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.feed(core::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        d.finish().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            Frame {
                kind: Kind::SealedJob,
                body: vec![7u8; 1000]
            }
        );
        assert_eq!(got[2].body, b"x");
        // All at once (frames copied out of a shared buffer) and in uneven pieces.
        for chunk in [stream.len(), 7, 1001] {
            let mut d = FrameDecoder::new();
            let mut again = Vec::new();
            for piece in stream.chunks(chunk) {
                d.feed(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    again.push(f);
                }
            }
            d.finish().unwrap();
            assert_eq!(again, got, "chunk {chunk}");
        }
    }

    #[test]
    fn header_errors_are_specific() {
        let mut d = FrameDecoder::new();
        d.feed(&[0, 0, 0, 0, 2, 1]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::UnsupportedVersion { got: 2 })
        );
        assert_eq!(
            d.next_frame(),
            Err(FrameError::UnsupportedVersion { got: 2 })
        );
        let mut d = FrameDecoder::new();
        d.feed(&[0, 0, 0, 0, 1, 99]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind { got: 99 }));
        let mut d = FrameDecoder::new();
        d.feed(&(MAX_CONTROL_FRAME + 1).to_le_bytes());
        d.feed(&[1, Kind::Hello as u8]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                kind: Kind::Hello,
                len: u64::from(MAX_CONTROL_FRAME) + 1,
                max: MAX_CONTROL_FRAME
            })
        );
        let mut d = FrameDecoder::new();
        d.feed(&u32::MAX.to_le_bytes());
        d.feed(&[1, Kind::SealedJob as u8]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn truncation_is_reported() {
        let f = encode_frame(Kind::Receipt, &[1, 2, 3, 4]).unwrap();
        for cut in 1..f.len() {
            let mut d = FrameDecoder::new();
            d.feed(&f[..cut]);
            assert_eq!(d.next_frame(), Ok(None));
            let need = if cut < HEADER_LEN {
                HEADER_LEN
            } else {
                f.len()
            };
            assert_eq!(d.finish(), Err(FrameError::Truncated { have: cut, need }));
        }
    }

    #[test]
    fn encode_refuses_oversized_body() {
        let body = vec![0u8; MAX_CONTROL_FRAME as usize + 1];
        assert!(matches!(
            encode_frame(Kind::Error, &body),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
