//! The worker: the guest's keys and state, and the reply to each complete frame.
//!
//! At boot ([`Worker::new`]) it draws 64 bytes of entropy: 32 are the HPKE `ikm` of the X25519
//! key pair (RFC 9180 §7.1.3 DeriveKeyPair), 32 the Ed25519 receipt key seed; then it asks the
//! TEE for the boot evidence over `REPORT_DATA(hpke_pk, receipt_pk, nonce = 0³²)` and caches
//! the encoded frame. Private keys never leave this struct.
//!
//! A sealed job goes: recipient check → memory for the opened job (`Busy` if the budget is
//! committed) → HPKE open → replay check (the client's counter, [`ClientTable`]) →
//! `Job::validate` → memory for its execution → voucher check (`billing`) → kernels, under
//! the job deadline → seal the result to the job's reply key (fresh `ikmE`) → advance that
//! client's receipt ledger → sign the receipt (and, with a voucher, the TON receipt, sent in
//! the clear with the voucher that covered it: what the host needs for a payout). Each
//! failure is a specific [`ErrorCode`] reply; the connection stays open.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ed25519_dalek::SigningKey;
use pupa_protocol::evidence::{report_data, Evidence};
use pupa_protocol::frame::Frame;
use pupa_protocol::job::{Job, JobResult, JobShape};
use pupa_protocol::msg::{
    ErrorCode, ErrorReply, Message, OpenError, ReceiptReply, SealedJob, SealedResult,
};
use pupa_protocol::receipt::{job_hash, Receipt, SignedReceipt};
use pupa_protocol::seal::KeyPair;
use pupa_protocol::serde_bytes::ByteBuf;

use super::billing::{Billing, Charge};
use super::budget::{Budget, Reservation};
use super::clients::ClientTable;
use super::compute::{Compute, ComputeError, CpuKernels};
use super::{Clock, Entropy, EntropyFailure, Tee, TeeFailure};

/// Tunables of the runtime.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Clients whose counters are remembered (see [`ClientTable`]).
    pub max_clients: usize,
    /// Bytes that outside input may make the guest hold: partial frames, pending replies,
    /// job working memory (see [`Budget`]).
    pub memory_budget: usize,
    /// A connection stops reading while this many reply bytes wait to be sent.
    pub max_output_backlog: usize,
    /// A frame must be complete this long after its first byte, plus its length at
    /// `min_rate_bytes_per_s`; else `TruncatedFrame` and the connection closes.
    pub frame_timeout_ns: u64,
    /// Replies must be sent this long after they were produced, plus their length at
    /// `min_rate_bytes_per_s`; else the connection is dropped.
    pub send_timeout_ns: u64,
    /// The slowest transfer rate a client may use, in bytes per second.
    pub min_rate_bytes_per_s: u64,
    /// A connection idle (no unfinished frame, nothing to send) for this long is closed.
    pub idle_timeout_ns: u64,
    /// Most time a job may compute; the kernels stop and the job is answered
    /// `DeadlineExceeded`.
    pub job_timeout_ns: u64,
    /// Price of work on TON vouchers, in nanotons per 10⁶ units (`JobShape::units`).
    pub nanotons_per_munit: u64,
    /// Refuse jobs without a voucher.
    pub require_voucher: bool,
    /// Vouchers the guest keeps running totals for (see `billing::MAX_VOUCHER_LEDGERS`).
    pub max_vouchers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_clients: 1 << 16,
            memory_budget: 256 << 20,
            max_output_backlog: 1 << 20,
            frame_timeout_ns: 10_000_000_000,
            send_timeout_ns: 30_000_000_000,
            min_rate_bytes_per_s: 1 << 20,
            idle_timeout_ns: 60_000_000_000,
            job_timeout_ns: 60_000_000_000,
            nanotons_per_munit: 1,
            require_voucher: false,
            max_vouchers: super::billing::MAX_VOUCHER_LEDGERS,
        }
    }
}

