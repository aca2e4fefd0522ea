//! `Connection`: one framed connection to a worker (or its relay), its verified evidence, and
//! sealed jobs run over it. The GIL is released while the client waits on the network.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pupa_host::client::{
    fetch_and_verify, run_job, ClientError, Connection as RustConnection, TlsClient,
    VerifiedWorker, DEFAULT_AEAD,
};
use pupa_measurements::hexfmt::encode as hex;
use pupa_protocol::job::{DType, Job, JobError, Layout, Op};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand::RngCore;

use crate::errors::{self, PupaError, TransportError};
use crate::policy::Policy;
use crate::receipt::Receipt;

/// Seconds to wait for each reply by default (as `pupa-client`).
pub const DEFAULT_TIMEOUT_S: f64 = 120.0;

/// A worker whose evidence verified under the client's policy.
#[pyclass(frozen, get_all, module = "pupa")]
#[derive(Clone)]
pub struct Worker {
    /// `"insecure-dev"`, `"SEV-SNP"` or `"TDX"`.
    pub tee: String,
    /// The X25519 key jobs are sealed to (hex).
    pub hpke_pk: String,
    /// The Ed25519 key that signs receipts (hex): the `guest_key` of vouchers.
    pub receipt_pk: String,
    /// The verified measurement (hex): dev image SHA-384, SNP MEASUREMENT or TDX MRTD.
    pub measurement: Option<String>,
}

#[pymethods]
impl Worker {
    fn __repr__(&self) -> String {
        let m = self
            .measurement
            .as_ref()
            .map_or("None".into(), |m| format!("'{m}'"));
        format!(
            "Worker(tee='{}', measurement={m}, receipt_pk='{}')",
            self.tee, self.receipt_pk
        )
    }
}

impl Worker {
    fn of(w: &VerifiedWorker) -> Worker {
        Worker {
            tee: w.tee.to_string(),
            hpke_pk: hex(&w.hpke_pk),
            receipt_pk: hex(&w.receipt_pk),
            measurement: w.measurement.as_ref().map(|m| hex(m)),
        }
    }
}

struct State {
    conn: RustConnection,
    worker: VerifiedWorker,
}

/// A connection whose worker's evidence verified (`Connection.open`), ready for sealed jobs.
#[pyclass(frozen, module = "pupa")]
pub struct Connection {
    state: Mutex<Option<State>>,
    policy: Py<Policy>,
}

fn dtype(name: &str) -> PyResult<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::Bf16),
        _ => Err(PyValueError::new_err(format!(
            "dtype {name:?}: must be \"f32\", \"f16\" or \"bf16\""
        ))),
    }
}

fn op(name: &str, dims: &[u32], causal: bool) -> PyResult<Op> {
    match (name, dims) {
        ("matmul", &[m, n, k]) => Ok(Op::Matmul {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
        }),
        ("attention", &[seq_q, seq_k, heads, kv_heads, dim]) => Ok(Op::Attention {
            seq_q,
            seq_k,
            heads,
            kv_heads,
            dim,
            causal,
        }),
        _ => Err(PyValueError::new_err(format!(
            "op {name:?} with {} dims: expected matmul [m, n, k] or attention \
             [seq_q, seq_k, heads, kv_heads, dim]",
            dims.len()
        ))),
    }
}

fn invalid(e: JobError) -> PyErr {
    PyValueError::new_err(format!("invalid job: {e}"))
}

/// A job's output: dims, f32 little-endian bytes, the verified receipt.
type Output<'py> = (Vec<u32>, Bound<'py, PyBytes>, Receipt);

