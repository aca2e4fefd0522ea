//! The worker: the guest's keys and state, and the reply to each complete frame.
//!
//! At boot ([`Worker::new`]) it draws 64 bytes of entropy: 32 are the HPKE `ikm` of the X25519
//! key pair (RFC 9180 §7.1.3 DeriveKeyPair), 32 the Ed25519 receipt key seed; then it asks the
//! TEE for the boot evidence over `REPORT_DATA(hpke_pk, receipt_pk, nonce = 0³²)` and caches
//! the encoded frame. Private keys never leave this struct.
//!
//! A sealed job goes: recipient check → replay check (its `enc`) → HPKE open → remember `enc`
//! → `Job::validate` → voucher check (`billing`) → kernels → seal the result to the job's reply key (fresh `ikmE`) →
//! advance that client's receipt ledger → sign the receipt. Each failure is a specific
//! [`ErrorCode`] reply; the connection stays open.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;

use ed25519_dalek::SigningKey;
use pupa_protocol::evidence::{report_data, Evidence};
use pupa_protocol::frame::Frame;
use pupa_protocol::job::JobResult;
use pupa_protocol::msg::{
    ErrorCode, ErrorReply, Message, OpenError, ReceiptReply, SealedJob, SealedResult,
};
use pupa_protocol::receipt::{job_hash, Receipt};
use pupa_protocol::seal::KeyPair;

use super::billing::Billing;
use super::compute::execute;
use super::replay::ReplaySet;
use super::{Clock, Entropy, EntropyFailure, Tee, TeeFailure};

/// Tunables of the runtime.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Sealed jobs remembered for replay refusal.
    pub replay_capacity: usize,
    /// A connection stops reading while this many reply bytes wait to be sent.
    pub max_output_backlog: usize,
    /// A connection whose unfinished frame gets no byte for this long is answered
    /// `TruncatedFrame` and closed.
    pub frame_timeout_ns: u64,
    /// A connection idle (no unfinished frame) for this long is closed.
    pub idle_timeout_ns: u64,
    /// Price of work on TON vouchers, in nanotons per 10⁶ flops.
    pub nanotons_per_mflop: u64,
    /// Refuse jobs without a voucher.
    pub require_voucher: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replay_capacity: 16 * 1024,
            max_output_backlog: 1 << 20,
            frame_timeout_ns: 30_000_000_000,
            idle_timeout_ns: 300_000_000_000,
            nanotons_per_mflop: 1,
            require_voucher: false,
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

#[derive(Debug, Clone, Copy, Default)]
struct Ledger {
    seq: u64,
    total: u64,
}

/// The guest's keys, evidence and job state, shared by all sessions.
pub struct Worker<T: Tee, E: Entropy, C: Clock> {
    tee: T,
    entropy: E,
    clock: C,
    config: Config,
    hpke: KeyPair,
    receipt_key: SigningKey,
    boot_evidence: Evidence,
    boot_frame: Vec<u8>,
    replay: ReplaySet,
    ledgers: BTreeMap<[u8; 32], Ledger>,
    billing: Billing,
    jobs_run: u64,
}

impl<T: Tee, E: Entropy, C: Clock> Worker<T, E, C> {
    /// Makes the keys and the boot evidence.
    pub fn new(tee: T, mut entropy: E, clock: C, config: Config) -> Result<Self, WorkerError> {
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
            config,
            hpke,
            receipt_key,
            boot_evidence,
            boot_frame,
            replay: ReplaySet::new(config.replay_capacity),
            ledgers: BTreeMap::new(),
            billing: Billing::default(),
            jobs_run: 0,
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

    /// Now, by the platform clock.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Jobs run to completion since boot.
    pub fn jobs_run(&self) -> u64 {
        self.jobs_run
    }

    /// Appends the reply frames for one complete frame to `out`.
    pub fn handle_frame(&mut self, frame: Frame, out: &mut Vec<u8>) {
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
            Ok(Message::SealedJob(sj)) => self.handle_job(sj, out),
            Ok(m) => push_error(
                out,
                ErrorCode::UnexpectedMessage,
                None,
                &format!("the guest does not accept {:?} frames", m.kind()),
            ),
        }
    }

