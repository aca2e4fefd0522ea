//! The guest runtime: keys, evidence, sealed jobs, receipts, and the per-connection session
//! state machine — platform-independent, so the same code runs in the firmware and in a host
//! process under `cargo test`.
//!
//! The platform provides three small traits: [`Entropy`] (may fail), [`Clock`] (monotonic ns)
//! and [`Tee`] (a report over 64 bytes of REPORT_DATA; [`DevTee`] is the insecure software
//! one). A [`Worker`] holds the guest's keys and state; each TCP connection gets a [`Session`]
//! that turns received bytes into reply bytes without blocking:
//!
//! ```text
//! loop {
//!     for each connection c:
//!         if c.session.wants_read() { c.socket.recv(|buf| c.session.receive(&mut worker, buf)) }
//!         on EOF: c.session.peer_closed(&mut worker)
//!         c.session.poll(&mut worker)            // timeouts; frames held back by backpressure
//!         n = c.socket.send_slice(c.session.pending()); c.session.advance(n)
//!         if c.session.should_close() { close c }
//! }
//! ```
//!
//! A client that stalls only holds its own buffer until its frame timeout; one that sends
//! garbage gets a specific error frame and is closed; a bad job gets an error reply and the
//! connection stays usable. No input makes this code panic: decoders are bounded and
//! errors are values.
//!
//! Memory that outside input drives is reserved in one [`Budget`] (partial frames, pending
//! replies, job working memory); beyond it clients get `Busy`. Replays are refused for the
//! whole life of the keys by per-client counters ([`ClientTable`]). Every deadline is
//! absolute (see [`Session`]).
//!
//! Compute is the fourth trait, [`Compute`]: [`CpuKernels`] (pupa's CPU kernels) everywhere,
//! [`PooledKernels`] (the same, split over the firmware's vCPUs), and on Linux with a GPU the CUDA kernels (`pupa-worker --compute cuda`).
//!
//! Jobs run in `handle_frame` on the calling thread, unless the platform has somewhere else
//! to run them ([`Worker::defer_jobs_above`]): then a long job comes back from the session
//! admitted ([`Session::take_job`]), runs anywhere ([`AdmittedJob::execute`], the firmware's
//! APs) and returns ([`Session::complete_job`]) while the other connections are served. With
//! nowhere else to run, a long job delays the other connections' replies (never their
//! correctness), up to `Config::job_timeout_ns`.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod billing;
mod budget;
mod clients;
mod compute;
mod dev;
mod session;
mod worker;

pub use billing::{price, Billing, Charge, Claim, VoucherError, MAX_VOUCHER_LEDGERS};
pub use budget::{Budget, Reservation};
pub use clients::{ClientTable, Ledger, ReplayError};
pub use compute::{
    attn_shape, execute, execute_on, execute_until, Compute, ComputeError, CpuKernels,
    PooledKernels,
};
pub use dev::DevTee;
pub use pupa_kernels::{Serial, Workers};
pub use session::Session;
pub use worker::{AdmittedJob, Config, Worker, WorkerError};

use alloc::vec::Vec;

use pupa_protocol::evidence::{GpuEvidence, TeeEvidence};

/// A source of cryptographic randomness (RDSEED/RDRAND with health tests, TEE entropy).
pub trait Entropy {
    /// Fills `buf` with random bytes, or fails (the runtime then refuses the operation).
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailure>;
}

/// The entropy source could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("entropy source failed: {0}")]
pub struct EntropyFailure(pub &'static str);

/// A monotonic clock. `Sync`: a job's deadline reads it from every thread the job runs on.
pub trait Clock: Sync {
    /// Nanoseconds since an arbitrary fixed point; never decreases.
    fn now_ns(&self) -> u64;
}

/// What the TEE provides: a signed report over REPORT_DATA, and the attested GPUs' reports.
pub trait Tee {
    /// Produces the TEE evidence whose REPORT_DATA is `report_data`.
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure>;

    /// The attestation report of every GPU jobs may run on, GPU `i` over
    /// `pupa_protocol::evidence::gpu_nonce(report_data, i)`, asked for with the same
    /// `report_data` as [`Tee::evidence`] (and before it). None by default: the firmware
    /// computes on its CPUs only.
    fn gpu_evidence(&mut self, report_data: &[u8; 64]) -> Result<Vec<GpuEvidence>, TeeFailure> {
        let _ = report_data;
        Ok(Vec::new())
    }
}

/// A TEE chosen at run time (the firmware's platform picks its backend at boot).
impl<T: Tee + ?Sized> Tee for alloc::boxed::Box<T> {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure> {
        (**self).evidence(report_data)
    }
    fn gpu_evidence(&mut self, report_data: &[u8; 64]) -> Result<Vec<GpuEvidence>, TeeFailure> {
        (**self).gpu_evidence(report_data)
    }
}

/// The TEE could not produce a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("TEE report failed: {0}")]
pub struct TeeFailure(pub &'static str);
