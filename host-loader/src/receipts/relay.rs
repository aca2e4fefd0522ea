//! The receipt relay: ingest receipts durably (from the job relay's receipt journal,
//! [`crate::relay::journal`]: a journaled TON receipt is paid under the voucher the guest sent
//! beside it, the one that covered its job), learn what the contract has paid, submit the
//! latest receipt of each channel when the [`BatchPolicy`] says so.
//!
//! Safe to kill at any instant (SIGKILL included): a receipt is acknowledged (its input
//! offset advanced) in the same SQLite transaction that stores it; what was paid is always
//! re-read from the contract (`get_channel`) rather than trusted from the database; and a
//! payout sent twice is refused by the contract (`seq > last`, exit 411) and pays nothing.
//! So after any sequence of crashes and restarts the contract pays exactly the latest
//! cumulative price of each channel.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use pupa_protocol::ton::{from_boc_single, MsgAddressInt, Payout, SignedReceipt, SignedVoucher};

use super::message::external_payout_boc;
use super::policy::{BatchPolicy, Decision};
use super::store::{Inserted, ReceiptStore};
use super::toncenter::{ApiError, TonApi};
use super::validate::Validator;
use super::{hex, parse_hex, ReceiptError};
use crate::relay::journal::{parse_line, Line, Record, RecordError};

/// A record field that must be hex.
fn hex_field(name: &str, h: &str) -> Result<Vec<u8>, ReceiptError> {
    parse_hex(h)
        .ok_or_else(|| ReceiptError::Record(RecordError::Payload(format!("{name} is not hex"))))
}

/// Contract exit code for "seq not above the last paid" (contracts/src/payment.fc).
pub const EXIT_REPLAY: i32 = 411;
const INPUT_OFFSET: &str = "input_offset";

/// What one [`Relay::tick`] did.
#[derive(Clone, Debug, Default)]
pub struct TickReport {
    /// Receipts newly stored.
    pub ingested: usize,
    /// Input lines refused, with the reason.
    pub rejected: Vec<String>,
    /// Payouts posted.
    pub submitted: usize,
    /// Input lines read.
    pub lines: usize,
    /// Receipts with nothing to pay (their job carried no voucher).
    pub skipped: usize,
    /// True when the input has no complete line left to read.
    pub input_drained: bool,
    /// True when every stored receipt is paid on chain.
    pub all_paid: bool,
}

/// The relay over one store, one contract and one API.
pub struct Relay {
    /// The receipt store.
    pub store: ReceiptStore,
    /// Host-side checks.
    pub validator: Validator,
    /// The HTTP API.
    pub api: TonApi,
    /// When to submit.
    pub policy: BatchPolicy,
    /// Most input lines ingested per tick.
    pub ingest_batch: usize,
    /// Client vouchers, matched by (client, guest, domain) to journaled TON receipts that
    /// came without one (records of earlier versions).
    pub vouchers: Vec<SignedVoucher>,
}

impl Relay {
    fn contract(&self) -> MsgAddressInt {
        self.validator.domain.contract
    }

    /// Reads up to `ingest_batch` complete lines of `input` (a receipt journal,
    /// [`crate::relay::journal`]), starting where the last committed one ended.
    pub fn ingest(
        &mut self,
        input: &Path,
        now: u64,
        report: &mut TickReport,
    ) -> Result<(), ReceiptError> {
        let mut offset = self.store.meta(INPUT_OFFSET)?.unwrap_or(0);
        let file = File::open(input)?;
        let size = file.metadata()?.len();
        if offset > size {
            // The journal rolled back a record it could not sync after this relay had read it
            // (see relay::journal): new records start at the file's end again.
            tracing::warn!(
                offset,
                size,
                "receipt input is shorter than what was read; continuing at its end"
            );
            offset = size;
            self.store.set_meta(INPUT_OFFSET, offset)?;
        }
        let mut f = BufReader::new(file);
        f.seek(SeekFrom::Start(offset))?;
        let mut line = Vec::new();
        for _ in 0..self.ingest_batch {
            line.clear();
            let n = f.read_until(b'\n', &mut line)?;
            if n == 0 || !line.ends_with(b"\n") {
                report.input_drained = true;
                return Ok(());
            }
            let at = offset;
            offset += n as u64;
            report.lines += 1;
            match self.payout_of(&line) {
                Ok(Some(p)) => {
                    if self.store.insert(&p, now, Some((INPUT_OFFSET, offset)))? == Inserted::New {
                        report.ingested += 1;
                    }
                    continue;
                }
                Ok(None) => report.skipped += 1,
                Err(e) => report.rejected.push(format!("input byte {at}: {e}")),
            }
            self.store.set_meta(INPUT_OFFSET, offset)?;
        }
        Ok(())
    }

