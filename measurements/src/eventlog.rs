//! CCEL / TCG crypto-agile event logs and RTMR replay.
//!
//! Format: TCG PC Client Platform Firmware Profile Specification, "Event Logging": the log
//! starts with one legacy `TCG_PCR_EVENT` (SHA-1 layout, type EV_NO_ACTION) whose data is the
//! `TCG_EfiSpecIDEvent` ("Spec ID Event03") listing the digest algorithms and sizes; every
//! further record is a `TCG_PCR_EVENT2` {u32 index, u32 type, u32 digest count,
//! count × {u16 algorithm, digest}, u32 event size, event}.
//!
//! In a confidential-computing event log (ACPI "CCEL" table, UEFI Specification
//! `EFI_CC_MEASUREMENT_PROTOCOL`) the index is the CC measurement-register index:
//! for TDX 0 = MRTD, 1..=4 = RTMR0..RTMR3. Replaying the log gives each RTMR as
//! `RTMR = SHA-384(RTMR ‖ digest)` starting from 48 zero bytes (TDG.MR.RTMR.EXTEND);
//! EV_NO_ACTION events are not extended. The unused tail of the log area is filled with
//! 0xFF (or zero) bytes, which ends the log.

use sha2::{Digest, Sha384};

use crate::Digest384;

/// TPM_ALG_SHA384.
pub const ALG_SHA384: u16 = 0x000C;
/// EV_NO_ACTION: logged but never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// Upper bound on algorithms per log / digests per event (TCG defines far fewer).
const MAX_ALGS: u32 = 16;

/// What is wrong with an event log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// The file is the ACPI CCEL table, which only points at the log.
    #[error("this is the ACPI CCEL table (it only points at the log); pass the log area itself, e.g. /sys/firmware/acpi/tables/data/CCEL")]
    AcpiTableNotLog,
    /// A record runs past the end of the data.
    #[error("event log truncated at offset {offset:#x}: need {need} more bytes for {what}")]
    Truncated {
        /// Offset where the read started.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The first event is not a Spec ID event.
    #[error(
        "first event is not a TCG_EfiSpecIDEvent (\"Spec ID Event03\"); not a crypto-agile log"
    )]
    NoSpecId,
    /// Too many algorithms or digests.
    #[error("at offset {offset:#x}: {count} {what} (more than {MAX_ALGS})")]
    TooMany {
        /// Offset.
        offset: usize,
        /// Count found.
        count: u32,
        /// Of what.
        what: &'static str,
    },
    /// The Spec ID event does not list SHA-384.
    #[error("the log's algorithms do not include SHA-384 (TPM_ALG_SHA384 = 0x000c)")]
    NoSha384Algorithm,
    /// An event uses an algorithm not declared in the Spec ID event.
    #[error("event {event} at offset {offset:#x} uses undeclared digest algorithm {alg:#06x}")]
    UnknownAlgorithm {
        /// Event number.
        event: usize,
        /// Offset.
        offset: usize,
        /// Algorithm id.
        alg: u16,
    },
    /// A declared digest size is wrong for SHA-384.
    #[error("Spec ID event declares SHA-384 with digest size {0}, want 48")]
    BadSha384Size(u16),
    /// An event to be extended has no SHA-384 digest.
    #[error("event {0} has no SHA-384 digest")]
    MissingSha384(usize),
    /// An event's SHA-384 digest is not the SHA-384 of its data.
    #[error("event {event} at offset {offset:#x}: its SHA-384 digest is not the SHA-384 of its data (altered data, or an event this log format does not allow)")]
    DigestMismatch {
        /// Event number.
        event: usize,
        /// Offset.
        offset: usize,
    },
    /// An event names a register that cannot be extended.
    #[error("event {event} extends measurement register index {index}; only 1..=4 (RTMR0..3) can be extended")]
    BadIndex {
        /// Event number.
        event: usize,
        /// Register index.
        index: u32,
    },
}