/// Why the worker could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// No entropy for the keys.
    #[error(transparent)]
    Entropy(#[from] EntropyFailure),
    /// No boot evidence.
    #[error(transparent)]
    Tee(#[from] TeeFailure),
    /// The boot evidence does not fit an evidence frame.
    #[error("boot evidence cannot be encoded: {0}")]
    Encode(pupa_protocol::msg::MsgError),
}

/// The guest's keys, evidence and job state, shared by all sessions. `K` runs the jobs
/// ([`CpuKernels`] unless made with [`Worker::with_compute`]).
pub struct Worker<T: Tee, E: Entropy, C: Clock, K: Compute = CpuKernels> {
    tee: T,
    entropy: E,
    clock: C,
    compute: K,
    config: Config,
    hpke: KeyPair,
    receipt_key: SigningKey,
    boot_evidence: Evidence,
    boot_frame: Vec<u8>,
    clients: ClientTable,
    budget: Budget,
    billing: Billing,
    jobs_run: u64,
    /// Jobs of more units than this are handed back to the platform (see
    /// [`Worker::defer_jobs_above`]); `None`: every job runs in `handle_frame`.
    defer_above: Option<u64>,
}

/// A sealed job that passed every check its kernels do not do: opened, replay-checked,
/// validated, its working memory reserved, its voucher checked. The platform runs the kernels
/// where it likes ([`AdmittedJob::execute`], e.g. on another vCPU while its network goes on)
/// and hands the job back to [`Worker::complete_job`] for the sealed result and receipts.
pub struct AdmittedJob {
    job: Job,
    shape: JobShape,
    enc: [u8; 32],
    hash: [u8; 32],
    charge: Option<Charge>,
    deadline_ns: u64,
    /// The job's working memory, held until the job is dropped.
    _exec: Reservation,
    /// What the kernels returned (None: not run yet).
    outcome: Option<Result<Vec<f32>, ComputeError>>,
}

impl core::fmt::Debug for AdmittedJob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AdmittedJob")
            .field("job_id", &self.job.job_id)
            .field("units", &self.shape.units)
            .field("ran", &self.outcome.is_some())
            .finish()
    }
}

impl AdmittedJob {
    /// The job's billed units (its size, by the cost model).
    pub fn units(&self) -> u64 {
        self.shape.units
    }

    /// Runs the kernels on `compute` until `clock` passes the job's deadline; the outcome is
    /// kept for [`Worker::complete_job`].
    pub fn execute<K: Compute>(&mut self, compute: &mut K, clock: &dyn Clock) {
        let deadline = self.deadline_ns;
        let expired = || clock.now_ns() > deadline;
        self.outcome = Some(compute.execute(&mut self.job, &self.shape, &expired));
    }
}

impl<T: Tee, E: Entropy, C: Clock> Worker<T, E, C> {
    /// Makes the keys and the boot evidence; jobs run on the CPU kernels.
    pub fn new(tee: T, entropy: E, clock: C, config: Config) -> Result<Self, WorkerError> {
        Worker::with_compute(tee, entropy, clock, config, CpuKernels)
    }
}

impl<T: Tee, E: Entropy, C: Clock, K: Compute> Worker<T, E, C, K> {
    /// Makes the keys and the boot evidence; jobs run on `compute`.
    pub fn with_compute(
        tee: T,
        mut entropy: E,
        clock: C,
        config: Config,
        compute: K,
    ) -> Result<Self, WorkerError> {
        let mut seed = [0u8; 64];
        entropy.fill(&mut seed)?;
        let (ikm, ed) = seed.split_at(32);
        let hpke = KeyPair::derive(ikm.try_into().unwrap_or(&[0; 32]));
        let receipt_key = SigningKey::from_bytes(ed.try_into().unwrap_or(&[0; 32]));
        seed.fill(0);
        let mut tee = tee;
        let boot_evidence = evidence_for(&mut tee, &hpke.pk, &receipt_key, &[0; 32])?;
        let boot_frame = Message::Evidence(boot_evidence.clone())
            .to_frame()
            .map_err(WorkerError::Encode)?;
        Ok(Worker {
            tee,
            entropy,
            clock,
            compute,
            config,
            hpke,
            receipt_key,
            boot_evidence,
            boot_frame,
            clients: ClientTable::new(config.max_clients),
            budget: Budget::new(config.memory_budget),
            billing: Billing::new(config.max_vouchers),
            jobs_run: 0,
            defer_above: None,
        })
    }

