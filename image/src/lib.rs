//! Build and inspect pupa firmware images.
//!
//! `build` compiles the guest for `guest/x86_64-pupa.json` with the pinned toolchain, turns the
//! ELF into the flat firmware volume that ends at 4 GiB, reads the SEV/TDX metadata back out of
//! the finished image with the independent parser of `pupa-measurements`, checks that every
//! byte of early memory the boot path touches is declared there (`layout`), and writes
//! `pupa.fd` and `manifest.json`.

pub mod build;
pub mod elf;
pub mod initramfs;
pub mod layout;

/// ROM size of the image: a multiple of 64 KiB (QEMU's `-bios` requirement).
pub const ROM_SIZE: u64 = 0x80000;
