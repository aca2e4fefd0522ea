//! The durable receipt store: SQLite in WAL mode with `synchronous=FULL`, so a receipt is
//! on disk when [`ReceiptStore::insert`] returns, and every state change is one
//! transaction. Crash safety of the whole relay rests on two facts: receipts are never
//! lost once inserted, and the chain (not this database) is the truth about what was paid.

use std::path::Path;

use pupa_protocol::ton::{to_boc, Payout};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::ReceiptError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS receipts (
    guest_key   BLOB    NOT NULL,
    client_key  BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    units       INTEGER NOT NULL,
    price       INTEGER NOT NULL,       -- cumulative, nanoton
    payout_boc  BLOB    NOT NULL,       -- payout#70757061: signed receipt + voucher
    received_at INTEGER NOT NULL,       -- unix seconds
    PRIMARY KEY (guest_key, client_key, seq)
);
CREATE TABLE IF NOT EXISTS channels (
    guest_key      BLOB    NOT NULL,
    client_key     BLOB    NOT NULL,
    confirmed_seq  INTEGER NOT NULL DEFAULT 0,  -- from the contract's get_channel
    confirmed_paid INTEGER NOT NULL DEFAULT 0,
    submitted_seq  INTEGER NOT NULL DEFAULT 0,
    submitted_at   INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    PRIMARY KEY (guest_key, client_key)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Whether an insert stored something new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new receipt.
    New,
    /// The identical receipt was already stored.
    Duplicate,
}

/// Payout state of one (guest, client) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Guest key.
    pub guest_key: [u8; 32],
    /// Client key.
    pub client_key: [u8; 32],
    /// Highest stored receipt.
    pub latest_seq: u64,
    /// Its cumulative price.
    pub latest_price: u128,
    /// When the oldest receipt not yet paid arrived (0 if none).
    pub oldest_unpaid_at: u64,
    /// Last seq the contract reports paid.
    pub confirmed_seq: u64,
    /// Cumulative amount the contract reports paid.
    pub confirmed_paid: u128,
    /// Last seq submitted.
    pub submitted_seq: u64,
    /// When it was submitted.
    pub submitted_at: u64,
    /// Last submission error, if any.
    pub last_error: Option<String>,
}

/// One stored receipt with its payout status.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReceiptRow {
    /// Guest key (hex).
    pub guest_key: String,
    /// Client key (hex).
    pub client_key: String,
    /// Sequence number.
    pub seq: u64,
    /// Cumulative units.
    pub units: u64,
    /// Cumulative price, nanoton.
    pub price: u128,
    /// `paid` (the contract has paid up to here), `submitted`, or `pending`.
    pub status: &'static str,
}

fn key32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "key".into(), rusqlite::types::Type::Blob)
    })
}

fn to_i64(p: u128) -> Result<i64, ReceiptError> {
    i64::try_from(p).map_err(|_| ReceiptError::PriceOutOfRange(p))
}

/// The receipt database.
pub struct ReceiptStore {
    conn: Connection,
}

