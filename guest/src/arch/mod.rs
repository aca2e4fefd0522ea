//! The machine: boot stub, CPU instructions, port I/O, descriptor tables, TDX calls.
//!
//! Where the firmware's `unsafe` is, and why:
//! - **here**, and only here: every machine instruction (`asm!`, the boot stub, the IDT and
//!   trap stubs, TDCALL/VMGEXIT/PVALIDATE/RDMSR, IN/OUT, the page tables), each in a thin
//!   wrapper whose `// SAFETY:` comment says why the use is sound;
//! - in `platform/`, three kinds of use, each with its `// SAFETY:` line: drivers calling this
//!   module's `unsafe fn` device accessors (port I/O, MMIO, PCI config writes: the driver knows
//!   the device register), reads and writes of fixed guest-physical memory the TEE or the
//!   image declares (the SNP secrets, CPUID and GHCB pages, the TD HOB, the ROM, the shared
//!   DMA windows, volatile because the host may write them), and handing RAM to the heap;
//! - in the library (`pupa_guest`), only the volatile accessors of host-shared pages (the
//!   GHCB, the virtqueue rings), which the firmware hands it as raw memory.
//!
//! Everything that decides anything (parsers, checks, protocols) is safe code in the library,
//! tested on the host.

core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));

pub mod apic;
pub mod cpu;
pub mod interrupts;
pub mod io;
pub mod linux;
pub mod mmio;
pub mod paging;
pub mod pic;
pub mod smp;
pub mod snp;
pub mod tdcall;
pub mod tdx_ap;
pub mod trap;
