//! The receipt journal: every receipt the relay forwards is appended here and synced to disk
//! before the client sees it (docs/DESIGN.md, "Receipts and payment on TON": receipts are on
//! disk before the client sees them), and `pupa-host receipts relay --input` reads the same
//! file.
//!
//! # Format
//!
//! UTF-8 text, one record per line:
//!
//! ```text
//! R1 <check> <payload>\n
//! ```
//!
//! - `R1`: the format tag (version 1);
//! - `<check>`: the first 8 bytes of SHA-256(`<payload>`), 16 lowercase hex characters;
//! - `<payload>`: one compact JSON object (no newline), a [`Record`]:
//!   - `{"kind":"receipt", received_at, guest_key, client_key, job_hash, seq, units,
//!     total_units, signature, ton_receipt_boc, ton_voucher_boc}`: a receipt the job relay
//!     forwarded (the interim statement's fields and signature, hex; when the job carried a
//!     voucher, `ton_receipt_boc` is the TON `Signed PupaReceipt` BOC and `ton_voucher_boc`
//!     the client's `Signed PupaVoucher` BOC that covered the job, both as the guest sent
//!     them in the clear: together a payout, which `receipts relay` builds; else null. A
//!     record without `ton_voucher_boc`, as earlier versions wrote, reads as null);
//!   - `{"kind":"payout", "payout_boc": HEX}`: a complete payout claim (signed receipt and
//!     voucher), e.g. assembled by the operator.
//!
//! A record counts only if its line is complete (ends in `\n`) and its check matches. The file
//! is only ever appended to, one whole record per write, so the only damage a crash or a full
//! disk can leave is one partial record at the end (a *torn tail*):
//!
//! - an append whose write fails (a short write: `ENOSPC`, `EFBIG`) is rolled back at once:
//!   the file is truncated to its last good length ([`File::set_len`]) and the append fails;
//!   an append whose line was written whole but whose fsync failed keeps the line (a reader may
//!   have read it) and fails: in both cases nothing is acknowledged;
//! - [`Journal::open`] truncates a torn tail (an incomplete last line) and logs how many bytes
//!   it dropped. Only incomplete lines are ever removed, and readers ([`read_all`],
//!   `receipts relay`) never consume one, so nothing a reader has seen disappears. A complete
//!   line that is not a valid record (a damaged disk) is kept and rejected by readers; several
//!   of them after the last valid record, or a file without any valid record, is not a pupa
//!   journal: `open` refuses it rather than append to it.
//!
//! Lines holding only hex (a payout BOC, the input format of earlier versions) are still read by
//! [`parse_line`].
//!
//! The records hold nothing the receipt does not: receipts name keys and work units, never job
//! contents.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pupa_protocol::frame::{Frame, Kind};
use pupa_protocol::msg::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The tag every record line starts with.
pub const TAG: &str = "R1";

/// Why a receipt could not be journaled, or the journal not opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be read, written or synced.
    #[error("receipt journal I/O: {0}")]
    Io(#[from] io::Error),
    /// The guest's `Receipt` frame did not decode.
    #[error("receipt frame does not decode: {0}")]
    Decode(#[from] pupa_protocol::msg::MsgError),
    /// Not a receipt message.
    #[error("not a receipt message")]
    NotReceipt,
    /// Several complete lines after the last valid record, or no valid record at all: not
    /// what a crash leaves, so nothing is appended to it.
    #[error(
        "{path}: {lines} complete lines are not journal records (several after the last valid \
         one, or no valid one at all); is it a pupa receipt journal? It is left untouched"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Damaged lines.
        lines: usize,
    },
}

/// Why one journal line is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not `R1 <check> <payload>`.
    #[error("not a journal record (want `{TAG} <16 hex> <json>`)")]
    Shape,
    /// The check does not match the payload.
    #[error("checksum mismatch (damaged record)")]
    Checksum,
    /// The payload is not a known record.
    #[error("record payload: {0}")]
    Payload(String),
}