#[pymethods]
impl Connection {
    /// Connects to `addr` (`HOST:PORT`; TLS when `tls_ca`, a PEM file, is given), fetches
    /// fresh evidence over a random nonce and verifies it under `policy`.
    #[staticmethod]
    #[pyo3(signature = (addr, policy, timeout_s=DEFAULT_TIMEOUT_S, tls_ca=None, tls_name=None))]
    fn open(
        py: Python<'_>,
        addr: String,
        policy: Py<Policy>,
        timeout_s: f64,
        tls_ca: Option<PathBuf>,
        tls_name: Option<String>,
    ) -> PyResult<Connection> {
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(PyValueError::new_err("timeout_s must be a positive number"));
        }
        let timeout = Duration::from_secs_f64(timeout_s);
        let tls = match tls_ca {
            None => None,
            Some(ca) => {
                let host = tls_name.unwrap_or_else(|| {
                    addr.rsplit_once(':').map_or(addr.clone(), |(h, _)| {
                        h.trim_matches(['[', ']']).to_string()
                    })
                });
                Some(TlsClient::new(&ca, &host).map_err(|e| errors::to_py(py, e))?)
            }
        };
        let p = policy.get();
        let state = py
            .detach(|| {
                let mut conn = RustConnection::connect(&addr, tls.as_ref(), timeout)?;
                let worker = fetch_and_verify(&mut conn, &p.inner)?;
                p.check_tee(&worker)?;
                Ok::<_, ClientError>(State { conn, worker })
            })
            .map_err(|e| errors::to_py(py, e))?;
        Ok(Connection {
            state: Mutex::new(Some(state)),
            policy,
        })
    }

    /// The worker as last verified.
    #[getter]
    fn worker(&self) -> PyResult<Worker> {
        let g = self.lock()?;
        let s = g.as_ref().ok_or_else(closed)?;
        Ok(Worker::of(&s.worker))
    }

    /// Fetches fresh evidence (new nonce), verifies it under the policy and returns the worker;
    /// later jobs are sealed to the keys it names.
    fn evidence(&self, py: Python<'_>) -> PyResult<Worker> {
        let p = self.policy.get();
        py.detach(|| {
            let mut g = self.lock()?;
            let s = g.as_mut().ok_or_else(closed)?;
            let w = fetch_and_verify(&mut s.conn, &p.inner)
                .and_then(|w| p.check_tee(&w).map(|_| w))
                .map_err(|e| Python::attach(|py| errors::to_py(py, e)))?;
            s.worker = w;
            Ok(Worker::of(&w))
        })
    }

    /// Seals one job to the verified worker, sends it, opens the result and verifies the
    /// receipt. `dims`: matmul `[m, n, k]` or attention `[seq_q, seq_k, heads, kv_heads, dim]`;
    /// `tensors`: the inputs (A, B / Q, K, V) in the wire encoding of `dtype`, little-endian;
    /// `voucher`: the BOC of a signed TON voucher, or None.
    #[pyo3(signature = (op_name, dims, dtype_name, tensors, causal=false, voucher=None))]
    // Six arguments in Python; `self` and `py` are PyO3's.
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        op_name: &str,
        dims: Vec<u32>,
        dtype_name: &str,
        tensors: Vec<Bound<'py, PyBytes>>,
        causal: bool,
        voucher: Option<Bound<'py, PyBytes>>,
    ) -> PyResult<Output<'py>> {
        let mut job_id = [0u8; 16];
        rand::rng().fill_bytes(&mut job_id);
        let job = Job {
            job_id,
            op: op(op_name, &dims, causal)?,
            dtype: dtype(dtype_name)?,
            tensors: tensors
                .iter()
                .map(|t| serde_bytes::ByteBuf::from(t.as_bytes().to_vec()))
                .collect(),
            reply_key: [0; 32], // run_job draws a fresh reply key
            reply_aead: DEFAULT_AEAD,
            client_seq: 0, // and the next client counter
            voucher: serde_bytes::ByteBuf::from(
                voucher.map(|v| v.as_bytes().to_vec()).unwrap_or_default(),
            ),
        };
        let shape = job.validate().map_err(invalid)?;
        let want = shape.out_dims[..shape.out_rank].to_vec();
        let out = py.detach(|| {
            let mut g = self.lock()?;
            let s = g.as_mut().ok_or_else(closed)?;
            let worker = s.worker;
            run_job(&mut s.conn, &worker, job)
                .map_err(|e| Python::attach(|py| errors::to_py(py, e)))
        })?;
        if out.result.dims != want || out.result.data.len() as u64 != 4 * shape.out_elems {
            return Err(errors::VerificationError::new_err(format!(
                "result has dims {:?} and {} bytes; the job needs dims {want:?}",
                out.result.dims,
                out.result.data.len()
            )));
        }
        let receipt = Receipt::new(&out.receipt, &job_id, &out.job_hash);
        Ok((want, PyBytes::new(py, &out.result.data), receipt))
    }

    /// Closes the connection (later calls raise `TransportError`).
    fn close(&self) -> PyResult<()> {
        self.lock()?.take();
        Ok(())
    }

    /// Whether the connection is open.
    #[getter]
    fn is_open(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_some())
    }
}

fn closed() -> PyErr {
    TransportError::new_err("the connection is closed")
}

impl Connection {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Option<State>>> {
        self.state
            .lock()
            .map_err(|_| PupaError::new_err("a previous call on this connection panicked"))
    }
}
