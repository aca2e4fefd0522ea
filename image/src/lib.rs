//! Build and inspect pupa firmware images.
//!
//! `build` compiles the guest for `guest/x86_64-pupa.json` with the pinned toolchain, turns the
//! ELF into the flat firmware volume that ends at 4 GiB, reads the SEV/TDX metadata back out of
//! the finished image with the independent parser of `pupa-measurements`, checks that every
//! byte of early memory the boot path touches is declared there (`layout`), and writes
//! `pupa.fd` and `manifest.json`.
//!
//! `payload` (`pupa-image build --payload linux --no-gpu`) writes the Linux payload beside it:
//! the pinned Debian kernel (`deb`), an initramfs (`initramfs`) with a reproducibly built
//! static pupa-worker (`worker`) and the kernel modules it needs (`modules`), the command line,
//! and their hashes and SNP launch digests in `manifest.json`.

pub mod build;
pub mod deb;
pub mod elf;
pub mod initramfs;
pub mod layout;
pub mod modules;
pub mod nvidia;
pub mod payload;
pub mod userspace;
pub mod worker;

/// ROM size of the image: a multiple of 64 KiB (QEMU's `-bios` requirement). 640 KiB since the
/// firmware loads Linux payloads (boot protocol, SNP/TDX hand-over, QEMU's ACPI table loader)
/// and runs the kernels' parallel split on every vCPU (one driver per dtype and ISA); it was
/// 512 KiB with the serial built-in runtime alone.
pub const ROM_SIZE: u64 = 0xA0000;