/// One `TCG_PCR_EVENT2` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CC measurement-register index (1..=4 = RTMR0..3 on TDX).
    pub mr_index: u32,
    /// Event type (EV_*).
    pub event_type: u32,
    /// The SHA-384 digest, if the record carries one.
    pub sha384: Option<Digest384>,
    /// Event data.
    pub data: Vec<u8>,
    /// Offset of the record in the log.
    pub offset: usize,
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// (algorithm id, digest size) pairs from the Spec ID event.
    pub algorithms: Vec<(u16, u16)>,
    /// The events after the Spec ID event, in log order.
    pub events: Vec<Event>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EventLogError> {
        let rest = self.b.len() - self.at;
        if n > rest {
            return Err(EventLogError::Truncated {
                offset: self.at,
                need: n - rest,
                what,
            });
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, EventLogError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, EventLogError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, EventLogError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// True when only filler (all 0xFF or all 0x00) or nothing remains.
    fn at_end(&self) -> bool {
        let rest = &self.b[self.at..];
        rest.iter().all(|&x| x == 0xFF) || rest.iter().all(|&x| x == 0)
    }
}

/// Parses a crypto-agile event log (the CCEL log area).
pub fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
    if bytes.starts_with(b"CCEL") {
        return Err(EventLogError::AcpiTableNotLog);
    }
    let mut r = Reader { b: bytes, at: 0 };
    // TCG_PCR_EVENT header (legacy layout) carrying the Spec ID event.
    let _index = r.u32("first event index")?;
    let ty = r.u32("first event type")?;
    r.take(20, "first event SHA-1 digest")?;
    let size = r.u32("first event size")? as usize;
    let spec = r.take(size, "Spec ID event")?;
    if ty != EV_NO_ACTION || spec.len() < 16 || &spec[..16] != SPEC_ID_SIGNATURE {
        return Err(EventLogError::NoSpecId);
    }
    let mut s = Reader { b: spec, at: 16 };
    s.take(4 + 4, "Spec ID platform class and version")?;
    let nalg = s.u32("Spec ID algorithm count")?;
    if nalg > MAX_ALGS {
        return Err(EventLogError::TooMany {
            offset: s.at,
            count: nalg,
            what: "algorithms",
        });
    }
    let mut algorithms = Vec::with_capacity(nalg as usize);
    for _ in 0..nalg {
        algorithms.push((s.u16("algorithm id")?, s.u16("digest size")?));
    }
    let vendor = s.u8("vendor info size")?;
    s.take(usize::from(vendor), "vendor info")?;
    match algorithms.iter().find(|(a, _)| *a == ALG_SHA384) {
        None => return Err(EventLogError::NoSha384Algorithm),
        Some(&(_, n)) if n != 48 => return Err(EventLogError::BadSha384Size(n)),
        Some(_) => {}
    }

    let mut events = Vec::new();
    while !r.at_end() {
        let offset = r.at;
        let mr_index = r.u32("event index")?;
        let event_type = r.u32("event type")?;
        let count = r.u32("digest count")?;
        if count > MAX_ALGS {
            return Err(EventLogError::TooMany {
                offset,
                count,
                what: "digests",
            });
        }
        let mut sha384 = None;
        for _ in 0..count {
            let alg = r.u16("digest algorithm")?;
            let &(_, len) = algorithms.iter().find(|(a, _)| *a == alg).ok_or(
                EventLogError::UnknownAlgorithm {
                    event: events.len(),
                    offset,
                    alg,
                },
            )?;
            let d = r.take(usize::from(len), "digest")?;
            if alg == ALG_SHA384 {
                sha384 = Some(d.try_into().expect("size checked to be 48"));
            }
        }
        let size = r.u32("event size")? as usize;
        let data = r.take(size, "event data")?.to_vec();
        events.push(Event {
            mr_index,
            event_type,
            sha384,
            data,
            offset,
        });
    }
    Ok(EventLog { algorithms, events })
}

/// Replays the log into RTMR0..RTMR3.
pub fn replay_rtmrs(log: &EventLog) -> Result<[Digest384; 4], EventLogError> {
    let mut rtmr = [[0u8; 48]; 4];
    for (i, e) in log.events.iter().enumerate() {
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        if !(1..=4).contains(&e.mr_index) {
            return Err(EventLogError::BadIndex {
                event: i,
                index: e.mr_index,
            });
        }
        let d = e.sha384.ok_or(EventLogError::MissingSha384(i))?;
        let r = &mut rtmr[(e.mr_index - 1) as usize];
        let mut h = Sha384::new();
        h.update(*r);
        h.update(d);
        *r = h.finalize().into();
    }
    Ok(rtmr)
}

/// Parses and replays in one step.
pub fn replay(bytes: &[u8]) -> Result<[Digest384; 4], EventLogError> {
    replay_rtmrs(&parse(bytes)?)
}

/// Checks that every extended event's SHA-384 digest is `SHA-384(event data)`.
///
/// Replay alone proves only that the digests explain the RTMRs; the data beside them is
/// unauthenticated until it hashes to its digest. This holds for every event of pupa's guest
/// log (`pupa_guest::tdx::rtmr::EventLog::measure` hashes exactly the data it logs), so a
/// verifier of pupa evidence calls this before reading any event's data. It does not hold for
/// logs in general: firmware such as OVMF logs a description as the data of events whose digest
/// covers something else (EV_EFI_BOOT_SERVICES_APPLICATION: a PE/COFF image hash), so
/// [`replay_rtmrs`] does not require it. EV_NO_ACTION events are not extended and not checked.
pub fn check_data_digests(log: &EventLog) -> Result<(), EventLogError> {
    for (i, e) in log.events.iter().enumerate() {
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        let d = e.sha384.ok_or(EventLogError::MissingSha384(i))?;
        if d[..] != Sha384::digest(&e.data)[..] {
            return Err(EventLogError::DigestMismatch {
                event: i,
                offset: e.offset,
            });
        }
    }
    Ok(())
}
