//! Intel TDX guest side: the logic around TDCALL/TDVMCALL, testable on the host.
//!
//! - [`tdcall`]: TDCALL leaves, TDG.VP.VMCALL sub-functions, status decoding, TDG.VP.INFO;
//! - [`ve`]: the #VE handler's decode and emulation (CPUID, port I/O, MSRs, HLT);
//! - [`accept`]: TDG.MEM.PAGE.ACCEPT planning with the 2 MiB → 4 KiB fallback, MapGPA retry;
//! - [`lazy`]: accepting the TD's RAM in chunks as the heap needs it;
//! - [`rtmr`]: the boot-configuration measurement into RTMR[2] and its TCG event log;
//! - [`backend`]: [`backend::TdxTee`], the `pupa_runtime::Tee` of a TD (TDREPORT → GetQuote);
//! - [`report`]: the TDREPORT_STRUCT that TDG.MR.REPORT writes (TDX Module ABI spec,
//!   "TDREPORT_STRUCT", 1024 bytes) and the shared bit that MapGPA uses;
//! - [`quote`]: the shared buffer of TDG.VP.VMCALL<GetQuote> (GHCI spec 1.5, §3.3);
//! - [`mailbox`]: the ACPI Multiprocessor Wakeup mailbox the parked APs are started through.
//!
//! The instructions themselves are thin wrappers in the firmware (`arch/tdcall.rs`), glued
//! to this logic by `platform/tdx.rs`.

pub mod accept;
pub mod backend;
pub mod lazy;
pub mod mailbox;
pub mod quote;
pub mod report;
pub mod rtmr;
pub mod tdcall;
pub mod ve;
