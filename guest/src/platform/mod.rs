//! The VM platform the firmware runs on: one [`Platform`] implementation per TEE, chosen once
//! at boot by [`select`], and the devices every platform shares.
//!
//! `rust_main` (main.rs) is one straight sequence of [`Platform`] hooks; everything that
//! differs between a plain VM, SEV-SNP and TDX is inside [`plain::Plain`], [`snp::Snp`] and
//! [`tdx::Tdx`]. The hooks, in the order they run:
//!
//! 1. [`Platform::init`]: before the first port I/O (the serial console);
//! 2. [`Platform::memory_map`], then [`Platform::accept_ram`]: once the early heap is claimed;
//! 3. [`Platform::dma_pool`], then [`Platform::evidence`]: once the heap holds all its RAM;
//! 4. [`Platform::interrupts`] and, for the rest of the guest's life, [`Platform::halt`] (the
//!    idle loop), [`Platform::port_read`]/[`Platform::port_write`] (every driver's port I/O,
//!    through `arch::io`) and [`Platform::mmio`] (device registers, through `arch::mmio`).
//!
//! With a Linux payload (QEMU `-kernel`), step 3 is replaced by [`Platform::linux_handover`]
//! (`linux_boot.rs`) and the kernel is entered. The application processors (SMP) will be hooks
//! here too, one implementation per TEE.

use alloc::boxed::Box;
use alloc::vec::Vec;

use pupa_guest::linux::PayloadDigests;
use pupa_guest::memmap::Region;
use pupa_guest::tee::{SevWithoutSnp, TeeKind};
use spin::Once;

use virtio_net::DmaPool;

pub mod exit;
pub mod fw_cfg;
pub mod heap;
pub mod idle;
pub mod layout;
pub mod linux_acpi;
pub mod linux_boot;
pub mod net;
pub mod pci;
pub mod pit;
pub mod plain;
pub mod serial;
pub mod smp;
pub mod snp;
pub mod snp_ap;
pub mod snp_ghcb;
pub mod snp_linux;
pub mod tdx;
pub mod tdx_linux;
pub mod tdx_smp;
pub mod virtio_net;
pub mod virtio_pci;

/// Why a platform hook could not do its part of the boot (printed as the boot failure).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// TDG.VP.INFO or the SNP setup failed.
    #[error("{0}")]
    Init(alloc::string::String),
    /// The memory map is missing or malformed.
    #[error("memory map ({source_name}): {why}")]
    MemoryMap {
        /// Where the map comes from.
        source_name: &'static str,
        /// What is wrong with it.
        why: alloc::string::String,
    },
    /// RAM could not be validated/accepted.
    #[error("memory acceptance: {0}")]
    Accept(alloc::string::String),
    /// The shared (device-visible) window could not be set up.
    #[error("shared window: {0}")]
    Dma(alloc::string::String),
    /// The evidence backend could not be set up.
    #[error("evidence backend: {0}")]
    Evidence(alloc::string::String),
    /// The Linux payload cannot be handed over under this TEE.
    #[error("{0}")]
    Linux(alloc::string::String),
}

/// What the boot stub (`arch/boot.s`) hands to `rust_main`.
#[derive(Clone, Copy, Debug)]
pub struct BootArgs {
    /// The C-bit as a mask of the page-table entries' high dword (0 unless SNP).
    pub c_bit_hi: u32,
}

/// RAM made usable for the heap by [`Platform::accept_ram`].
pub struct Ram {
    /// Disjoint [start, end) ranges, identity-mapped, private and ready to use.
    pub ranges: Vec<(u64, u64)>,
    /// Bytes the TEE validated/accepted for them (0 on a plain VM).
    pub accepted_bytes: u64,
}

/// What a TEE adds to the hand-over to a Linux payload ([`Platform::linux_handover`]).
pub struct Handover {
    /// The memory map as Linux gets it, when the hook changed it (TDX: every unaccepted range
    /// accepted and relabelled RAM); `None`: the map as read.
    pub map: Option<Vec<Region>>,
    /// The RAM Linux may use: `None` is all RAM of the memory map (plain VM); otherwise RAM
    /// outside these ranges is reported reserved (SNP: what the firmware has not validated).
    pub usable: Option<Vec<(u64, u64)>>,
    /// The first `setup_data` node for the zero page (0: none).
    pub setup_data: u64,
}

/// What the evidence backend records about the boot (TDX measures it into RTMR[2]).
pub struct BootFacts {
    /// SHA-384 of the firmware image as mapped.
    pub image_sha384: [u8; 48],
    /// RAM in the memory map, accepted or not.
    pub ram_bytes: u64,
    /// Bytes accepted by the TEE at boot.
    pub accepted_bytes: u64,
    /// The calibrated clock (TDX: the GetQuote timeout; SNP: the busy-PSP back-off).
    pub tsc: pupa_guest::clock::Tsc,
}

/// The interrupt hardware a platform offers (for the idle halt's set-up).
#[derive(Clone, Copy)]
pub struct Interrupts {
    /// A pair of 8259 PICs exists and must be masked before the first STI.
    pub legacy_pic: bool,
    /// The local APIC must be used in x2APIC mode (TDX virtualises only the x2APIC).
    pub x2apic_only: bool,
}

/// Port I/O access width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Byte = 1,
    Word = 2,
    Dword = 4,
}