    fn handle_job(&mut self, sj: SealedJob, out: &mut Vec<u8>) {
        let enc = sj.enc;
        if self.replay.contains(&enc) {
            return push_error(
                out,
                ErrorCode::Replay,
                None,
                "this sealed job was already received",
            );
        }
        let hash = job_hash(&enc, &sj.ciphertext);
        let job = match sj.open_owned(&self.hpke) {
            Ok(j) => j,
            Err(OpenError::WrongRecipient) => {
                return push_error(
                    out,
                    ErrorCode::WrongRecipient,
                    None,
                    "job is sealed to another guest key",
                )
            }
            Err(OpenError::Seal(e)) => {
                return push_error(out, ErrorCode::OpenFailed, None, &format!("{e}"))
            }
            Err(e) => {
                // Authenticated but not a job: remember it all the same, it was opened.
                self.replay.insert(enc);
                return push_error(out, ErrorCode::MalformedMessage, None, &format!("{e}"));
            }
        };
        self.replay.insert(enc);
        let id = Some(job.job_id);
        let shape = match job.validate() {
            Ok(s) => s,
            Err(e) => return push_error(out, ErrorCode::InvalidJob, id, &format!("{e}")),
        };
        let (receipt_pk, cfg) = (self.receipt_public_key(), self.config);
        let charge = match self.billing.check(
            &job.voucher,
            &receipt_pk,
            shape.flops,
            cfg.nanotons_per_mflop,
            cfg.require_voucher,
        ) {
            Ok(c) => c,
            Err(e) => return push_error(out, ErrorCode::VoucherRefused, id, &format!("{e}")),
        };
        let mut job = job;
        let values = match execute(&mut job, &shape) {
            Ok(v) => v,
            Err(e) => return push_error(out, ErrorCode::InvalidJob, id, &format!("{e}")),
        };
        let mut data = Vec::with_capacity(values.len() * 4);
        for v in &values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        drop(values);
        let result = JobResult {
            job_id: job.job_id,
            dims: shape.out_dims[..shape.out_rank].to_vec(),
            data: pupa_protocol::serde_bytes::ByteBuf::from(data),
            units: shape.flops,
        };
        let mut ikm = [0u8; 32];
        if let Err(e) = self.entropy.fill(&mut ikm) {
            return push_error(out, ErrorCode::Internal, id, &format!("{e}"));
        }
        let sealed = match SealedResult::seal(
            &result,
            &self.hpke.pk,
            &job.reply_key,
            &enc,
            job.reply_aead,
            &ikm,
        ) {
            Ok(s) => s,
            Err(e) => {
                return push_error(out, ErrorCode::InvalidJob, id, &format!("reply key: {e}"))
            }
        };
        let result_frame = match Message::SealedResult(sealed).to_frame() {
            Ok(f) => f,
            Err(e) => return push_error(out, ErrorCode::Internal, id, &format!("result: {e}")),
        };
        let ton = match &charge {
            Some(c) => match self.billing.commit(c, &hash, &self.receipt_key) {
                Ok(boc) => Some(pupa_protocol::serde_bytes::ByteBuf::from(boc)),
                Err(e) => return push_error(out, ErrorCode::Internal, id, &format!("{e}")),
            },
            None => None,
        };
        let guest_key = self.receipt_public_key();
        let ledger = self.ledgers.entry(job.reply_key).or_default();
        ledger.seq = ledger.seq.saturating_add(1);
        ledger.total = ledger.total.saturating_add(shape.flops);
        let receipt = Receipt {
            guest_key,
            client_key: job.reply_key,
            job_hash: hash,
            seq: ledger.seq,
            units: shape.flops,
            total_units: ledger.total,
        }
        .sign(&self.receipt_key);
        out.extend_from_slice(&result_frame);
        match Message::Receipt(ReceiptReply {
            statement: receipt,
            ton,
        })
        .to_frame()
        {
            Ok(f) => out.extend_from_slice(&f),
            Err(e) => push_error(out, ErrorCode::Internal, id, &format!("receipt: {e}")),
        }
        self.jobs_run += 1;
    }
}

fn evidence_for<T: Tee>(
    tee: &mut T,
    hpke_pk: &[u8; 32],
    receipt_key: &SigningKey,
    nonce: &[u8; 32],
) -> Result<Evidence, TeeFailure> {
    let receipt_pk = receipt_key.verifying_key().to_bytes();
    let tee = tee.evidence(&report_data(hpke_pk, &receipt_pk, nonce))?;
    Ok(Evidence {
        hpke_pk: *hpke_pk,
        receipt_pk,
        nonce: *nonce,
        tee,
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
