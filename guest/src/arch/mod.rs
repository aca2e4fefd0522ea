//! The machine: boot stub, CPU instructions, port I/O, descriptor tables, TDX calls.
//!
//! All `unsafe` of the firmware that touches the CPU lives in this module tree, in thin
//! wrappers whose `// SAFETY:` comments say why each use is sound.

core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));

pub mod apic;
pub mod cpu;
pub mod interrupts;
pub mod io;
pub mod mmio;
pub mod paging;
pub mod pic;
pub mod snp;
pub mod tdcall;
pub mod trap;
