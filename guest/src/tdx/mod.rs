//! Intel TDX guest side: the logic around TDCALL/TDVMCALL, testable on the host.
//!
//! - [`report`]: the TDREPORT_STRUCT that TDG.MR.REPORT writes (TDX Module ABI spec,
//!   "TDREPORT_STRUCT", 1024 bytes) and the shared bit that MapGPA uses;
//! - [`quote`]: the shared buffer of TDG.VP.VMCALL<GetQuote> (GHCI spec 1.5, §3.3).
//!
//! Not here yet (see the report of issue 4): the #VE handler, memory acceptance, RTMR extend
//! and the TDCALL wrappers themselves (firmware binary, platform layer; `tdx-guest` fits there).

pub mod quote;
pub mod report;
