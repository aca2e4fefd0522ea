//! TDX evidence of pupa's Linux payload: what the firmware measured before it entered Linux.
//!
//! The firmware (`guest/src/platform/tdx_linux.rs`, `guest/src/linux/tdx_measure.rs`) extends
//! RTMR\[1\] with the kernel and RTMR\[2\] with the initrd, then the command line, each one
//! EV_EVENT_TAG event whose data is `"PLNX" ‖ u32 size ‖ label ‖ SHA-384(part)`; it writes no
//! boot-configuration record ("PUPA") on this path. The manifest (`pupa-image build --payload
//! linux`) states the RTMR\[1\]/RTMR\[2\] this leaves (`payload.measurements.tdx`, recomputed from
//! the files by `crate::linux::tdx_payload_rtmrs`) and the SHA-384 of each file.
//!
//! What is decided here (the callers are in [`super::tdx_log::check`]):
//! - the quote's RTMR\[1\] and RTMR\[2\] equal the manifest's: the evidence is the Linux payload;
//! - with an event log (authenticated by its replay against the quote), each part's event is
//!   read and shown on its own line: the initrd's and the command line's SHA-384 must equal the
//!   manifest's `payload.initrd.sha384` and `payload.cmdline.sha384` (the command line hashed
//!   with its NUL, as both sides do). The kernel's event carries the SHA-384 of the bzImage with
//!   the boot loader's setup-header fields zeroed (QEMU patches them), while the manifest's
//!   `payload.kernel.sha384` is of the file as built: the two differ by design, so the kernel is
//!   judged by RTMR\[1\] alone (its single event's digest is then fixed by the replay) and the line
//!   says so.

use pupa_spec::tdx::boot_config::EV_EVENT_TAG;

use super::policy::LinuxPayloadTdx;
use super::tdx_log::QuotedTd;
use super::Verdict;
use crate::eventlog::EventLog;
use crate::hexfmt;

/// The taggedEventID of the payload's events, "PLNX".
pub const PAYLOAD_TAG: &[u8; 4] = b"PLNX";
/// The kernel event's label (RTMR\[1\]).
pub const KERNEL_LABEL: &[u8] = b"pupa/linux/kernel/v1\0";
/// The initrd event's label (RTMR\[2\]).
pub const INITRD_LABEL: &[u8] = b"pupa/linux/initrd/v1\0";
/// The command line event's label (RTMR\[2\]).
pub const CMDLINE_LABEL: &[u8] = b"pupa/linux/cmdline/v1\0";

/// Verdict check name: which payload the evidence shows.
pub const CHECK_PAYLOAD: &str = "payload";
/// Verdict check name of the kernel's event.
pub const CHECK_KERNEL: &str = "Linux kernel";
/// Verdict check name of the initrd's event.
pub const CHECK_INITRD: &str = "Linux initrd";
/// Verdict check name of the command line's event.
pub const CHECK_CMDLINE: &str = "Linux command line";

/// One payload event of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadEvent {
    /// The RTMR (0..4) it extended.
    pub rtmr: u32,
    /// Its label (NUL included).
    pub label: Vec<u8>,
    /// The SHA-384 of the part it carries.
    pub sha384: [u8; 48],
    /// Its offset in the log.
    pub offset: usize,
}

/// Whether an event is one of the payload's (EV_EVENT_TAG, tag "PLNX").
fn is_payload_event(event_type: u32, data: &[u8]) -> bool {
    event_type == EV_EVENT_TAG && data.starts_with(PAYLOAD_TAG)
}

/// Whether the log records a Linux boot: any "PLNX" event. Such a boot's firmware wrote no
/// boot-configuration record, so a "PUPA" event in the same log was extended by Linux.
pub fn is_linux_boot(log: &EventLog) -> bool {
    log.events
        .iter()
        .any(|e| is_payload_event(e.event_type, &e.data))
}

/// Every payload event of the log, decoded: `u32 size` must be the rest of the data, which is a
/// label and a SHA-384.
pub fn payload_events(log: &EventLog) -> Result<Vec<PayloadEvent>, String> {
    log.events
        .iter()
        .filter(|e| is_payload_event(e.event_type, &e.data))
        .map(|e| {
            let d = &e.data;
            let size = d
                .get(4..8)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
            if d.len() < 8 + 48 || size != Some(d.len() - 8) {
                return Err(format!(
                    "the \"PLNX\" event at offset {:#x} is malformed ({} bytes of data, size \
                     field {size:?}): want \"PLNX\" ‖ u32 size ‖ label ‖ SHA-384",
                    e.offset,
                    d.len()
                ));
            }
            let mut sha384 = [0u8; 48];
            sha384.copy_from_slice(&d[d.len() - 48..]);
            Ok(PayloadEvent {
                rtmr: e.mr_index.wrapping_sub(1),
                label: d[8..d.len() - 48].to_vec(),
                sha384,
                offset: e.offset,
            })
        })
        .collect()
}

