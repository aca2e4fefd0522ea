//! The ACPI Multiprocessor Wakeup mailbox (ACPI 6.4 §5.2.12.19 "Multiprocessor Wakeup
//! Structure" and its "Multiprocessor Wakeup Mailbox Structure" table), through which the TDX
//! application processors are started: under TDX every vCPU enters at the reset vector, and
//! the vCPUs other than 0 park, polling this 4 KiB page (`arch/boot.s` `ap_park64`) until a
//! waker writes their APIC ID and a wakeup vector.
//!
//! The protocol, as ACPI describes it and Linux `arch/x86/kernel/acpi/madt_wakeup.c`
//! (`acpi_wakeup_cpu`) drives it:
//!
//! - waker: write `ApicId` and `WakeupVector`, then `Command = WAKEUP` with release ordering
//!   (Linux: `smp_store_release`), then wait until `Command` reads `NOOP` again: the woken
//!   AP's acknowledgement. Linux waits without bound and sends no IPI; the firmware's waker
//!   ([`wake`]) waits a bounded time and also kicks the AP (an IPI), because a parked AP
//!   may be halted (see [`FirmwareArea::park_spin`]).
//! - AP: act only on `Command == WAKEUP` with `ApicId ==` its own x2APIC ID; read
//!   `WakeupVector`, then acknowledge by writing `Command = NOOP`, then jump to the vector.
//!   Anything else (another AP's ID, no command, an unknown command) is ignored.
//!
//! [`ap_poll`] is the AP's side in Rust; the assembly park loop performs the same loads and
//! stores in the same order (`ap_park64` in `arch/boot.s`, which names each step after this
//! function). The AP reads `ApicId` before `Command`: after a previous AP's acknowledgement
//! the waker rewrites `ApicId` before it writes the next `WAKEUP`, so an AP that has read its
//! own ID and then sees `WAKEUP` sees the command meant for it, never the previous one (an AP
//! that read `Command` first could pair an old `WAKEUP` with the next request's ID and
//! acknowledge before that request's command is written, losing it).
//!
//! This module holds the layout and the protocol logic only; the fixed mailbox page, the IPI
//! and the TSC wait are the firmware's (`platform/tdx_smp.rs`).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

/// `Command`: no operation (also the acknowledgement the AP writes).
pub const COMMAND_NOOP: u16 = 0;
/// `Command`: wake up the AP named by `ApicId` and send it to `WakeupVector`.
pub const COMMAND_WAKEUP: u16 = 1;

/// Bytes of the mailbox (ACPI: 4 KiB, 4 KiB aligned).
pub const MAILBOX_SIZE: usize = 4096;
/// `ReservedForOs` bytes (offset 16).
pub const RESERVED_FOR_OS_LEN: usize = 2032;
/// `ReservedForFirmware` bytes (offset 2048).
pub const RESERVED_FOR_FIRMWARE_LEN: usize = 2048;

/// The firmware's half of the mailbox (`ReservedForFirmware`, offset 2048): the OS must not
/// touch it (ACPI), the VMM cannot (the page is private TD memory, measured into MRTD).
#[repr(C)]
pub struct FirmwareArea {
    /// 0 (the image's value): a parked AP that finds no command for itself halts in
    /// TDG.VP.VMCALL<Instruction.HLT> until an interrupt (the firmware's waker sends an IPI
    /// after the command). Non-zero: it spins (PAUSE) instead, as Linux's waker expects (it
    /// sends no IPI); to be set, followed by an IPI to every parked AP, before the mailbox is
    /// handed to an OS through the MADT.
    pub park_spin: AtomicU32,
    _rest: [u8; RESERVED_FOR_FIRMWARE_LEN - 4],
}

/// The Multiprocessor Wakeup Mailbox Structure (ACPI 6.4 §5.2.12.19, mailbox table).
#[repr(C, align(4096))]
pub struct WakeupMailbox {
    /// `Command` (offset 0): [`COMMAND_NOOP`], [`COMMAND_WAKEUP`]; other values reserved.
    pub command: AtomicU16,
    /// `Reserved` (offset 2).
    pub reserved: u16,
    /// `ApicId` (offset 4): the local (x2)APIC ID of the processor to wake.
    pub apic_id: AtomicU32,
    /// `WakeupVector` (offset 8): where the woken AP jumps (64-bit mode, identity-mapped
    /// paging, interrupts disabled).
    pub wakeup_vector: AtomicU64,
    /// `ReservedForOs` (offset 16).
    pub reserved_for_os: [u8; RESERVED_FOR_OS_LEN],
    /// `ReservedForFirmware` (offset 2048).
    pub firmware: FirmwareArea,
}

