//! Messages: the postcard body of each frame kind, and sealing/opening of jobs and results.
//!
//! | kind | direction | body |
//! |---|---|---|
//! | `Hello` | client → guest | [`Hello`] (empty): reply is the boot [`Evidence`] |
//! | `EvidenceRequest` | client → guest | [`EvidenceRequest`]: reply is fresh [`Evidence`] over the nonce |
//! | `Evidence` | guest → client | [`Evidence`] |
//! | `SealedJob` | client → guest | [`SealedJob`]: replies are `SealedResult` then `Receipt`, or `Error` |
//! | `SealedResult` | guest → client | [`SealedResult`] |
//! | `Receipt` | guest → client | [`ReceiptReply`] (the statement; with a voucher, the TON receipt and voucher in the clear: a payout) |
//! | `Error` | guest → client | [`ErrorReply`] |
//!
//! A body must be exactly one postcard value: trailing bytes are an error. Postcard cannot
//! allocate beyond the input it is given, and the frame limits bound that input.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::evidence::Evidence;
use crate::frame::{encode_frame, Frame, FrameError, Kind};
use crate::job::{Job, JobResult};
use crate::receipt::SignedReceipt;
use crate::seal::{self, Aead, SealError, KEY_LEN};

/// Most bytes of an error's detail text.
pub const MAX_DETAIL: usize = 512;

/// Asks for the boot evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {}

/// Asks for fresh evidence over the client's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRequest {
    /// Client-chosen, fresh.
    pub nonce: [u8; 32],
}

/// A job sealed to the guest's HPKE key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedJob {
    /// The guest HPKE key the job is sealed to (also bound through `info`); lets the guest
    /// tell "sealed to another key" apart from "tampered".
    pub recipient: [u8; KEY_LEN],
    /// AEAD used.
    pub aead: Aead,
    /// HPKE encapsulated key.
    pub enc: [u8; KEY_LEN],
    /// HPKE ciphertext of the postcard-encoded [`Job`].
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// A result sealed to the client's reply key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedResult {
    /// The answered job's `enc` (also bound through the AAD).
    pub job_enc: [u8; KEY_LEN],
    /// AEAD used.
    pub aead: Aead,
    /// HPKE encapsulated key.
    pub enc: [u8; KEY_LEN],
    /// HPKE ciphertext of the postcard-encoded [`JobResult`].
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// What went wrong, as a code clients can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Frame with an unsupported protocol version (connection closes).
    UnsupportedVersion,
    /// Frame of an unknown kind (connection closes).
    UnknownKind,
    /// Frame longer than its kind allows (connection closes).
    FrameTooLarge,
    /// Stream ended or stalled inside a frame (connection closes).
    TruncatedFrame,
    /// Body is not a valid message of its kind.
    MalformedMessage,
    /// A message kind the guest does not accept.
    UnexpectedMessage,
    /// The job is sealed to a different guest key.
    WrongRecipient,
    /// The sealed job does not authenticate (tampered, or bad `info`/AAD binding).
    OpenFailed,
    /// This sealed job was already run.
    Replay,
    /// The job's shape, tensors or sizes are invalid.
    InvalidJob,
    /// The job's voucher is malformed, not signed by its client, names another guest, or
    /// does not cover the job's price (or the guest requires one and there is none).
    VoucherRefused,
    /// The guest failed internally (entropy, TEE) — retry later.
    Internal,
    /// The guest has no free connection slot or memory for this request now: retry later.
    Busy,
    /// The job did not finish within the guest's per-job compute deadline (its units are
    /// within the caps, but the guest is slower than they assume); it was not billed.
    DeadlineExceeded,
}