    fn make_evidence(&mut self, nonce: &[u8; 32]) -> Result<Evidence, TeeFailure> {
        evidence_for(&mut self.tee, &self.hpke.pk, &self.receipt_key, nonce)
    }

    /// The X25519 key jobs are sealed to.
    pub fn hpke_public_key(&self) -> [u8; 32] {
        self.hpke.pk
    }

    /// The Ed25519 key receipts are signed with.
    pub fn receipt_public_key(&self) -> [u8; 32] {
        self.receipt_key.verifying_key().to_bytes()
    }

    /// The evidence made at boot (nonce all zero).
    pub fn boot_evidence(&self) -> &Evidence {
        &self.boot_evidence
    }

    /// The runtime's tunables.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The memory budget shared by all sessions.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Clients whose counters are remembered.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Now, by the platform clock.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Jobs run to completion since boot.
    pub fn jobs_run(&self) -> u64 {
        self.jobs_run
    }

    /// From now on, a job of more than `units` (`JobShape::units`) is not run by
    /// [`Worker::handle_frame`] but returned to the caller, admitted, to be run elsewhere and
    /// completed with [`Worker::complete_job`]. The firmware does this when it has APs: they
    /// run the long jobs while the boot CPU keeps serving; small ones still run at once.
    pub fn defer_jobs_above(&mut self, units: u64) {
        self.defer_above = Some(units);
    }

    /// Appends the reply frames for one complete frame to `out`; or returns the frame's job,
    /// admitted, when it is to run elsewhere ([`Worker::defer_jobs_above`]): its replies
    /// come from [`Worker::complete_job`].
    pub fn handle_frame(&mut self, frame: Frame, out: &mut Vec<u8>) -> Option<AdmittedJob> {
        let msg = Message::from_frame(&frame);
        drop(frame); // a job's bytes now live in the decoded message only
        match msg {
            Err(e) => push_error(out, ErrorCode::MalformedMessage, None, &format!("{e}")),
            Ok(Message::Hello(_)) => out.extend_from_slice(&self.boot_frame),
            Ok(Message::EvidenceRequest(r)) => match self.make_evidence(&r.nonce) {
                Ok(ev) => match Message::Evidence(ev).to_frame() {
                    Ok(f) => out.extend_from_slice(&f),
                    Err(e) => push_error(out, ErrorCode::Internal, None, &format!("evidence: {e}")),
                },
                Err(e) => push_error(out, ErrorCode::Internal, None, &format!("{e}")),
            },
            Ok(Message::SealedJob(sj)) => return self.handle_job(sj, out),
            Ok(m) => push_error(
                out,
                ErrorCode::UnexpectedMessage,
                None,
                &format!("the guest does not accept {:?} frames", m.kind()),
            ),
        }
        None
    }

    fn handle_job(&mut self, sj: SealedJob, out: &mut Vec<u8>) -> Option<AdmittedJob> {
        let enc = sj.enc;
        let hash = job_hash(&enc, &sj.ciphertext);
        let job = match self.open_job(sj) {
            Ok(j) => j,
            Err((code, id, detail)) => {
                push_error(out, code, id, &detail);
                return None;
            }
        };
        let id = Some(job.job_id);
        let mut admitted = match self.admit_job(job, enc, hash) {
            Ok(a) => a,
            Err((code, detail)) => {
                push_error(out, code, id, &detail);
                return None;
            }
        };
        if self.defer_above.is_some_and(|u| admitted.units() > u) {
            return Some(admitted);
        }
        admitted.execute(&mut self.compute, &self.clock);
        self.complete_job(admitted, out);
        None
    }

    /// Appends the replies of a job [`Worker::handle_frame`] returned, once
    /// [`AdmittedJob::execute`] ran it (not run: `Internal`): the sealed result and the
    /// receipts, or the kernels' error.
    pub fn complete_job(&mut self, admitted: AdmittedJob, out: &mut Vec<u8>) {
        let id = Some(admitted.job.job_id);
        match self.finish_job(admitted) {
            Ok(frames) => out.extend_from_slice(&frames),
            Err((code, detail)) => push_error(out, code, id, &detail),
        }
    }