const _: () = {
    assert!(size_of::<WakeupMailbox>() == MAILBOX_SIZE);
    assert!(core::mem::align_of::<WakeupMailbox>() == MAILBOX_SIZE);
    assert!(offset_of!(WakeupMailbox, command) == 0);
    assert!(offset_of!(WakeupMailbox, reserved) == 2);
    assert!(offset_of!(WakeupMailbox, apic_id) == 4);
    assert!(offset_of!(WakeupMailbox, wakeup_vector) == 8);
    assert!(offset_of!(WakeupMailbox, reserved_for_os) == 16);
    assert!(offset_of!(WakeupMailbox, firmware) == 2048);
    assert!(offset_of!(WakeupMailbox, firmware) + offset_of!(FirmwareArea, park_spin) == 2048);
};

/// Offsets the assembly park loop uses (`arch/boot.s`); equal to the fields' by the asserts.
pub mod offsets {
    /// `Command`.
    pub const COMMAND: usize = 0;
    /// `ApicId`.
    pub const APIC_ID: usize = 4;
    /// `WakeupVector`.
    pub const WAKEUP_VECTOR: usize = 8;
    /// [`super::FirmwareArea::park_spin`].
    pub const PARK_SPIN: usize = 2048;
}

const _: () = {
    assert!(offsets::COMMAND == offset_of!(WakeupMailbox, command));
    assert!(offsets::APIC_ID == offset_of!(WakeupMailbox, apic_id));
    assert!(offsets::WAKEUP_VECTOR == offset_of!(WakeupMailbox, wakeup_vector));
    assert!(offsets::PARK_SPIN == offset_of!(WakeupMailbox, firmware));
};

impl WakeupMailbox {
    /// An empty mailbox (the image's contents: all zero). For host tests and statics.
    pub const fn new() -> Self {
        Self {
            command: AtomicU16::new(COMMAND_NOOP),
            reserved: 0,
            apic_id: AtomicU32::new(0),
            wakeup_vector: AtomicU64::new(0),
            reserved_for_os: [0; RESERVED_FOR_OS_LEN],
            firmware: FirmwareArea {
                park_spin: AtomicU32::new(0),
                _rest: [0; RESERVED_FOR_FIRMWARE_LEN - 4],
            },
        }
    }
}

impl Default for WakeupMailbox {
    fn default() -> Self {
        Self::new()
    }
}

/// What a parked AP does after one look at the mailbox ([`ap_poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The command was for this AP and is acknowledged: jump to this vector.
    Wake(u64),
    /// Nothing for this AP: halt until an interrupt (`halt`), or spin, then look again.
    Wait { halt: bool },
}

/// One pass of a parked AP whose x2APIC ID is `own_apic_id` (under TDX the VMM's answer to
/// TDG.VP.VMCALL<Instruction.RDMSR> of MSR 0x802; `u32::MAX` if it gave none, which no
/// request names) (ACPI 6.4 §5.2.12.19): if
/// `ApicId` is its own and `Command` is WAKEUP, reads `WakeupVector`, acknowledges with
/// `Command = NOOP` and returns the vector; otherwise leaves the mailbox untouched.
pub fn ap_poll(mailbox: &WakeupMailbox, own_apic_id: u32) -> Poll {
    let halt = mailbox.firmware.park_spin.load(Ordering::Relaxed) == 0;
    // 1. ApicId first (see the module documentation); Acquire pairs with the waker's Release
    //    store of ApicId, which follows its wait for the previous acknowledgement.
    if mailbox.apic_id.load(Ordering::Acquire) != own_apic_id {
        return Poll::Wait { halt };
    }
    // 2. Command; Acquire pairs with the waker's Release store of WAKEUP, so the vector read
    //    next is the one written before it.
    if mailbox.command.load(Ordering::Acquire) != COMMAND_WAKEUP {
        return Poll::Wait { halt };
    }
    // 3. The vector, before the acknowledgement: once Command is NOOP the waker may reuse the
    //    mailbox for the next AP.
    let vector = mailbox.wakeup_vector.load(Ordering::Relaxed);
    // 4. Acknowledge (Linux waits for Command to read 0).
    mailbox.command.store(COMMAND_NOOP, Ordering::Release);
    Poll::Wake(vector)
}