/// The receipts for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptReply {
    /// The guest's signed statement of this job's work, naming the client's reply key.
    pub statement: SignedReceipt,
    /// When the job carried a voucher: the BOC of the TON `Signed PupaReceipt` cell
    /// ([`crate::ton::SignedReceipt`]) with the running totals for that voucher — the payable one.
    pub ton: Option<serde_bytes::ByteBuf>,
    /// When the job carried a voucher: the BOC of the client's `Signed PupaVoucher` cell
    /// ([`crate::ton::SignedVoucher`]) that covered this job, as the guest checked it (one
    /// root, re-encoded canonically). Present exactly when `ton` is. With `ton` it is all a
    /// payout needs ([`ReceiptReply::payout`]); both are signed and neither is secret, so the
    /// host's relay journals them (the voucher otherwise travels only inside the sealed job).
    pub ton_voucher: Option<serde_bytes::ByteBuf>,
}

/// Why a [`ReceiptReply`]'s TON parts do not make a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayoutPartsError {
    /// A TON receipt without a voucher, or a voucher without a TON receipt.
    #[error("the TON receipt and the voucher must come together")]
    Unpaired,
    /// The TON receipt BOC does not parse as a `Signed PupaReceipt`.
    #[error("TON receipt: {0}")]
    Receipt(crate::ton::TonError),
    /// The voucher BOC does not parse as a `Signed PupaVoucher`.
    #[error("voucher: {0}")]
    Voucher(crate::ton::TonError),
}

impl ReceiptReply {
    /// The payout claim (`payout#70757061`, query id = the receipt's `seq`) made of the TON
    /// receipt and the voucher; `Ok(None)` when the job carried no voucher. Parses only: the
    /// checks are `Payout::check`'s (and the contract's).
    pub fn payout(&self) -> Result<Option<crate::ton::Payout>, PayoutPartsError> {
        use crate::ton::{from_boc_single, Payout, SignedReceipt, SignedVoucher};
        let (r, v) = match (&self.ton, &self.ton_voucher) {
            (None, None) => return Ok(None),
            (Some(r), Some(v)) => (r, v),
            _ => return Err(PayoutPartsError::Unpaired),
        };
        let receipt = from_boc_single(r)
            .and_then(|c| SignedReceipt::from_cell(&c))
            .map_err(PayoutPartsError::Receipt)?;
        let voucher = from_boc_single(v)
            .and_then(|c| SignedVoucher::from_cell(&c))
            .map_err(PayoutPartsError::Voucher)?;
        Ok(Some(Payout {
            query_id: receipt.receipt.seq,
            receipt,
            voucher,
        }))
    }
}

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The code.
    pub code: ErrorCode,
    /// The job concerned, once known.
    pub job_id: Option<[u8; 16]>,
    /// A human-readable reason (at most [`MAX_DETAIL`] bytes).
    pub detail: String,
}

impl ErrorReply {
    /// An error reply, its detail cut to [`MAX_DETAIL`] bytes at a char boundary.
    pub fn new(code: ErrorCode, job_id: Option<[u8; 16]>, detail: &str) -> Self {
        let mut end = detail.len().min(MAX_DETAIL);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        ErrorReply {
            code,
            job_id,
            detail: detail[..end].into(),
        }
    }
}

/// Any message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`EvidenceRequest`].
    EvidenceRequest(EvidenceRequest),
    /// See [`Evidence`].
    Evidence(Evidence),
    /// See [`SealedJob`].
    SealedJob(SealedJob),
    /// See [`SealedResult`].
    SealedResult(SealedResult),
    /// See [`ReceiptReply`].
    Receipt(ReceiptReply),
    /// See [`ErrorReply`].
    Error(ErrorReply),
}

