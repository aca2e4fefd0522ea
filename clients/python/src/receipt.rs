//! The verified receipt of a job, with readable fields (hex, base64 BOC, TON amounts), from
//! `pupa_host::client::report` — the same views `pupa-client run` prints.

use pupa_host::client::report::{
    boc_base64, receipt_json, receipt_lines, ton_amount, TonReceiptView,
};
use pupa_measurements::hexfmt::encode as hex;
use pupa_protocol::msg::ReceiptReply;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The TON receipt (`Signed PupaReceipt`) a job with a voucher comes back with: the payable
/// one, with the *cumulative* seq, units and price for the client's voucher key.
#[pyclass(frozen, module = "pupa")]
#[derive(Clone)]
pub struct TonReceipt {
    /// The BOC in hex.
    #[pyo3(get)]
    pub boc_hex: String,
    /// The BOC in standard base64 (what TON wallets and toncenter take).
    #[pyo3(get)]
    pub boc_base64: String,
    /// Representation hash of the root cell (hex).
    #[pyo3(get)]
    pub cell_hash: String,
    /// Representation hash of the signed `PupaReceipt` cell (hex).
    #[pyo3(get)]
    pub signed_hash: String,
    /// Network global id (-239 mainnet, -3 testnet).
    #[pyo3(get)]
    pub network_id: i32,
    /// The payment contract, raw form `wc:hex`.
    #[pyo3(get)]
    pub contract: String,
    /// The guest's Ed25519 receipt key (hex).
    #[pyo3(get)]
    pub guest_key: String,
    /// The client's Ed25519 voucher key (hex).
    #[pyo3(get)]
    pub client_voucher_key: String,
    /// The last job these totals include (its job hash, hex).
    #[pyo3(get)]
    pub last_job: String,
    /// Cumulative receipt counter for this voucher key.
    #[pyo3(get)]
    pub seq: u64,
    /// Cumulative work units.
    #[pyo3(get)]
    pub units: u64,
    /// Cumulative price in nanotons.
    #[pyo3(get)]
    pub price_nanotons: u128,
    /// The same in TON, nine decimals (`"0.000000501"`).
    #[pyo3(get)]
    pub price_ton: String,
    /// The guest's signature (hex); verified before the result was returned.
    #[pyo3(get)]
    pub signature: String,
    boc: Vec<u8>,
}

#[pymethods]
impl TonReceipt {
    /// The BOC bytes.
    #[getter]
    fn boc<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.boc)
    }

    fn __repr__(&self) -> String {
        format!(
            "TonReceipt(seq={}, units={}, price={} TON, cell_hash={:?})",
            self.seq, self.units, self.price_ton, self.cell_hash
        )
    }
}

impl TonReceipt {
    fn parse(boc: &[u8]) -> Option<TonReceipt> {
        // `run_job` verified this BOC before the receipt reached us; a parse failure here
        // cannot happen for a returned job.
        let v = TonReceiptView::parse(boc).ok()?;
        let r = &v.signed.receipt;
        Some(TonReceipt {
            boc_hex: hex(boc),
            boc_base64: boc_base64(boc),
            cell_hash: hex(&v.cell_hash),
            signed_hash: hex(&v.receipt_hash),
            network_id: r.domain.network_id,
            contract: r.domain.contract.to_raw(),
            guest_key: hex(&r.guest_key),
            client_voucher_key: hex(&r.client_key),
            last_job: hex(&r.last_job),
            seq: r.seq,
            units: r.units,
            price_nanotons: r.price,
            price_ton: ton_amount(r.price).trim_end_matches(" TON").to_string(),
            signature: hex(&v.signed.signature),
            boc: boc.to_vec(),
        })
    }
}

/// A job's verified receipt: the guest's per-job statement (signature, reply key, sealed job
/// hash and units checked by the client), and the TON receipt when the job carried a voucher.
#[pyclass(frozen, module = "pupa")]
#[derive(Clone)]
pub struct Receipt {
    /// The job id (hex, 16 bytes) the client chose.
    #[pyo3(get)]
    pub job_id: String,
    /// SHA-256 over the sealed job (hex): what the receipt names.
    #[pyo3(get)]
    pub job_hash: String,
    /// The guest's Ed25519 receipt key (hex).
    #[pyo3(get)]
    pub guest_key: String,
    /// The client's X25519 reply key of this job (hex).
    #[pyo3(get)]
    pub client_reply_key: String,
    /// The statement's counter for this reply key.
    #[pyo3(get)]
    pub seq: u64,
    /// Work units of this job (the cost model: docs/PROTOCOL.md, "Pricing and the cost model").
    #[pyo3(get)]
    pub units: u64,
    /// Total units for this reply key.
    #[pyo3(get)]
    pub total_units: u64,
    /// The statement's signature (hex); verified.
    #[pyo3(get)]
    pub signature: String,
    /// The TON receipt, or None when the job carried no voucher.
    #[pyo3(get)]
    pub ton: Option<TonReceipt>,
    reply: ReceiptReply,
}

impl Receipt {
    pub fn new(reply: &ReceiptReply, job_id: &[u8; 16], job_hash: &[u8; 32]) -> Receipt {
        let st = &reply.statement;
        let r = &st.receipt;
        Receipt {
            job_id: hex(job_id),
            job_hash: hex(job_hash),
            guest_key: hex(&r.guest_key),
            client_reply_key: hex(&r.client_key),
            seq: r.seq,
            units: r.units,
            total_units: r.total_units,
            signature: hex(&st.signature),
            ton: reply.ton.as_deref().and_then(|b| TonReceipt::parse(b)),
            reply: reply.clone(),
        }
    }
}

#[pymethods]
impl Receipt {
    /// The receipt as one JSON object (the fields of `pupa-client run --json`'s receipt).
    fn to_json(&self) -> String {
        let mut v = receipt_json(&self.reply);
        v["job_id"] = self.job_id.clone().into();
        v.to_string()
    }

    /// The receipt as text, as `pupa-client run` prints it.
    fn __str__(&self) -> String {
        receipt_lines(&self.reply).join("\n")
    }

    fn __repr__(&self) -> String {
        format!(
            "Receipt(job_id={:?}, units={}, ton={})",
            self.job_id,
            self.units,
            self.ton.as_ref().map_or("None".into(), |t| t.__repr__())
        )
    }
}
