//! The client library behind `pupa-client`: fetch and verify a worker's evidence, seal a job to
//! it, submit, open the sealed result, verify the receipt, check the numbers.
//!
//! ```text
//! let mut c = Connection::connect("127.0.0.1:7100", None, Duration::from_secs(30))?;
//! let w = fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev())?;
//! let job = JobSpec::from_json(text)?.build()?;
//! let out = run_job(&mut c, &w, job.job)?;           // result opened, receipt verified
//! let check = job.check(&out.result)?;                 // against the f64 reference
//! ```
//!
//! - [`attest`]: the evidence policy and the verification of dev, SEV-SNP and TDX evidence;
//! - [`conn`]: framed TCP/TLS connection;
//! - [`jobspec`]: the JSON job description, seeded tensors, the f64 reference check;
//! - [`bench`]: the sealed-job overhead and throughput benchmark;
//! - [`report`]: a verified receipt as text lines and JSON (hex, base64 BOC, TON amounts).

pub mod attest;
pub mod bench;
pub mod conn;
pub mod jobspec;
pub mod report;

use std::time::{Duration, Instant};

use pupa_measurements::verify::{Verdict, VerifyError};
use pupa_protocol::evidence::EvidenceError;
use pupa_protocol::frame::{FrameError, Kind};
use pupa_protocol::job::{Job, JobResult};
use pupa_protocol::msg::{
    ErrorReply, EvidenceRequest, Hello, Message, MsgError, OpenError, ReceiptReply, SealedJob,
};
use pupa_protocol::receipt::{job_hash, ReceiptError};
use pupa_protocol::seal::{Aead, KeyPair};
use pupa_protocol::ton;
use rand::RngCore;