/// Why a message cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The body is not a postcard value of the kind's type.
    #[error("malformed {kind:?} body: {reason}")]
    Malformed {
        /// The frame kind.
        kind: Kind,
        /// Postcard's reason.
        reason: postcard::Error,
    },
    /// The body has bytes after the value.
    #[error("{kind:?} body has {extra} trailing bytes")]
    TrailingBytes {
        /// The frame kind.
        kind: Kind,
        /// Bytes left over.
        extra: usize,
    },
    /// The body decodes, but is not the message's one canonical encoding (e.g. an overlong
    /// varint): refused, so that every message has exactly one byte form.
    #[error("{kind:?} body is not canonically encoded (e.g. an overlong varint)")]
    NonCanonical {
        /// The frame kind.
        kind: Kind,
    },
    /// The encoded message does not fit its frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Postcard could not encode the value.
    #[error("encoding failed: {0}")]
    Encode(postcard::Error),
    /// HPKE sealing failed (e.g. the recipient key is not a valid X25519 key).
    #[error(transparent)]
    Seal(SealError),
}

fn decode<'a, T: Deserialize<'a> + Serialize>(kind: Kind, body: &'a [u8]) -> Result<T, MsgError> {
    let (v, rest) =
        postcard::take_from_bytes(body).map_err(|reason| MsgError::Malformed { kind, reason })?;
    if !rest.is_empty() {
        return Err(MsgError::TrailingBytes {
            kind,
            extra: rest.len(),
        });
    }
    if !canonical::is_canonical(&v, body) {
        return Err(MsgError::NonCanonical { kind });
    }
    Ok(v)
}

impl Message {
    /// The frame kind that carries this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::EvidenceRequest(_) => Kind::EvidenceRequest,
            Message::Evidence(_) => Kind::Evidence,
            Message::SealedJob(_) => Kind::SealedJob,
            Message::SealedResult(_) => Kind::SealedResult,
            Message::Receipt(_) => Kind::Receipt,
            Message::Error(_) => Kind::Error,
        }
    }

    /// Encodes the body (postcard) without the frame header.
    pub fn encode_body(&self) -> Result<Vec<u8>, MsgError> {
        let r = match self {
            Message::Hello(m) => postcard::to_allocvec(m),
            Message::EvidenceRequest(m) => postcard::to_allocvec(m),
            Message::Evidence(m) => postcard::to_allocvec(m),
            Message::SealedJob(m) => postcard::to_allocvec(m),
            Message::SealedResult(m) => postcard::to_allocvec(m),
            Message::Receipt(m) => postcard::to_allocvec(m),
            Message::Error(m) => postcard::to_allocvec(m),
        };
        r.map_err(MsgError::Encode)
    }

    /// Encodes the whole frame (header and body), checking the kind's size limit.
    pub fn to_frame(&self) -> Result<Vec<u8>, MsgError> {
        Ok(encode_frame(self.kind(), &self.encode_body()?)?)
    }

    /// Decodes a frame's body as its kind's message.
    pub fn from_frame(frame: &Frame) -> Result<Message, MsgError> {
        let (k, b) = (frame.kind, frame.body.as_slice());
        Ok(match k {
            Kind::Hello => Message::Hello(decode(k, b)?),
            Kind::EvidenceRequest => Message::EvidenceRequest(decode(k, b)?),
            Kind::Evidence => Message::Evidence(decode(k, b)?),
            Kind::SealedJob => Message::SealedJob(decode(k, b)?),
            Kind::SealedResult => Message::SealedResult(decode(k, b)?),
            Kind::Receipt => Message::Receipt(decode(k, b)?),
            Kind::Error => Message::Error(decode(k, b)?),
        })
    }
}

/// Why a sealed job or result cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed to a different key than ours.
    #[error("sealed to another key")]
    WrongRecipient,
    /// HPKE failure.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The plaintext is not a valid postcard value.
    #[error("opened plaintext is malformed: {0}")]
    Malformed(postcard::Error),
    /// The plaintext has trailing bytes.
    #[error("opened plaintext has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The plaintext decodes, but is not the value's one canonical encoding.
    #[error("opened plaintext is not canonically encoded (e.g. an overlong varint)")]
    NonCanonical,
}