/// One TEE's way of doing the things the firmware needs from the machine.
///
/// Implementations are `'static` singletons (their state lives in `Once`/atomics of their
/// module) so that `arch::io` and `arch::mmio` can route through [`current`] from anywhere,
/// the trap handlers included.
pub trait Platform: Sync {
    /// The TEE this platform is.
    fn kind(&self) -> TeeKind;

    /// Runs first, right after the IDT is loaded and before any port I/O: SNP registers its
    /// GHCB (a failure there terminates the VM through the GHCB MSR protocol, since nothing can
    /// be printed yet), TDX reads TDG.VP.INFO. The serial console works once it returns.
    fn init(&self, boot: &BootArgs) -> Result<(), BootError>;

    /// Reads the host's memory map (fw_cfg `etc/e820`, or the TD HOB) and names its source.
    /// Runs after `init`, once the early heap is claimed. The map is host input: the parser
    /// rejects what it cannot trust.
    fn memory_map(&self) -> Result<(Vec<Region>, &'static str), BootError>;

    /// Makes the RAM of `map` outside `early` (early RAM, already usable) private and usable:
    /// validated (SNP), accepted (TDX), or as is (plain). Runs once, right after `memory_map`;
    /// the heap takes the returned ranges.
    fn accept_ram(&self, map: &[Region], early: (u64, u64)) -> Result<Ram, BootError>;

    /// Device-visible memory for virtio rings and bounce buffers (and, under TDX, the GetQuote
    /// buffer). Runs once, after `accept_ram`.
    fn dma_pool(&self) -> Result<Box<dyn DmaPool>, BootError>;

    /// The evidence backend the runtime asks for reports. Runs once, after `dma_pool` and the
    /// boot banner; TDX measures `facts` into RTMR[2] here and keeps the event log that goes
    /// with its quotes.
    fn evidence(
        &self,
        dma: &mut dyn DmaPool,
        facts: &BootFacts,
    ) -> Result<Box<dyn pupa_runtime::Tee>, BootError>;

    /// Runs once, instead of `dma_pool` and `evidence`, when a Linux payload read from fw_cfg
    /// is about to be entered (`linux_boot.rs`, after the boot report and the payload's
    /// digests): checks or measures the payload as this TEE requires and prepares what the
    /// kernel needs (`acpi`: QEMU's ACPI tables, installed, to which a TEE may add its own).
    /// A payload that fails the check never runs: the hook terminates the VM or returns an
    /// error.
    fn linux_handover(
        &self,
        map: &[Region],
        ram: &Ram,
        payload: &PayloadDigests,
        acpi: Option<&mut linux_acpi::LinuxAcpi>,
    ) -> Result<Handover, BootError>;

    /// Runs once, after `idle::init` (the boot CPU's local APIC is on): starts the other vCPUs,
    /// which join the work pool (`smp::POOL`). Returns (vCPUs the VMM reports, vCPUs online
    /// with the boot CPU). Plain: INIT-SIPI-SIPI; TDX: the ACPI wakeup mailbox the APs park
    /// on (`tdx_smp`); SNP: not yet, its APs stay unstarted and the guest runs on the boot CPU.
    fn start_aps(&self, tsc: pupa_guest::clock::Tsc) -> (u32, u32);

    /// One line for the console: what the evidence is.
    fn evidence_description(&self) -> &'static str;

    /// The interrupt hardware (read once by `idle::init`).
    fn interrupts(&self) -> Interrupts;

    /// Halts the vCPU until an interrupt is pending, then takes it. Called with interrupts
    /// disabled (the idle loop's last poll found nothing); returns with them disabled.
    fn halt(&self);

    /// Reads a port (`arch::io` routes every `in` here).
    ///
    /// # Safety
    /// The caller must know what the device behind `port` does on a read.
    unsafe fn port_read(&self, port: u16, width: Width) -> u32;

    /// Writes a port (`arch::io` routes every `out` here).
    ///
    /// # Safety
    /// The caller must know what the device behind `port` does with the write.
    unsafe fn port_write(&self, port: u16, width: Width, value: u32);

    /// One access of `size` bytes (1, 2 or 4) to the device register at `addr`, mapped UC;
    /// returns the value read (0 for writes). `arch::mmio` routes every access here.
    ///
    /// # Safety
    /// `addr` must be a device register whose access has the effect the caller intends.
    unsafe fn mmio(&self, addr: u64, size: u8, write: bool, value: u64) -> u64;
}

static PLATFORM: Once<&'static dyn Platform> = Once::new();

/// Chooses the platform for `kind`, once; later calls return the first choice. SEV or
/// SEV-ES without SNP has no usable attestation: the VM is terminated (GHCB MSR protocol:
/// under SEV-ES nothing else, not even the console, works without a GHCB).
pub fn select(kind: Result<TeeKind, SevWithoutSnp>) -> &'static dyn Platform {
    *PLATFORM.call_once(|| match kind {
        Ok(TeeKind::Dev) => &plain::Plain,
        Ok(TeeKind::Snp) => &snp::Snp,
        Ok(TeeKind::Tdx) => &tdx::Tdx,
        Err(SevWithoutSnp) => {
            use pupa_guest::snp::ghcb::term;
            crate::arch::snp::terminate(term::SET_GENERAL, term::SNP_UNSUPPORTED)
        }
    })
}

/// The platform [`select`] chose; the plain one before that (nothing runs before `select`
/// but the IDT set-up, which does no I/O).
pub fn current() -> &'static dyn Platform {
    PLATFORM.get().copied().unwrap_or(&plain::Plain)
}
