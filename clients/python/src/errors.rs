//! The exceptions of `pupa`, and the mapping of the Rust client's errors onto them.
//!
//! `PupaError` is the base of all of them:
//! - `EvidenceError`: the worker's evidence was refused (policy, signature, measurement,
//!   nonce, unverifiable report) — nothing was sealed to it;
//! - `WorkerError`: the worker answered with an error message; `.code` is the protocol's
//!   `ErrorCode` name (`"InvalidJob"`, `"VoucherRefused"`, `"Busy"`, ...), `.job_id` the job's
//!   id (hex) when the worker named it, `.detail` its reason;
//! - `VerificationError`: a result or receipt that does not open or does not verify;
//! - `TransportError`: connecting, TLS, framing, timeouts, a closed connection.
//!
//! Invalid job shapes and arguments raise `ValueError` before anything is sent.

use pupa_host::client::ClientError;
use pupa_measurements::hexfmt::encode as hex;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(_pupa, PupaError, PyException, "Base of pupa's errors.");
create_exception!(
    _pupa,
    EvidenceError,
    PupaError,
    "The worker's evidence does not satisfy the policy (nothing was sealed to it)."
);
create_exception!(
    _pupa,
    WorkerError,
    PupaError,
    "The worker answered with an error (attributes: code, job_id, detail)."
);
create_exception!(
    _pupa,
    VerificationError,
    PupaError,
    "A sealed result or a receipt does not open or does not verify."
);
create_exception!(
    _pupa,
    TransportError,
    PupaError,
    "Connection, TLS, framing or timeout."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PupaError", py.get_type::<PupaError>())?;
    m.add("EvidenceError", py.get_type::<EvidenceError>())?;
    m.add("WorkerError", py.get_type::<WorkerError>())?;
    m.add("VerificationError", py.get_type::<VerificationError>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    Ok(())
}

/// The Python exception for a client error.
pub fn to_py(py: Python<'_>, e: ClientError) -> PyErr {
    let msg = e.to_string();
    match e {
        ClientError::Worker(reply) => {
            let err = WorkerError::new_err(msg);
            let v = err.value(py);
            // Attributes on a fresh exception instance cannot fail to be set.
            let _ = v.setattr("code", format!("{:?}", reply.code));
            let _ = v.setattr("job_id", reply.job_id.map(|j| hex(&j)));
            let _ = v.setattr("detail", reply.detail);
            err
        }
        ClientError::InsecureDevRefused
        | ClientError::EvidenceRejected { .. }
        | ClientError::Unverifiable(_)
        | ClientError::Policy(_)
        | ClientError::Evidence(_)
        | ClientError::NonceMismatch => EvidenceError::new_err(msg),
        ClientError::Open(_)
        | ClientError::ResultMismatch(_)
        | ClientError::Receipt(_)
        | ClientError::ReceiptMismatch(_)
        | ClientError::TonReceipt(_) => VerificationError::new_err(msg),
        ClientError::Spec(_) => PyValueError::new_err(msg),
        // Connect, Io, Tls, Timeout, Closed, Frame, Encode, Decode, Unexpected, Seal.
        _ => TransportError::new_err(msg),
    }
}