    /// Recipient, memory, HPKE open, replay: the job as the client sealed it.
    fn open_job(&mut self, sj: SealedJob) -> Result<Job, (ErrorCode, Option<[u8; 16]>, String)> {
        if sj.recipient != self.hpke.pk {
            let d = "job is sealed to another guest key".into();
            return Err((ErrorCode::WrongRecipient, None, d));
        }
        // Decoding copies the tensors out of the plaintext (held by the session's frame).
        let _decoded = self.reserve(sj.ciphertext.len(), "open the job")?;
        let job = match sj.open_owned(&self.hpke) {
            Ok(j) => j,
            Err(e @ OpenError::Seal(_)) => {
                return Err((ErrorCode::OpenFailed, None, format!("{e}")))
            }
            Err(e) => return Err((ErrorCode::MalformedMessage, None, format!("{e}"))),
        };
        let id = Some(job.job_id);
        // The counter is consumed whatever happens next: a refused job is not retried
        // under the same counter.
        if let Err(e) = self.clients.admit(&job.reply_key, job.client_seq) {
            return Err((ErrorCode::Replay, id, format!("{e}")));
        }
        Ok(job)
    }

    fn reserve(
        &self,
        bytes: usize,
        what: &str,
    ) -> Result<super::budget::Reservation, (ErrorCode, Option<[u8; 16]>, String)> {
        self.budget.try_reserve(bytes).ok_or_else(|| {
            let d = format!(
                "guest memory is committed to other connections: {what} needs {bytes} bytes, \
                 {} of {} in use; retry",
                self.budget.used(),
                self.budget.limit()
            );
            (ErrorCode::Busy, None, d)
        })
    }

    /// Validation, memory, voucher: the job ready for its kernels.
    fn admit_job(
        &mut self,
        job: Job,
        enc: [u8; 32],
        hash: [u8; 32],
    ) -> Result<AdmittedJob, (ErrorCode, String)> {
        let shape = job
            .validate()
            .map_err(|e| (ErrorCode::InvalidJob, format!("{e}")))?;
        let need = usize::try_from(shape.exec_bytes).unwrap_or(usize::MAX);
        if need > self.budget.limit() {
            let d = format!(
                "the job needs {need} bytes of working memory; this guest's budget is {} bytes",
                self.budget.limit()
            );
            return Err((ErrorCode::InvalidJob, d));
        }
        let _exec = self
            .reserve(need, "the job")
            .map_err(|(code, _, d)| (code, d))?;
        let (receipt_pk, cfg) = (self.receipt_public_key(), self.config);
        let charge = self
            .billing
            .check(
                &job.voucher,
                &receipt_pk,
                shape.units,
                cfg.nanotons_per_munit,
                cfg.require_voucher,
            )
            .map_err(|e| (ErrorCode::VoucherRefused, format!("{e}")))?;
        Ok(AdmittedJob {
            job,
            shape,
            enc,
            hash,
            charge,
            deadline_ns: self.now_ns().saturating_add(cfg.job_timeout_ns),
            _exec,
            outcome: None,
        })
    }