/// Whether the quote's RTMR\[1\] and RTMR\[2\] are the payload's.
pub fn rtmrs_match(td: &QuotedTd, p: &LinuxPayloadTdx) -> bool {
    td.rtmrs[1] == p.rtmr1 && td.rtmrs[2] == p.rtmr2
}

/// "RTMR\[1\] X and RTMR\[2\] Y (the manifest's payload: A and B)".
pub fn describe_rtmrs(td: &QuotedTd, p: &LinuxPayloadTdx) -> String {
    format!(
        "RTMR[1] {} and RTMR[2] {} (the manifest's Linux payload: {} and {})",
        hexfmt::encode(&td.rtmrs[1]),
        hexfmt::encode(&td.rtmrs[2]),
        hexfmt::encode(&p.rtmr1),
        hexfmt::encode(&p.rtmr2)
    )
}

/// The one event labelled `label` in RTMR[`rtmr`].
fn one_event<'a>(
    events: &'a [PayloadEvent],
    rtmr: u32,
    label: &[u8],
) -> Result<&'a PayloadEvent, String> {
    let name = String::from_utf8_lossy(label.strip_suffix(b"\0").unwrap_or(label)).into_owned();
    let mut found = events.iter().filter(|e| e.rtmr == rtmr && e.label == label);
    let ev = found
        .next()
        .ok_or_else(|| format!("the log holds no {name:?} event in RTMR[{rtmr}]"))?;
    if found.next().is_some() {
        return Err(format!(
            "the log holds more than one {name:?} event in RTMR[{rtmr}]"
        ));
    }
    Ok(ev)
}

/// Adds the [`CHECK_KERNEL`], [`CHECK_INITRD`] and [`CHECK_CMDLINE`] lines for an
/// authenticated log (replayed against the quote `td`) under the manifest's payload `p`.
pub fn check_parts(v: &mut Verdict, log: &EventLog, td: &QuotedTd, p: &LinuxPayloadTdx) {
    let events = match payload_events(log) {
        Ok(e) => e,
        Err(e) => {
            for name in [CHECK_KERNEL, CHECK_INITRD, CHECK_CMDLINE] {
                v.check(name, false, e.clone());
            }
            return;
        }
    };
    v.check_result(
        CHECK_KERNEL,
        one_event(&events, 1, KERNEL_LABEL).and_then(|ev| {
            let got = hexfmt::encode(&ev.sha384);
            if td.rtmrs[1] == p.rtmr1 {
                Ok(format!(
                    "SHA-384 {got} (bzImage, loader fields zeroed): judged by RTMR[1], which is \
                     the manifest's (the manifest's kernel.sha384 is of the file as built, so it \
                     is not this digest)"
                ))
            } else {
                Err(format!(
                    "RTMR[1] {} is not the manifest's {}: the logged kernel (SHA-384 {got}, \
                     loader fields zeroed) is another kernel",
                    hexfmt::encode(&td.rtmrs[1]),
                    hexfmt::encode(&p.rtmr1)
                ))
            }
        }),
    );
    for (name, label, want, what) in [
        (CHECK_INITRD, INITRD_LABEL, &p.initrd_sha384, "initrd"),
        (CHECK_CMDLINE, CMDLINE_LABEL, &p.cmdline_sha384, "cmdline"),
    ] {
        v.check_result(
            name,
            one_event(&events, 2, label).and_then(|ev| {
                let got = hexfmt::encode(&ev.sha384);
                match want {
                    Some(w) if w == &ev.sha384 => {
                        Ok(format!("SHA-384 {got}, the manifest's payload.{what}"))
                    }
                    Some(w) => Err(format!(
                        "SHA-384 {got} is not the manifest's payload.{what} {}",
                        hexfmt::encode(w)
                    )),
                    None if td.rtmrs[2] == p.rtmr2 => Ok(format!(
                        "SHA-384 {got}: the manifest has no payload.{what}.sha384; judged by \
                         RTMR[2], which is the manifest's"
                    )),
                    None => Err(format!(
                        "SHA-384 {got}: the manifest has no payload.{what}.sha384, and RTMR[2] \
                         is not the manifest's"
                    )),
                }
            }),
        );
    }
}
