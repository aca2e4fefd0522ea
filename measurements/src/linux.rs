//! The Linux payload's TDX measurements, recomputed from the files: what pupa's firmware
//! extends into RTMR[1] and RTMR[2] before it hands over to the kernel
//! (`guest/src/platform/tdx_linux.rs`, `guest/src/linux/tdx_measure.rs`; documented in
//! docs/LINUX_PAYLOAD.md). Written here from that description, not shared with the guest, so
//! that `tests/tests/linux_measure.rs` can check the two against each other.
//!
//! Each part is one TCG event, type EV_EVENT_TAG, whose data is a `TCG_PCClientTaggedEvent`
//! `{ u32 id = "PLNX", u32 size, label ‖ SHA-384(part) }`; the event's digest is SHA-384 of
//! that data and RTMR = SHA-384(RTMR ‖ digest) from 48 zero bytes:
//! - RTMR[1]: `"pupa/linux/kernel/v1\0"` with the bzImage whose boot-loader header fields are
//!   zeroed ([`LOADER_FIELDS`]: QEMU patches them, except under SEV);
//! - RTMR[2]: `"pupa/linux/initrd/v1\0"` with the initrd (the empty string without one), then
//!   `"pupa/linux/cmdline/v1\0"` with the command line and its NUL.
//!
//! RTMR[0] also holds QEMU's ACPI tables and the TD HOB, which depend on the VM's
//! configuration: they are replayed from the event log, not predicted.

use sha2::{Digest, Sha384};

use crate::Digest384;

/// The setup-header bytes a boot loader writes (Linux `Documentation/arch/x86/boot.rst`,
/// fields marked write/modify: vid_mode, type_of_loader through ramdisk_size, heap_end_ptr
/// through cmd_line_ptr, hardware_subarch(_data), setup_data), [start, end) in the bzImage.
pub const LOADER_FIELDS: [(usize, usize); 5] = [
    (0x1FA, 0x1FC),
    (0x210, 0x220),
    (0x224, 0x22C),
    (0x23C, 0x248),
    (0x250, 0x258),
];

/// The tagged-event id, "PLNX".
const TAG: &[u8; 4] = b"PLNX";

/// SHA-384 of the bzImage with [`LOADER_FIELDS`] zeroed (what the firmware measures).
pub fn kernel_sha384(bzimage: &[u8]) -> Digest384 {
    let mut k = bzimage.to_vec();
    for &(a, b) in &LOADER_FIELDS {
        if let Some(f) = k.get_mut(a..b) {
            f.fill(0);
        }
    }
    Sha384::digest(&k).into()
}

/// The event data for one part.
fn event_data(label: &str, digest: &Digest384) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + label.len() + 1 + 48);
    d.extend_from_slice(TAG);
    d.extend_from_slice(&((label.len() + 1 + 48) as u32).to_le_bytes());
    d.extend_from_slice(label.as_bytes());
    d.push(0);
    d.extend_from_slice(digest);
    d
}

fn extend(rtmr: &Digest384, data: &[u8]) -> Digest384 {
    let ev: Digest384 = Sha384::digest(data).into();
    let mut h = Sha384::new();
    h.update(rtmr);
    h.update(ev);
    h.finalize().into()
}

/// RTMR[1] and RTMR[2] after the firmware's payload measurement, from the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadRtmrs {
    pub rtmr1: Digest384,
    pub rtmr2: Digest384,
}

/// Recomputes [`PayloadRtmrs`] for `kernel` (a bzImage), `initrd` and the command line
/// `append` (without its NUL; none is the empty string, as QEMU passes it).
pub fn tdx_payload_rtmrs(
    kernel: &[u8],
    initrd: Option<&[u8]>,
    append: Option<&str>,
) -> PayloadRtmrs {
    let mut cmdline = append.unwrap_or("").as_bytes().to_vec();
    cmdline.push(0);
    let initrd: Digest384 = Sha384::digest(initrd.unwrap_or(&[])).into();
    let cmdline: Digest384 = Sha384::digest(&cmdline).into();
    let zero = [0u8; 48];
    let rtmr1 = extend(
        &zero,
        &event_data("pupa/linux/kernel/v1", &kernel_sha384(kernel)),
    );
    let rtmr2 = extend(&zero, &event_data("pupa/linux/initrd/v1", &initrd));
    let rtmr2 = extend(&rtmr2, &event_data("pupa/linux/cmdline/v1", &cmdline));
    PayloadRtmrs { rtmr1, rtmr2 }
}