    /// Sealing and receipts of a job whose kernels ran: the reply frames.
    fn finish_job(&mut self, a: AdmittedJob) -> Result<Vec<u8>, (ErrorCode, String)> {
        let AdmittedJob {
            job,
            shape,
            enc,
            hash,
            charge,
            _exec,
            outcome,
            ..
        } = a;
        let (enc, hash) = (&enc, &hash);
        let values = outcome
            .ok_or((
                ErrorCode::Internal,
                String::from("the job's kernels never ran"),
            ))?
            .map_err(|e| (compute_error_code(&e), format!("{e}")))?;
        let data = le_bytes(&values)?;
        drop(values);
        let result = JobResult {
            job_id: job.job_id,
            dims: shape.out_dims[..shape.out_rank].to_vec(),
            data: ByteBuf::from(data),
            units: shape.units,
        };
        let mut ikm = [0u8; 32];
        self.entropy
            .fill(&mut ikm)
            .map_err(|e| (ErrorCode::Internal, format!("{e}")))?;
        let sealed = SealedResult::seal(
            &result,
            &self.hpke.pk,
            &job.reply_key,
            enc,
            job.reply_aead,
            &ikm,
        )
        .map_err(|e| (ErrorCode::InvalidJob, format!("reply key: {e}")))?;
        drop(result);
        let mut frames = Message::SealedResult(sealed)
            .to_frame()
            .map_err(|e| (ErrorCode::Internal, format!("result: {e}")))?;
        let claim = match &charge {
            Some(c) => Some(
                self.billing
                    .commit(c, hash, &self.receipt_key)
                    .map_err(|e| (ErrorCode::Internal, format!("{e}")))?,
            ),
            None => None,
        };
        let (ton, ton_voucher) = match claim {
            Some(c) => (
                Some(ByteBuf::from(c.receipt)),
                Some(ByteBuf::from(c.voucher)),
            ),
            None => (None, None),
        };
        let receipt = self.sign_receipt(&job.reply_key, hash, shape.units);
        let reply = Message::Receipt(ReceiptReply {
            statement: receipt,
            ton,
            ton_voucher,
        })
        .to_frame()
        .map_err(|e| (ErrorCode::Internal, format!("receipt: {e}")))?;
        frames.extend_from_slice(&reply);
        self.jobs_run += 1;
        Ok(frames)
    }

    fn sign_receipt(&mut self, client: &[u8; 32], hash: &[u8; 32], units: u64) -> SignedReceipt {
        let guest_key = self.receipt_public_key();
        let (seq, total_units) = match self.clients.ledger_mut(client) {
            Some(l) => {
                l.receipts = l.receipts.saturating_add(1);
                l.total_units = l.total_units.saturating_add(units);
                (l.receipts, l.total_units)
            }
            None => (1, units), // not reachable: the client was admitted for this job
        };
        Receipt {
            guest_key,
            client_key: *client,
            job_hash: *hash,
            seq,
            units,
            total_units,
        }
        .sign(&self.receipt_key)
    }
}

/// The f32 results as little-endian bytes (the allocation is fallible: its size comes from
/// the job).
fn le_bytes(values: &[f32]) -> Result<Vec<u8>, (ErrorCode, String)> {
    let mut data = Vec::new();
    data.try_reserve_exact(values.len().saturating_mul(4))
        .map_err(|_| {
            (
                ErrorCode::Busy,
                format!("out of memory for {} result values; retry", values.len()),
            )
        })?;
    for v in values {
        data.extend_from_slice(&v.to_le_bytes());
    }
    Ok(data)
}

/// The reply code for a job the kernels could not finish.
fn compute_error_code(e: &ComputeError) -> ErrorCode {
    match e {
        ComputeError::Deadline => ErrorCode::DeadlineExceeded,
        // Memory ran short although the budget admitted the job (fragmentation): retryable.
        ComputeError::OutOfMemory { .. } => ErrorCode::Busy,
        _ => ErrorCode::InvalidJob,
    }
}

fn evidence_for<T: Tee>(
    tee: &mut T,
    hpke_pk: &[u8; 32],
    receipt_key: &SigningKey,
    nonce: &[u8; 32],
) -> Result<Evidence, TeeFailure> {
    let receipt_pk = receipt_key.verifying_key().to_bytes();
    let binding = report_data(hpke_pk, &receipt_pk, nonce);
    let gpus = tee.gpu_evidence(&binding)?;
    let tee = tee.evidence(&binding)?;
    Ok(Evidence {
        hpke_pk: *hpke_pk,
        receipt_pk,
        nonce: *nonce,
        tee,
        gpus,
    })
}

/// Appends an error frame (always encodable: the detail is capped far below the frame limit).
pub(crate) fn push_error(
    out: &mut Vec<u8>,
    code: ErrorCode,
    job_id: Option<[u8; 16]>,
    detail: &str,
) {
    if let Ok(f) = Message::Error(ErrorReply::new(code, job_id, detail)).to_frame() {
        out.extend_from_slice(&f);
    }
}