/// One journal record (the payload of a line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A receipt the job relay forwarded to a client.
    Receipt {
        /// Unix seconds when the relay stored it.
        received_at: u64,
        /// Guest receipt key (hex).
        guest_key: String,
        /// Client reply key (hex).
        client_key: String,
        /// Hash of the sealed job (hex).
        job_hash: String,
        /// Per-client sequence number.
        seq: u64,
        /// Units of this job.
        units: u64,
        /// Running total.
        total_units: u64,
        /// Guest signature over the statement (hex).
        signature: String,
        /// TON `Signed PupaReceipt` BOC (hex) when the job carried a voucher.
        ton_receipt_boc: Option<String>,
        /// The client's `Signed PupaVoucher` BOC (hex) that covered the job, beside
        /// `ton_receipt_boc` (absent in records of earlier versions).
        #[serde(default)]
        ton_voucher_boc: Option<String>,
    },
    /// A complete payout claim (`payout#70757061`, hex BOC).
    Payout {
        /// The BOC.
        payout_boc: String,
    },
}

/// What one input line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A checked record.
    Record(Record),
    /// A bare hex payout BOC (earlier input format).
    LegacyPayout(Vec<u8>),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_of(payload: &str) -> String {
    hex(&Sha256::digest(payload.as_bytes())[..8])
}

/// The line (with its `\n`) that stores `record`.
pub fn encode_line(record: &Record) -> String {
    let payload = serde_json::to_string(record).expect("records serialize");
    format!("{TAG} {} {payload}\n", check_of(&payload))
}

/// Parses one line (without its `\n`): a checked record, or a legacy hex payout BOC.
pub fn parse_line(line: &str) -> Result<Line, RecordError> {
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(rest) = line.strip_prefix(TAG).and_then(|r| r.strip_prefix(' ')) {
        let (check, payload) = rest.split_once(' ').ok_or(RecordError::Shape)?;
        if check.len() != 16 || !check.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RecordError::Shape);
        }
        if check_of(payload) != check.to_ascii_lowercase() {
            return Err(RecordError::Checksum);
        }
        return serde_json::from_str(payload)
            .map(Line::Record)
            .map_err(|e| RecordError::Payload(e.to_string()));
    }
    crate::receipts::parse_hex(line.trim())
        .filter(|b| !b.is_empty())
        .map(Line::LegacyPayout)
        .ok_or(RecordError::Shape)
}

/// Whether `line` (with its `\n`) is a valid checked record.
fn is_record(line: &str) -> bool {
    line.ends_with('\n') && matches!(parse_line(line), Ok(Line::Record(_)))
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records in the file.
    pub records: usize,
    /// Bytes of a torn tail that were truncated away.
    pub dropped_bytes: u64,
    /// Complete lines that are not valid records (kept; readers reject them).
    pub damaged_lines: usize,
}

/// An append-only, fsync'd receipt journal.
#[derive(Debug)]
pub struct Journal {
    inner: Mutex<Inner>,
    recovery: Recovery,
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// Length of the file up to its last durable record.
    len: u64,
}

/// What a scan of the journal found.
struct Scan {
    /// Valid records.
    records: usize,
    /// End of the last complete line (valid or not).
    complete_end: u64,
    /// Complete lines that are not valid records.
    damaged: usize,
    /// Damaged complete lines after the last valid record.
    damaged_after: usize,
}

fn scan(file: &File) -> io::Result<Scan> {
    let mut rd = BufReader::new(file);
    rd.seek(SeekFrom::Start(0))?;
    let mut s = Scan {
        records: 0,
        complete_end: 0,
        damaged: 0,
        damaged_after: 0,
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = rd.read_until(b'\n', &mut buf)?;
        if n == 0 || !buf.ends_with(b"\n") {
            return Ok(s); // the end, or an incomplete last line (a torn append)
        }
        s.complete_end += n as u64;
        if std::str::from_utf8(&buf).is_ok_and(is_record) {
            s.records += 1;
            s.damaged_after = 0;
        } else {
            s.damaged += 1;
            s.damaged_after += 1;
        }
    }
}

