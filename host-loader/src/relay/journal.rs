//! The receipt journal: every receipt the relay forwards is appended here and synced to disk
//! before the client sees it (DESIGN.md, "Performance targets": receipts are on disk before the
//! client sees them).
//!
//! One JSON object per line: the interim statement's fields, its signature, and the TON
//! `Signed PupaReceipt` BOC when the job carried a voucher (`ton_receipt_boc`, hex). The line
//! holds nothing the receipt does not: receipts name keys and work units, never job contents.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pupa_protocol::frame::{Frame, Kind};
use pupa_protocol::msg::Message;

/// Why a receipt could not be journaled.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be written or synced.
    #[error("receipt journal I/O: {0}")]
    Io(#[from] io::Error),
    /// The guest's `Receipt` frame did not decode.
    #[error("receipt frame does not decode: {0}")]
    Decode(#[from] pupa_protocol::msg::MsgError),
    /// Not a receipt message.
    #[error("not a receipt message")]
    NotReceipt,
}

/// An append-only, fsync'd receipt log.
#[derive(Debug)]
pub struct Journal {
    file: Mutex<File>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Journal {
    /// Opens (creating) the journal at `path` for appending.
    pub fn open(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            file: Mutex::new(file),
        })
    }

    /// Decodes a `Receipt` frame body, appends its line and syncs the file.
    pub fn append(&self, body: &[u8]) -> Result<(), JournalError> {
        let frame = Frame {
            kind: Kind::Receipt,
            body: body.to_vec(),
        };
        let Message::Receipt(r) = Message::from_frame(&frame)? else {
            return Err(JournalError::NotReceipt);
        };
        let s = &r.statement;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let line = serde_json::json!({
            "received_at": now,
            "guest_key": hex(&s.receipt.guest_key),
            "client_key": hex(&s.receipt.client_key),
            "job_hash": hex(&s.receipt.job_hash),
            "seq": s.receipt.seq,
            "units": s.receipt.units,
            "total_units": s.receipt.total_units,
            "signature": hex(&s.signature),
            "ton_receipt_boc": r.ton.as_ref().map(|b| hex(b)),
        });
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(f, "{line}")?;
        f.sync_data()?;
        Ok(())
    }
}