/// Why an AP was not woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WakeError {
    /// `Command` was not NOOP before the request: an earlier one is still pending.
    #[error("the mailbox holds an unacknowledged command {0:#x}")]
    Busy(u16),
    /// The AP did not acknowledge in time; the request was withdrawn (`Command` set back to
    /// NOOP), so no AP acts on it later, unless it had already read it.
    #[error("APIC ID {apic_id} did not acknowledge the wakeup")]
    Timeout { apic_id: u32 },
}

/// Wakes the AP with x2APIC ID `apic_id` at `vector`: writes `ApicId` and `WakeupVector`,
/// then `Command = WAKEUP` (Release), calls `kick(apic_id)` (the IPI that ends a halted AP's
/// TDG.VP.VMCALL<HLT>), then `wait(acked)`, which polls `acked` until it returns true or a
/// deadline passes. Returns when the AP has acknowledged (`Command` reads NOOP); on timeout
/// the request is withdrawn with a compare-exchange (an acknowledgement that lands first
/// still counts as one).
pub fn wake(
    mailbox: &WakeupMailbox,
    apic_id: u32,
    vector: u64,
    kick: impl FnOnce(u32),
    wait: impl FnOnce(&dyn Fn() -> bool),
) -> Result<(), WakeError> {
    match mailbox.command.load(Ordering::Acquire) {
        COMMAND_NOOP => {}
        other => return Err(WakeError::Busy(other)),
    }
    // Release: an AP that reads this ID also sees the previous AP's acknowledgement (the
    // load above), so it cannot take the previous WAKEUP for its own.
    mailbox.apic_id.store(apic_id, Ordering::Release);
    mailbox.wakeup_vector.store(vector, Ordering::Relaxed);
    mailbox.command.store(COMMAND_WAKEUP, Ordering::Release);
    kick(apic_id);
    let acked = || mailbox.command.load(Ordering::Acquire) == COMMAND_NOOP;
    wait(&acked);
    if acked() {
        return Ok(());
    }
    match mailbox.command.compare_exchange(
        COMMAND_WAKEUP,
        COMMAND_NOOP,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Err(WakeError::Timeout { apic_id }),
        Err(COMMAND_NOOP) => Ok(()),
        Err(other) => Err(WakeError::Busy(other)),
    }
}

/// The MADT's Multiprocessor Wakeup Structure (ACPI 6.4 §5.2.12.19): type 0x10,
/// length 16, mailbox version 0, the mailbox's physical address. Not in pupa's MADT yet (for
/// a Linux payload with more than one vCPU; the page must then reach Linux as ACPI NVS, as
/// TDVF declares it, and [`FirmwareArea::park_spin`] be set first).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadtMpWakeup {
    /// Interrupt controller structure type: [`MADT_MP_WAKEUP_TYPE`].
    pub kind: u8,
    /// [`MADT_MP_WAKEUP_LEN`].
    pub length: u8,
    /// MailBoxVersion: 0.
    pub mailbox_version: u16,
    /// Reserved, 0.
    pub reserved: u32,
    /// MailBoxAddress: the 4 KiB-aligned physical address of the [`WakeupMailbox`].
    pub mailbox_address: u64,
}

/// MADT interrupt controller structure type of [`MadtMpWakeup`].
pub const MADT_MP_WAKEUP_TYPE: u8 = 0x10;
/// Length of [`MadtMpWakeup`] (mailbox version 0).
pub const MADT_MP_WAKEUP_LEN: u8 = 16;

const _: () = assert!(size_of::<MadtMpWakeup>() == MADT_MP_WAKEUP_LEN as usize);

impl MadtMpWakeup {
    /// The structure for a mailbox at `mailbox_address`.
    pub const fn new(mailbox_address: u64) -> Self {
        Self {
            kind: MADT_MP_WAKEUP_TYPE,
            length: MADT_MP_WAKEUP_LEN,
            mailbox_version: 0,
            reserved: 0,
            mailbox_address,
        }
    }

    /// Its bytes as they go into the MADT (little-endian).
    pub fn to_bytes(&self) -> [u8; MADT_MP_WAKEUP_LEN as usize] {
        let mut b = [0u8; MADT_MP_WAKEUP_LEN as usize];
        b[0] = self.kind;
        b[1] = self.length;
        b[2..4].copy_from_slice(&{ self.mailbox_version }.to_le_bytes());
        b[4..8].copy_from_slice(&{ self.reserved }.to_le_bytes());
        b[8..16].copy_from_slice(&{ self.mailbox_address }.to_le_bytes());
        b
    }
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;