impl Journal {
    /// Opens (creating) the journal at `path`, repairing a torn tail (see the module docs).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let size = file.metadata()?.len();
        let sc = scan(&file)?;
        if sc.damaged_after > 1 || (sc.records == 0 && sc.damaged > 0) {
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                lines: sc.damaged,
            });
        }
        // Only an incomplete last line is ever removed: readers never consume one, so nothing
        // a reader has seen disappears.
        let dropped_bytes = size - sc.complete_end;
        if dropped_bytes > 0 {
            file.set_len(sc.complete_end)?;
            file.sync_all()?;
            tracing::warn!(
                path = %path.display(),
                dropped_bytes,
                at = sc.complete_end,
                "receipt journal: truncated a torn record at the end"
            );
        }
        if sc.damaged > 0 {
            tracing::warn!(path = %path.display(), damaged_lines = sc.damaged, "receipt journal: damaged records are kept (readers reject them)");
        }
        if created {
            // The new directory entry must be durable too.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(Journal {
            inner: Mutex::new(Inner {
                file,
                len: sc.complete_end,
            }),
            recovery: Recovery {
                records: sc.records,
                dropped_bytes,
                damaged_lines: sc.damaged,
            },
        })
    }

    /// What `open` found and repaired.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Decodes a `Receipt` frame body, appends its record and syncs the file. On `Ok` the
    /// record is durable; on `Err` the file is as before the call.
    pub fn append(&self, body: &[u8]) -> Result<(), JournalError> {
        let frame = Frame {
            kind: Kind::Receipt,
            body: body.to_vec(),
        };
        let Message::Receipt(r) = Message::from_frame(&frame)? else {
            return Err(JournalError::NotReceipt);
        };
        let s = &r.statement;
        let received_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.append_record(&Record::Receipt {
            received_at,
            guest_key: hex(&s.receipt.guest_key),
            client_key: hex(&s.receipt.client_key),
            job_hash: hex(&s.receipt.job_hash),
            seq: s.receipt.seq,
            units: s.receipt.units,
            total_units: s.receipt.total_units,
            signature: hex(&s.signature),
            ton_receipt_boc: r.ton.as_ref().map(|b| hex(b)),
            ton_voucher_boc: r.ton_voucher.as_ref().map(|b| hex(b)),
        })
    }

    /// Appends one record and syncs it; a failed write or sync is rolled back.
    pub fn append_record(&self, record: &Record) -> Result<(), JournalError> {
        let line = encode_line(record);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let len = g.len;
        let written = g
            .file
            .seek(SeekFrom::Start(len))
            .and_then(|_| g.file.write_all(line.as_bytes()));
        if let Err(e) = written {
            // A short write (ENOSPC, EFBIG): the line has no `\n`, no reader has taken it.
            // Roll back to the last complete record.
            let undo = g.file.set_len(len).and_then(|_| g.file.sync_data());
            if let Err(u) = undo {
                tracing::error!(error = %u, "receipt journal: rollback failed; the torn tail is repaired at the next open");
            }
            return Err(e.into());
        }
        // The line is whole: keep it even if the sync fails (a reader may already have read
        // it; the next successful sync makes it durable), but do not acknowledge it.
        g.len = len + line.len() as u64;
        g.file.sync_data()?;
        Ok(())
    }
}

/// Reads every line of a journal: (byte offset, line text or its error) per complete line.
pub fn read_all(path: &Path) -> io::Result<Vec<(u64, Result<Line, RecordError>)>> {
    let mut rd = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    let (mut offset, mut buf) = (0u64, Vec::new());
    loop {
        buf.clear();
        let n = rd.read_until(b'\n', &mut buf)?;
        if n == 0 || !buf.ends_with(b"\n") {
            return Ok(out);
        }
        let parsed = std::str::from_utf8(&buf)
            .map_err(|_| RecordError::Shape)
            .and_then(parse_line);
        out.push((offset, parsed));
        offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_any_flipped_byte_is_caught() {
        let r = Record::Payout {
            payout_boc: "b5ee9c72".into(),
        };
        let line = encode_line(&r);
        assert_eq!(parse_line(&line), Ok(Line::Record(r)));
        for i in 0..line.len() - 1 {
            let mut b = line.clone().into_bytes();
            b[i] ^= 0x01;
            let Ok(s) = String::from_utf8(b) else {
                continue;
            };
            assert!(
                !matches!(parse_line(&s), Ok(Line::Record(_))),
                "flip at {i}: {s}"
            );
        }
    }

    #[test]
    fn hex_lines_are_legacy_payouts() {
        assert_eq!(
            parse_line("b5ee9c72\n"),
            Ok(Line::LegacyPayout(vec![0xb5, 0xee, 0x9c, 0x72]))
        );
        assert_eq!(parse_line("{\"seq\":1}"), Err(RecordError::Shape));
    }
}