fn decode_plain<T: for<'a> Deserialize<'a> + Serialize>(pt: &[u8]) -> Result<T, OpenError> {
    let (v, rest) = postcard::take_from_bytes(pt).map_err(OpenError::Malformed)?;
    if !rest.is_empty() {
        return Err(OpenError::TrailingBytes(rest.len()));
    }
    if !canonical::is_canonical(&v, pt) {
        return Err(OpenError::NonCanonical);
    }
    Ok(v)
}

impl SealedJob {
    /// Seals `job` to the guest key `guest_pk` (from verified evidence). `ikm_e` must be 32
    /// fresh random bytes.
    pub fn seal(
        job: &Job,
        guest_pk: &[u8; KEY_LEN],
        aead: Aead,
        ikm_e: &[u8; 32],
    ) -> Result<SealedJob, MsgError> {
        let pt = postcard::to_allocvec(job).map_err(MsgError::Encode)?;
        let (enc, ciphertext) = seal::seal_raw(
            aead,
            guest_pk,
            &seal::job_info(guest_pk),
            &seal::job_aad(aead),
            &pt,
            ikm_e,
        )
        .map_err(MsgError::Seal)?;
        Ok(SealedJob {
            recipient: *guest_pk,
            aead,
            enc,
            ciphertext,
        })
    }

    /// Opens with the guest key pair, decrypting in place: the ciphertext buffer becomes the
    /// plaintext, so a large job is not copied (the guest's path).
    pub fn open_owned(self, guest: &seal::KeyPair) -> Result<Job, OpenError> {
        if self.recipient != guest.pk {
            return Err(OpenError::WrongRecipient);
        }
        let mut buf = self.ciphertext;
        seal::open_in_place(
            self.aead,
            &guest.sk,
            &self.enc,
            &seal::job_info(&guest.pk),
            &seal::job_aad(self.aead),
            &mut buf,
        )?;
        decode_plain(&buf)
    }

    /// Opens with the guest key pair.
    pub fn open(&self, guest: &seal::KeyPair) -> Result<Job, OpenError> {
        if self.recipient != guest.pk {
            return Err(OpenError::WrongRecipient);
        }
        let pt = seal::open_raw(
            self.aead,
            &guest.sk,
            &self.enc,
            &seal::job_info(&guest.pk),
            &seal::job_aad(self.aead),
            &self.ciphertext,
        )?;
        decode_plain(&pt)
    }
}

impl SealedResult {
    /// Seals `result` from the guest `guest_pk` to `client_pk`, answering the job `job_enc`.
    pub fn seal(
        result: &JobResult,
        guest_pk: &[u8; KEY_LEN],
        client_pk: &[u8; KEY_LEN],
        job_enc: &[u8; KEY_LEN],
        aead: Aead,
        ikm_e: &[u8; 32],
    ) -> Result<SealedResult, SealError> {
        let pt = postcard::to_allocvec(result).map_err(|_| SealError::SealFailed)?;
        let (enc, ciphertext) = seal::seal_raw(
            aead,
            client_pk,
            &seal::result_info(guest_pk, client_pk),
            &seal::result_aad(aead, job_enc),
            &pt,
            ikm_e,
        )?;
        Ok(SealedResult {
            job_enc: *job_enc,
            aead,
            enc,
            ciphertext,
        })
    }

    /// Opens with the client's key pair; `guest_pk` and `job_enc` are what the client sent to.
    pub fn open(
        &self,
        client: &seal::KeyPair,
        guest_pk: &[u8; KEY_LEN],
        job_enc: &[u8; KEY_LEN],
    ) -> Result<JobResult, OpenError> {
        let pt = seal::open_raw(
            self.aead,
            &client.sk,
            &self.enc,
            &seal::result_info(guest_pk, &client.pk),
            &seal::result_aad(self.aead, job_enc),
            &self.ciphertext,
        )?;
        decode_plain(&pt)
    }
}