pub use attest::{verify_evidence, EvidencePolicy};
pub use conn::{Connection, TlsClient};
pub use jobspec::{BuiltJob, JobSpec, JobSpecError, RefCheck};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The worker could not be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// A socket error.
    #[error("I/O: {0}")]
    Io(std::io::Error),
    /// TLS setup or handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// No reply within the timeout.
    #[error("no reply from the worker within the timeout")]
    Timeout,
    /// The worker closed the connection.
    #[error("the worker closed the connection")]
    Closed,
    /// The worker's byte stream is not valid framing.
    #[error("bad framing from the worker: {0}")]
    Frame(FrameError),
    /// A message could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(MsgError),
    /// A frame body does not decode.
    #[error("bad message from the worker: {0}")]
    Decode(MsgError),
    /// The worker answered with an error.
    #[error("worker error {:?}: {}", .0.code, .0.detail)]
    Worker(ErrorReply),
    /// A message of a kind that does not answer the request.
    #[error("unexpected {got:?} frame while waiting for {want}")]
    Unexpected {
        /// The kind received.
        got: Kind,
        /// What was awaited.
        want: &'static str,
    },
    /// Development evidence offered but not allowed.
    #[error("the worker offers INSECURE development evidence (no TEE); refusing (pass --allow-insecure-dev to accept it for testing)")]
    InsecureDevRefused,
    /// SNP / TDX / dev evidence failed a check of the policy (the first failed check; the
    /// whole verdict where there is one).
    #[error("{tee} evidence rejected: check \"{check}\" failed: {reason}")]
    EvidenceRejected {
        /// `"SEV-SNP"`, `"TDX"` or `"insecure-dev"`.
        tee: &'static str,
        /// The name of the first failed check (e.g. `"REPORT_DATA"`, `"measurement"`).
        check: String,
        /// Why it failed.
        reason: String,
        /// Every check, passed or not.
        verdict: Option<Box<Verdict>>,
    },
    /// The evidence cannot be verified at all: malformed report or quote, unusable VCEK or
    /// collateral, missing collateral.
    #[error("evidence cannot be verified: {0}")]
    Unverifiable(VerifyError),
    /// The evidence policy is unusable (policy file, manifest, flags).
    #[error("evidence policy: {0}")]
    Policy(String),
    /// The evidence does not verify.
    #[error("evidence does not verify: {0}")]
    Evidence(#[from] EvidenceError),
    /// Fresh evidence over another nonce.
    #[error("evidence answers another nonce than ours (replayed or stale evidence)")]
    NonceMismatch,
    /// The sealed result does not open.
    #[error("sealed result does not open: {0}")]
    Open(#[from] OpenError),
    /// Sealing the job failed.
    #[error("cannot seal the job: {0}")]
    Seal(MsgError),
    /// The result does not answer our job.
    #[error("result does not match the job: {0}")]
    ResultMismatch(&'static str),
    /// The receipt's signature or key is wrong.
    #[error("receipt does not verify: {0}")]
    Receipt(#[from] ReceiptError),
    /// The receipt is validly signed but states the wrong thing.
    #[error("receipt does not match the job: {0}")]
    ReceiptMismatch(&'static str),
    /// The job description is invalid.
    #[error(transparent)]
    Spec(#[from] JobSpecError),
    /// The TON receipt does not parse or verify.
    #[error("TON receipt: {0}")]
    TonReceipt(String),
}

/// A worker whose evidence verified: the keys to seal to and to expect on receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedWorker {
    /// X25519 key jobs are sealed to.
    pub hpke_pk: [u8; 32],
    /// Ed25519 key that signs receipts.
    pub receipt_pk: [u8; 32],
    /// What vouched for the keys.
    pub tee: &'static str,
    /// The image hash the evidence names (development evidence).
    pub image_sha384: Option<[u8; 48]>,
    /// The verified measurement: dev image SHA-384, SNP MEASUREMENT or TDX MRTD.
    pub measurement: Option<[u8; 48]>,
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Asks for fresh evidence over a random nonce and verifies it.
pub fn fetch_and_verify(
    c: &mut Connection,
    policy: &EvidencePolicy,
) -> Result<VerifiedWorker, ClientError> {
    let nonce = random32();
    c.send(&Message::EvidenceRequest(EvidenceRequest { nonce }))?;
    match c.recv()? {
        Message::Evidence(ev) => verify_evidence(&ev, policy, &nonce),
        Message::Error(e) => Err(ClientError::Worker(e)),
        m => Err(ClientError::Unexpected {
            got: m.kind(),
            want: "Evidence",
        }),
    }
}

/// Asks for the boot evidence (nonce all zero; cheaper, but not fresh) and verifies it.
pub fn fetch_boot_evidence(
    c: &mut Connection,
    policy: &EvidencePolicy,
) -> Result<VerifiedWorker, ClientError> {
    c.send(&Message::Hello(Hello {}))?;
    match c.recv()? {
        Message::Evidence(ev) => verify_evidence(&ev, policy, &[0; 32]),
        Message::Error(e) => Err(ClientError::Worker(e)),
        m => Err(ClientError::Unexpected {
            got: m.kind(),
            want: "Evidence",
        }),
    }
}

/// Where the time of one job went, as the client saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Sealing the job.
    pub seal: Duration,
    /// From the first byte sent to the receipt received.
    pub round_trip: Duration,
    /// Opening the result and verifying the receipt.
    pub open_verify: Duration,
}

/// A finished job: the opened result, the verified receipt, timings.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The opened result.
    pub result: JobResult,
    /// The verified receipts.
    pub receipt: ReceiptReply,
    /// The `job_hash` of the sealed job (as the receipt names it).
    pub job_hash: [u8; 32],
    /// Bytes of the sealed job frame.
    pub sealed_bytes: usize,
    /// Timings.
    pub timing: Timing,
}

/// The next job counter of this process: the Unix clock in nanoseconds, kept strictly
/// increasing (the guest refuses a counter at or below the last one it accepted from a reply
/// key, and a counter at or below its floor from a key it does not remember: see
/// `pupa_protocol::job::Job::client_seq`).
pub fn next_client_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev.saturating_add(1));
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// Seals `job` to `worker` with a fresh reply key pair (overwriting `job.reply_key`), submits
/// it, opens the result and verifies the receipt: signature under the evidence's receipt key,
/// our reply key, the sealed job's hash, the units of the result. A worker error comes back as
/// [`ClientError::Worker`].
pub fn run_job(
    c: &mut Connection,
    worker: &VerifiedWorker,
    mut job: Job,
) -> Result<JobOutcome, ClientError> {
    let t0 = Instant::now();
    let client = KeyPair::derive(&random32());
    job.reply_key = client.pk;
    job.client_seq = next_client_seq();
    let aead = job.reply_aead;
    let sealed =
        SealedJob::seal(&job, &worker.hpke_pk, aead, &random32()).map_err(ClientError::Seal)?;
    let hash = job_hash(&sealed.enc, &sealed.ciphertext);
    let enc = sealed.enc;
    let frame = Message::SealedJob(sealed)
        .to_frame()
        .map_err(ClientError::Encode)?;
    let t1 = Instant::now();
    c.send_raw(&frame)?;
    let sealed_result = match c.recv()? {
        Message::SealedResult(r) => r,
        Message::Error(e) => return Err(ClientError::Worker(e)),
        m => {
            return Err(ClientError::Unexpected {
                got: m.kind(),
                want: "SealedResult",
            })
        }
    };
    let receipt = match c.recv()? {
        Message::Receipt(r) => r,
        Message::Error(e) => return Err(ClientError::Worker(e)),
        m => {
            return Err(ClientError::Unexpected {
                got: m.kind(),
                want: "Receipt",
            })
        }
    };
    let t2 = Instant::now();
    if sealed_result.job_enc != enc {
        return Err(ClientError::ResultMismatch(
            "sealed result answers another job",
        ));
    }
    let result = sealed_result.open(&client, &worker.hpke_pk, &enc)?;
    if result.job_id != job.job_id {
        return Err(ClientError::ResultMismatch("job id differs"));
    }
    let st = &receipt.statement;
    st.verify(&worker.receipt_pk)?;
    if st.receipt.client_key != client.pk {
        return Err(ClientError::ReceiptMismatch("names another client key"));
    }
    if st.receipt.job_hash != hash {
        return Err(ClientError::ReceiptMismatch("names another sealed job"));
    }
    if st.receipt.units != result.units {
        return Err(ClientError::ReceiptMismatch(
            "units differ from the result's",
        ));
    }
    if let Some(boc) = &receipt.ton {
        verify_ton_receipt(boc, worker, &hash)?;
    }
    let t3 = Instant::now();
    Ok(JobOutcome {
        result,
        receipt,
        job_hash: hash,
        sealed_bytes: frame.len(),
        timing: Timing {
            seal: t1 - t0,
            round_trip: t2 - t1,
            open_verify: t3 - t2,
        },
    })
}

/// Checks the TON `Signed PupaReceipt`: parses, signature valid, our guest key, this job.
fn verify_ton_receipt(
    boc: &[u8],
    worker: &VerifiedWorker,
    hash: &[u8; 32],
) -> Result<(), ClientError> {
    let cell = ton::from_boc_single(boc).map_err(|e| ClientError::TonReceipt(e.to_string()))?;
    let sr =
        ton::SignedReceipt::from_cell(&cell).map_err(|e| ClientError::TonReceipt(e.to_string()))?;
    sr.verify()
        .map_err(|e| ClientError::TonReceipt(e.to_string()))?;
    if sr.receipt.guest_key != worker.receipt_pk {
        return Err(ClientError::TonReceipt(
            "signed by another guest key".into(),
        ));
    }
    if &sr.receipt.last_job != hash {
        return Err(ClientError::TonReceipt("names another job".into()));
    }
    Ok(())
}

/// Default AEAD for jobs and results.
pub const DEFAULT_AEAD: Aead = Aead::ChaCha20Poly1305;
