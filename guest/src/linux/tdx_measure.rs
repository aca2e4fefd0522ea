//! TDX: the Linux payload measured into the RTMRs, with events in the firmware's TCG event
//! log (`tdx::rtmr::EventLog`), so that a quote covers the kernel, initrd and command line.
//!
//! Which RTMR, by the TDVF/td-shim convention that `tdx::rtmr` follows: the kernel (the OS
//! loader stage) into RTMR[1], the initrd and the command line (the OS's parameters) into
//! RTMR[2], after the boot configuration. Each event is EV_EVENT_TAG with a
//! `TCG_PCClientTaggedEvent { u32 id = "PLNX", u32 size, data }` whose data is a domain label
//! and the part's SHA-384, `"pupa/linux/{kernel,initrd,cmdline}/v1\0" ‖ SHA-384(part)`: the
//! log stays small (no 14 MiB kernel in it), every event's digest is still SHA-384 of its
//! logged data (the invariant `pupa_measurements::verify::tdx_log` checks), and a verifier
//! compares the SHA-384 inside with the payload's (the manifest's). The tag differs from the
//! boot configuration's "PUPA", so the verifier's search for that record is unaffected.
//!
//! The firmware's TDX hand-over (`platform/tdx_linux.rs`) calls it before accepting all
//! memory and publishing the log in a CCEL table.

use alloc::vec::Vec;

use crate::tdx::rtmr::{EventLog, RtmrError, EV_EVENT_TAG};

/// taggedEventID of the payload events: "PLNX" little-endian.
pub const PAYLOAD_TAG_ID: u32 = u32::from_le_bytes(*b"PLNX");
/// The RTMR of the kernel event.
pub const KERNEL_RTMR: u8 = 1;
/// The RTMR of the initrd and command-line events.
pub const PARAMS_RTMR: u8 = 2;
pub const KERNEL_LABEL: &[u8] = b"pupa/linux/kernel/v1\0";
pub const INITRD_LABEL: &[u8] = b"pupa/linux/initrd/v1\0";
pub const CMDLINE_LABEL: &[u8] = b"pupa/linux/cmdline/v1\0";

/// The SHA-384 of each part (as `PartDigests` computes them: kernel = the setup item with
/// `LOADER_FIELDS` zeroed ‖ the kernel item, the command line with its NUL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadSha384 {
    pub kernel: [u8; 48],
    pub initrd: [u8; 48],
    pub cmdline: [u8; 48],
}

/// The tagged event data for one part.
pub fn event_data(label: &[u8], sha384: &[u8; 48]) -> Vec<u8> {
    let size = (label.len() + sha384.len()) as u32;
    let mut d = Vec::with_capacity(8 + size as usize);
    d.extend_from_slice(&PAYLOAD_TAG_ID.to_le_bytes());
    d.extend_from_slice(&size.to_le_bytes());
    d.extend_from_slice(label);
    d.extend_from_slice(sha384);
    d
}

/// Extends RTMR[1] with the kernel's event and RTMR[2] with the initrd's and the command
/// line's, in that order, through `extend_fn` (TDG.MR.RTMR.EXTEND; its RAX); stops at the
/// first failure (the boot must then stop: a partial measurement is not a payload's).
pub fn measure_payload(
    log: &mut EventLog,
    p: &PayloadSha384,
    extend_fn: &mut impl FnMut(u8, &[u8; 48]) -> u64,
) -> Result<(), RtmrError> {
    for (rtmr, label, digest) in [
        (KERNEL_RTMR, KERNEL_LABEL, &p.kernel),
        (PARAMS_RTMR, INITRD_LABEL, &p.initrd),
        (PARAMS_RTMR, CMDLINE_LABEL, &p.cmdline),
    ] {
        log.measure(rtmr, EV_EVENT_TAG, &event_data(label, digest), extend_fn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::PartDigests;
    use crate::tdx::rtmr::extend;
    use sha2::{Digest, Sha384};

    fn payload() -> PayloadSha384 {
        PayloadSha384 {
            kernel: PartDigests::of(&[b"setup", b"kernel"]).sha384,
            initrd: PartDigests::of(&[b"initrd"]).sha384,
            cmdline: PartDigests::of(&[b"console=ttyS0\0"]).sha384,
        }
    }

    #[test]
    fn parts_go_to_rtmr1_and_rtmr2_and_replay() {
        let p = payload();
        let mut log = EventLog::new();
        let before = log.bytes().len();
        let mut calls = Vec::new();
        measure_payload(&mut log, &p, &mut |i, d| {
            calls.push((i, *d));
            0
        })
        .unwrap();
        let data = [
            event_data(KERNEL_LABEL, &p.kernel),
            event_data(INITRD_LABEL, &p.initrd),
            event_data(CMDLINE_LABEL, &p.cmdline),
        ];
        let digests: Vec<[u8; 48]> = data.iter().map(|d| Sha384::digest(d).into()).collect();
        assert_eq!(
            calls,
            [(1, digests[0]), (2, digests[1]), (2, digests[2])],
            "TDG.MR.RTMR.EXTEND calls"
        );
        assert_eq!(log.expected_rtmr(1), Some(extend(&[0; 48], &digests[0])));
        let r2 = extend(&extend(&[0; 48], &digests[1]), &digests[2]);
        assert_eq!(log.expected_rtmr(2), Some(r2));
        assert_eq!(log.expected_rtmr(0), Some([0; 48]));
        // each event: CCEL index, EV_EVENT_TAG, one SHA-384 digest, the tagged data
        let ev = &log.bytes()[before..];
        assert_eq!(&ev[0..4], &2u32.to_le_bytes());
        assert_eq!(&ev[4..8], &EV_EVENT_TAG.to_le_bytes());
        assert_eq!(&ev[14..62], &digests[0]);
        assert_eq!(&ev[62..66], &(data[0].len() as u32).to_le_bytes());
        assert_eq!(&ev[66..70], b"PLNX");
        assert_eq!(&ev[74..74 + KERNEL_LABEL.len()], KERNEL_LABEL);
        assert_eq!(&ev[74 + KERNEL_LABEL.len()..66 + data[0].len()], &p.kernel);
    }

    #[test]
    fn a_failed_extend_stops_and_is_not_logged() {
        let mut log = EventLog::new();
        let before = log.bytes().to_vec();
        let mut n = 0;
        let r = measure_payload(&mut log, &payload(), &mut |_, _| {
            n += 1;
            if n == 2 {
                0xC000_0000_0000_0000
            } else {
                0
            }
        });
        assert_eq!(r, Err(RtmrError::Tdcall(0xC000_0000_0000_0000)));
        assert_eq!(n, 2, "no extend after the failure");
        assert!(
            log.bytes().len() > before.len(),
            "the kernel event is logged"
        );
        assert_eq!(log.expected_rtmr(2), Some([0; 48]), "the failed one is not");
    }
}
