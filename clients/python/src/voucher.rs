//! `Voucher.build`: a client-signed TON voucher (`Signed PupaVoucher`, `pupa_protocol::ton`),
//! the most a guest may claim from the client's deposit, cumulatively.

use ed25519_dalek::SigningKey;
use pupa_host::client::report::boc_base64;
use pupa_measurements::hexfmt::{decode_array, encode as hex};
use pupa_protocol::ton::{self, Domain, MsgAddressInt, SignedVoucher, Voucher as TonVoucher};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

fn secret(key: &[u8]) -> PyResult<SigningKey> {
    let seed: [u8; 32] = key
        .try_into()
        .map_err(|_| PyValueError::new_err("the voucher secret key must be 32 bytes"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The Ed25519 public key (hex) of a 32-byte voucher secret key: the deposit owner key.
#[pyfunction]
pub fn voucher_public_key(secret_key: &[u8]) -> PyResult<String> {
    Ok(hex(&secret(secret_key)?.verifying_key().to_bytes()))
}

/// A signed TON voucher: lets the guest `guest_key` claim at most `cap_nanotons`, cumulatively,
/// from the client's deposit in `contract` on `network_id`. Pass it to a job
/// (`voucher=`); the job then comes back with a TON receipt.
#[pyclass(frozen, module = "pupa")]
pub struct Voucher {
    /// The client's Ed25519 voucher key (hex).
    #[pyo3(get)]
    pub client_key: String,
    /// The guest allowed to claim (hex).
    #[pyo3(get)]
    pub guest_key: String,
    /// The cap in nanotons.
    #[pyo3(get)]
    pub cap_nanotons: u128,
    /// Network global id.
    #[pyo3(get)]
    pub network_id: i32,
    /// The payment contract, raw form.
    #[pyo3(get)]
    pub contract: String,
    /// The BOC in hex.
    #[pyo3(get)]
    pub boc_hex: String,
    /// The BOC in standard base64.
    #[pyo3(get)]
    pub boc_base64: String,
    /// Representation hash of the signed voucher cell (hex).
    #[pyo3(get)]
    pub cell_hash: String,
    boc: Vec<u8>,
}

#[pymethods]
impl Voucher {
    /// Signs a voucher with `secret_key` (32 bytes, a dedicated key, not a wallet key) for the
    /// guest `guest_key` (hex: `Worker.receipt_pk`). `contract`: the payment contract, raw
    /// (`0:…`) or user-friendly form.
    #[staticmethod]
    #[pyo3(signature = (secret_key, guest_key, cap_nanotons, contract, network_id=ton::TESTNET_ID))]
    fn build(
        secret_key: &[u8],
        guest_key: &str,
        cap_nanotons: u128,
        contract: &str,
        network_id: i32,
    ) -> PyResult<Voucher> {
        let key = secret(secret_key)?;
        let guest = decode_array::<32>(guest_key.trim())
            .map_err(|e| PyValueError::new_err(format!("guest_key: {e}")))?;
        let contract = MsgAddressInt::parse(contract)
            .map_err(|e| PyValueError::new_err(format!("contract {contract:?}: {e}")))?;
        let v = TonVoucher {
            domain: Domain {
                network_id,
                contract,
            },
            client_key: key.verifying_key().to_bytes(),
            guest_key: guest,
            cap: cap_nanotons,
        };
        let signed: SignedVoucher = v
            .sign(&key)
            .map_err(|e| PyValueError::new_err(format!("voucher: {e}")))?;
        let cell = signed
            .to_cell()
            .map_err(|e| PyValueError::new_err(format!("voucher: {e}")))?;
        let boc = ton::to_boc(&cell);
        Ok(Voucher {
            client_key: hex(&v.client_key),
            guest_key: hex(&guest),
            cap_nanotons,
            network_id,
            contract: contract.to_raw(),
            boc_hex: hex(&boc),
            boc_base64: boc_base64(&boc),
            cell_hash: hex(&cell.hash()),
            boc,
        })
    }

    /// The BOC bytes (what a job's `voucher` field carries).
    #[getter]
    fn boc<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.boc)
    }

    fn __repr__(&self) -> String {
        format!(
            "Voucher(cap_nanotons={}, guest_key={:?}, contract={:?}, network_id={})",
            self.cap_nanotons, self.guest_key, self.contract, self.network_id
        )
    }
}