impl ReceiptStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ReceiptError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(ReceiptStore { conn })
    }

    /// Stores a validated payout durably. With `offset`, also records `meta[offset.0] =
    /// offset.1` in the same transaction (the input position this receipt was read from).
    pub fn insert(
        &mut self,
        p: &Payout,
        now: u64,
        offset: Option<(&str, u64)>,
    ) -> Result<Inserted, ReceiptError> {
        let r = &p.receipt.receipt;
        let boc = to_boc(&p.to_cell().map_err(ReceiptError::Malformed)?);
        let price = to_i64(r.price)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Vec<u8>> = tx
            .query_row(
                "SELECT payout_boc FROM receipts WHERE guest_key=?1 AND client_key=?2 AND seq=?3",
                params![&r.guest_key[..], &r.client_key[..], r.seq as i64],
                |row| row.get(0),
            )
            .optional()?;
        let result = match existing {
            Some(b) if b == boc => Inserted::Duplicate,
            Some(_) => return Err(ReceiptError::Conflict { seq: r.seq }),
            None => {
                // Totals rise with seq: no stored lower seq may have a higher price, no
                // higher seq a lower one.
                let bad: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM receipts WHERE guest_key=?1 AND client_key=?2 AND
                       ((seq < ?3 AND (price > ?4 OR units > ?5)) OR (seq > ?3 AND (price < ?4 OR units < ?5)))",
                    params![&r.guest_key[..], &r.client_key[..], r.seq as i64, price, r.units as i64],
                    |row| row.get(0),
                )?;
                if bad > 0 {
                    return Err(ReceiptError::NonMonotonic { seq: r.seq });
                }
                tx.execute(
                    "INSERT INTO receipts (guest_key, client_key, seq, units, price, payout_boc, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![&r.guest_key[..], &r.client_key[..], r.seq as i64, r.units as i64, price, boc, now as i64],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO channels (guest_key, client_key) VALUES (?1, ?2)",
                    params![&r.guest_key[..], &r.client_key[..]],
                )?;
                Inserted::New
            }
        };
        if let Some((k, v)) = offset {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v as i64],
            )?;
        }
        tx.commit()?;
        Ok(result)
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &str) -> Result<Option<u64>, ReceiptError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|v| v as u64))
    }

    /// Writes a meta value.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), ReceiptError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value as i64],
        )?;
        Ok(())
    }

    /// All channels with their latest receipt and payout state.
    pub fn channels(&self) -> Result<Vec<Channel>, ReceiptError> {
        let mut st = self.conn.prepare(
            "SELECT c.guest_key, c.client_key, c.confirmed_seq, c.confirmed_paid, c.submitted_seq,
                    c.submitted_at, c.last_error,
                    (SELECT MAX(seq) FROM receipts r WHERE r.guest_key=c.guest_key AND r.client_key=c.client_key),
                    (SELECT price FROM receipts r WHERE r.guest_key=c.guest_key AND r.client_key=c.client_key
                       ORDER BY seq DESC LIMIT 1),
                    (SELECT MIN(received_at) FROM receipts r WHERE r.guest_key=c.guest_key
                       AND r.client_key=c.client_key AND r.seq > c.confirmed_seq)
             FROM channels c ORDER BY c.guest_key, c.client_key",
        )?;
        let rows = st.query_map([], |row| {
            Ok(Channel {
                guest_key: key32(row.get(0)?)?,
                client_key: key32(row.get(1)?)?,
                confirmed_seq: row.get::<_, i64>(2)? as u64,
                confirmed_paid: row.get::<_, i64>(3)? as u128,
                submitted_seq: row.get::<_, i64>(4)? as u64,
                submitted_at: row.get::<_, i64>(5)? as u64,
                last_error: row.get(6)?,
                latest_seq: row.get::<_, Option<i64>>(7)?.unwrap_or(0) as u64,
                latest_price: row.get::<_, Option<i64>>(8)?.unwrap_or(0) as u128,
                oldest_unpaid_at: row.get::<_, Option<i64>>(9)?.unwrap_or(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The stored payout BOC with this seq.
    pub fn payout_boc(
        &self,
        guest: &[u8; 32],
        client: &[u8; 32],
        seq: u64,
    ) -> Result<Option<Vec<u8>>, ReceiptError> {
        Ok(self
            .conn
            .query_row(
                "SELECT payout_boc FROM receipts WHERE guest_key=?1 AND client_key=?2 AND seq=?3",
                params![&guest[..], &client[..], seq as i64],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records a submission.
    pub fn mark_submitted(
        &self,
        guest: &[u8; 32],
        client: &[u8; 32],
        seq: u64,
        now: u64,
    ) -> Result<(), ReceiptError> {
        self.conn.execute(
            "UPDATE channels SET submitted_seq=?3, submitted_at=?4, last_error=NULL WHERE guest_key=?1 AND client_key=?2",
            params![&guest[..], &client[..], seq as i64, now as i64],
        )?;
        Ok(())
    }

    /// Records what the contract reports paid.
    pub fn set_confirmed(
        &self,
        guest: &[u8; 32],
        client: &[u8; 32],
        seq: u64,
        paid: u128,
    ) -> Result<(), ReceiptError> {
        self.conn.execute(
            "UPDATE channels SET confirmed_seq=?3, confirmed_paid=?4 WHERE guest_key=?1 AND client_key=?2",
            params![&guest[..], &client[..], seq as i64, to_i64(paid)?],
        )?;
        Ok(())
    }

    /// Records a failed submission.
    pub fn set_error(
        &self,
        guest: &[u8; 32],
        client: &[u8; 32],
        err: &str,
    ) -> Result<(), ReceiptError> {
        self.conn.execute(
            "UPDATE channels SET last_error=?3 WHERE guest_key=?1 AND client_key=?2",
            params![&guest[..], &client[..], err],
        )?;
        Ok(())
    }

    /// Receipts, newest first, with their payout status.
    pub fn list(&self, limit: usize) -> Result<Vec<ReceiptRow>, ReceiptError> {
        let mut st = self.conn.prepare(
            "SELECT r.guest_key, r.client_key, r.seq, r.units, r.price,
                    COALESCE(c.confirmed_seq, 0), COALESCE(c.submitted_seq, 0)
             FROM receipts r LEFT JOIN channels c ON c.guest_key=r.guest_key AND c.client_key=r.client_key
             ORDER BY r.received_at DESC, r.seq DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |row| {
            let seq = row.get::<_, i64>(2)? as u64;
            let confirmed = row.get::<_, i64>(5)? as u64;
            let submitted = row.get::<_, i64>(6)? as u64;
            Ok(ReceiptRow {
                guest_key: super::hex(&row.get::<_, Vec<u8>>(0)?),
                client_key: super::hex(&row.get::<_, Vec<u8>>(1)?),
                seq,
                units: row.get::<_, i64>(3)? as u64,
                price: row.get::<_, i64>(4)? as u128,
                status: if seq <= confirmed {
                    "paid"
                } else if seq <= submitted {
                    "submitted"
                } else {
                    "pending"
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
