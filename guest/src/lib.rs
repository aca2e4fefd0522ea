//! The pupa guest: the platform-independent half.
//!
//! Everything in this library is plain `no_std` logic that the bare-metal firmware binary
//! (`src/main.rs`, built for `x86_64-pupa.json`) drives, and that `cargo test` runs in a host
//! process: memory-map parsing (QEMU's E820 table, the TD HOB), TEE detection from CPUID/MSR
//! values, entropy health tests, clock calibration arithmetic and the boot report. The code that
//! touches the machine (port I/O, CPU tables, TEE instructions) lives in the binary's `arch` and
//! `platform` modules and is kept thin.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod banner;
pub mod clock;
pub mod entropy;
pub mod idle;
pub mod job_queue;
pub mod linux;
pub mod madt;
pub mod memmap;
pub mod pool;
pub mod snp;
pub mod tdx;
pub mod tee;
pub mod trap;
pub mod virtio_pci;
pub mod virtqueue;

/// The version printed in the boot banner and recorded in the manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// QEMU `isa-debug-exit` codes the firmware uses; QEMU exits with `(code << 1) | 1`.
pub mod exit_code {
    /// A test-only build finished its checks (the normal path powers off through ACPI, status 0).
    pub const SUCCESS: u32 = 0x10;
    /// A Rust panic.
    pub const PANIC: u32 = 0x11;
    /// An unexpected CPU exception.
    pub const EXCEPTION: u32 = 0x12;
    /// Boot could not continue (no entropy, no memory map, ...).
    pub const BOOT_FAILURE: u32 = 0x13;
}
