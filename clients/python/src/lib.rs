//! `pupa._pupa`: pupa's Rust client (`pupa_host::client`) as a Python extension module.
//!
//! Everything that touches keys, seals, opens or verifies is the Rust client's code: evidence
//! verification (`client::attest`), sealing a job and opening its result, the receipt checks
//! (`client::run_job`), the TON cells (`pupa_protocol::ton`). This crate only converts between
//! Python objects and those types; the numpy conversions and the `Client` class users see are
//! in `python/pupa/__init__.py`.
//!
//! - [`policy`]: `Policy.dev / snp / tdx` (and `gpu`, which says that no GPU evidence is
//!   verified yet);
//! - [`conn`]: `Connection`: connect, fetch and verify evidence, run a sealed job;
//! - [`receipt`]: `Receipt` and `TonReceipt`, the verified receipt with readable fields;
//! - [`voucher`]: `Voucher.build`, a client-signed TON voucher.

mod conn;
mod errors;
mod policy;
mod receipt;
mod voucher;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Rounds little-endian f32 values to bf16 (round to nearest, ties to even; NaN stays NaN),
/// little-endian: the wire encoding of bf16 tensors.
#[pyfunction]
fn f32_to_bf16<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if !data.len().is_multiple_of(4) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "f32 data must be a multiple of 4 bytes",
        ));
    }
    let out: Vec<u8> = data
        .chunks_exact(4)
        .flat_map(|c| {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            half::bf16::from_f32(x).to_bits().to_le_bytes()
        })
        .collect();
    Ok(PyBytes::new(py, &out))
}

/// Expands little-endian bf16 values to little-endian f32 (exact).
#[pyfunction]
fn bf16_to_f32<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if !data.len().is_multiple_of(2) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "bf16 data must be a multiple of 2 bytes",
        ));
    }
    let out: Vec<u8> = data
        .chunks_exact(2)
        .flat_map(|c| {
            half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))
                .to_f32()
                .to_le_bytes()
        })
        .collect();
    Ok(PyBytes::new(py, &out))
}

/// The extension module.
#[pymodule]
fn _pupa(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<policy::Policy>()?;
    m.add_class::<conn::Worker>()?;
    m.add_class::<conn::Connection>()?;
    m.add_class::<receipt::Receipt>()?;
    m.add_class::<receipt::TonReceipt>()?;
    m.add_class::<voucher::Voucher>()?;
    m.add_function(wrap_pyfunction!(f32_to_bf16, m)?)?;
    m.add_function(wrap_pyfunction!(bf16_to_f32, m)?)?;
    m.add_function(wrap_pyfunction!(voucher::voucher_public_key, m)?)?;
    m.add("TESTNET_ID", pupa_protocol::ton::TESTNET_ID)?;
    m.add("MAINNET_ID", pupa_protocol::ton::MAINNET_ID)?;
    m.add("DEFAULT_TIMEOUT_S", conn::DEFAULT_TIMEOUT_S)?;
    Ok(())
}