    /// The checked payout one input line carries; `None` for a receipt without a TON receipt
    /// (its job carried no voucher: nothing to pay).
    fn payout_of(&self, line: &[u8]) -> Result<Option<Payout>, ReceiptError> {
        let text =
            std::str::from_utf8(line).map_err(|_| ReceiptError::Record(RecordError::Shape))?;
        let boc = match parse_line(text)? {
            Line::LegacyPayout(boc) => boc,
            Line::Record(Record::Payout { payout_boc }) => hex_field("payout_boc", &payout_boc)?,
            Line::Record(Record::Receipt {
                ton_receipt_boc,
                ton_voucher_boc,
                ..
            }) => {
                return self
                    .journaled_payout(ton_receipt_boc.as_deref(), ton_voucher_boc.as_deref())
            }
        };
        self.validator.check_boc(&boc).map(Some)
    }

    /// The payout of a journaled receipt record: its TON receipt with the voucher the guest
    /// sent beside it (for records without one, the matching `--vouchers` entry).
    fn journaled_payout(
        &self,
        receipt_hex: Option<&str>,
        voucher_hex: Option<&str>,
    ) -> Result<Option<Payout>, ReceiptError> {
        let receipt_hex = match (receipt_hex, voucher_hex) {
            (None, None) => return Ok(None),
            (None, Some(_)) => return Err(ReceiptError::VoucherWithoutReceipt),
            (Some(r), _) => r,
        };
        let receipt = from_boc_single(&hex_field("ton_receipt_boc", receipt_hex)?)
            .and_then(|c| SignedReceipt::from_cell(&c))
            .map_err(ReceiptError::Malformed)?;
        let r = &receipt.receipt;
        let voucher = match voucher_hex {
            Some(v) => from_boc_single(&hex_field("ton_voucher_boc", v)?)
                .and_then(|c| SignedVoucher::from_cell(&c))
                .map_err(ReceiptError::MalformedVoucher)?,
            None => *self
                .vouchers
                .iter()
                .find(|v| {
                    v.voucher.client_key == r.client_key
                        && v.voucher.guest_key == r.guest_key
                        && v.voucher.domain == r.domain
                })
                .ok_or_else(|| ReceiptError::NoVoucher {
                    client: hex(&r.client_key),
                    guest: hex(&r.guest_key),
                })?,
        };
        let p = Payout {
            query_id: r.seq,
            receipt,
            voucher,
        };
        self.validator.check(&p)?;
        Ok(Some(p))
    }

    /// Re-reads what the contract has paid for every channel with unpaid receipts (or all
    /// channels when `all`).
    pub fn sync(&mut self, all: bool) -> Result<(), ReceiptError> {
        for c in self.store.channels()? {
            if all || c.submitted_seq > c.confirmed_seq {
                let (seq, paid) =
                    self.api
                        .get_channel(&self.contract(), &c.guest_key, &c.client_key)?;
                if (seq, paid) != (c.confirmed_seq, c.confirmed_paid) {
                    self.store
                        .set_confirmed(&c.guest_key, &c.client_key, seq, paid)?;
                }
            }
        }
        Ok(())
    }

    /// Submits what the policy says is due.
    pub fn submit(&mut self, now: u64, report: &mut TickReport) -> Result<(), ReceiptError> {
        for c in self.store.channels()? {
            if let Decision::Submit(_) = self.policy.decide(&c, now) {
                let Some(boc) = self
                    .store
                    .payout_boc(&c.guest_key, &c.client_key, c.latest_seq)?
                else {
                    continue;
                };
                // Re-check what comes out of the database before it leaves the host.
                let payout = from_boc_single(&boc)
                    .and_then(|cell| Payout::from_cell(&cell))
                    .map_err(ReceiptError::Malformed)?;
                self.validator.check(&payout)?;
                let msg = external_payout_boc(&self.contract(), &payout)
                    .map_err(ReceiptError::Malformed)?;
                self.store
                    .mark_submitted(&c.guest_key, &c.client_key, c.latest_seq, now)?;
                match self.api.send_boc(&msg) {
                    Ok(()) => report.submitted += 1,
                    // Already paid up to this seq (e.g. sent before a crash): nothing to do
                    // but learn the contract's state.
                    Err(ApiError::Refused {
                        exit_code: Some(EXIT_REPLAY),
                        ..
                    }) => {}
                    Err(e) => self
                        .store
                        .set_error(&c.guest_key, &c.client_key, &e.to_string())?,
                }
                let (seq, paid) =
                    self.api
                        .get_channel(&self.contract(), &c.guest_key, &c.client_key)?;
                self.store
                    .set_confirmed(&c.guest_key, &c.client_key, seq, paid)?;
            }
        }
        Ok(())
    }

    /// One round: ingest, sync in-flight channels, submit.
    pub fn tick(&mut self, input: Option<&Path>, now: u64) -> Result<TickReport, ReceiptError> {
        let mut report = TickReport::default();
        match input {
            Some(p) => self.ingest(p, now, &mut report)?,
            None => report.input_drained = true,
        }
        self.sync(false)?;
        self.submit(now, &mut report)?;
        report.all_paid = self
            .store
            .channels()?
            .iter()
            .all(|c| c.latest_seq <= c.confirmed_seq);
        Ok(report)
    }
}
