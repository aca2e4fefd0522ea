//! The RTMR event log that comes with pupa's TDX evidence, and the boot configuration in it.
//!
//! The guest (`pupa_guest::tdx::rtmr`) measures one boot-configuration record into RTMR\[2\]
//! and serves its event log beside the quote. The quote authenticates the RTMRs only; the log is
//! carried by the host. So, in order:
//!
//! 1. parse the log (TCG PC Client PFP crypto-agile format, `crate::eventlog`);
//! 2. recompute every extended event's digest from its data (SHA-384): in pupa's log each
//!    digest is the hash of the logged data, so this authenticates the data the verifier reads
//!    next (a log whose data was altered but whose digests were kept replays correctly);
//! 3. replay the digests and compare all four RTMRs with the quote's;
//! 4. decode the one boot-configuration event (RTMR\[2\], EV_EVENT_TAG, tag "PUPA") with the
//!    layout shared with the guest (`pupa_spec::tdx::boot_config`), and apply the policy
//!    ([`TdxBootPolicy`]): the image hash (the manifest's), the vCPU count, the RAM; the record's
//!    TD attributes must equal the quote's.
//!
//! The same firmware, under the same MRTD, boots either its built-in runtime (the unikernel,
//! which writes that record) or a Linux kernel (which it measures into RTMR\[1\]/RTMR\[2\] and
//! writes no record: [`super::tdx_linux`]). So when the policy comes from a pupa manifest
//! ([`TdxBootPolicy::requires_payload`]), the evidence must show which one ran: the quote's
//! RTMR\[1\]/RTMR\[2\] are the manifest's Linux payload's, or the log holds the unikernel's valid
//! record. A log with Linux payload events ("PLNX") is never the unikernel's, whatever record it
//! also holds (Linux can extend RTMR\[2\] after the firmware).

use pupa_spec::tdx::boot_config::{
    tee_code, BootConfigEvent, BootConfigRecord, BOOT_CONFIG_RTMR, EV_EVENT_TAG,
};

use super::policy::TdxBootPolicy;
use super::tdx_linux::{self, CHECK_PAYLOAD};
use super::{tdx, Verdict};
use crate::eventlog::{self, EventLog};
use crate::hexfmt;

/// Verdict check names.
pub const CHECK_LOG: &str = "RTMR event log";
/// Verdict check name of the decoded boot configuration.
pub const CHECK_BOOT_CONFIG: &str = "boot configuration";

/// The TD report fields the log is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedTd {
    /// RTMR\[0..4\].
    pub rtmrs: [[u8; 48]; 4],
    /// TD ATTRIBUTES.
    pub td_attributes: u64,
}

impl QuotedTd {
    /// Reads the RTMRs and TD attributes of a quote (structure checked by `tdx::parse_quote`;
    /// its signature is `tdx::verify`'s business).
    pub fn from_quote(quote: &[u8]) -> Result<Self, String> {
        let q = tdx::parse_quote(quote).map_err(|e| e.to_string())?;
        let td = q.report.as_td10().ok_or("the quote holds no TD report")?;
        Ok(Self {
            rtmrs: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
            td_attributes: u64::from_le_bytes(td.td_attributes),
        })
    }
}

/// Steps 1–3: parses `log`, checks every event's digest against its data, replays it and
/// compares the RTMRs with the quote's. Returns the parsed log and a description.
pub fn replay_log(td: &QuotedTd, log: &[u8]) -> Result<(EventLog, String), String> {
    let parsed = eventlog::parse(log).map_err(|e| format!("event log: {e}"))?;
    eventlog::check_data_digests(&parsed).map_err(|e| format!("event log: {e}"))?;
    let replayed = eventlog::replay_rtmrs(&parsed).map_err(|e| format!("event log: {e}"))?;
    for (i, (got, want)) in replayed.iter().zip(&td.rtmrs).enumerate() {
        if got != want {
            return Err(format!(
                "RTMR[{i}] replays to {} but the quote holds {}",
                hexfmt::encode(got),
                hexfmt::encode(want)
            ));
        }
    }
    let detail = format!(
        "{} events replay to the quoted RTMR[0..4] (RTMR[2] {}); every digest is the SHA-384 of \
         its data",
        parsed.events.len(),
        hexfmt::encode(&td.rtmrs[2])
    );
    Ok((parsed, detail))
}

/// Finds and decodes the one boot-configuration event of an (authenticated) log.
pub fn boot_config(log: &EventLog) -> Result<BootConfigRecord, String> {
    if tdx_linux::is_linux_boot(log) {
        return Err(
            "the log records a Linux payload (\"PLNX\" events), whose boot writes no \
             boot-configuration record: not the unikernel's boot (only a manifest's \
             payload.measurements.tdx accepts a Linux payload)"
                .into(),
        );
    }
    let mut found = log.events.iter().filter(|e| {
        e.mr_index == u32::from(BOOT_CONFIG_RTMR) + 1
            && e.event_type == EV_EVENT_TAG
            && BootConfigEvent::is_pupa_tagged(&e.data)
    });
    let ev = found.next().ok_or(
        "the log holds no pupa boot-configuration event (RTMR[2], EV_EVENT_TAG, \"PUPA\")",
    )?;
    if found.next().is_some() {
        return Err("the log holds more than one boot-configuration event".into());
    }

    let rec = BootConfigEvent::decode(&ev.data)
        .map_err(|e| format!("event at offset {:#x}: {e}", ev.offset))?
        .record;
    if rec.tee != tee_code::TDX {
        return Err(format!(
            "the record names TEE code {}, not TDX ({})",
            rec.tee,
            tee_code::TDX
        ));
    }
    Ok(rec)
}

/// Step 4's policy: the decoded record against `policy` and the quote's TD attributes.
pub fn check_boot_config(
    rec: &BootConfigRecord,
    td: &QuotedTd,
    policy: &TdxBootPolicy,
) -> Result<String, String> {
    let image = hexfmt::encode(&rec.image_sha384);
    let (vcpus, max_vcpus) = (rec.num_vcpus.get(), rec.max_vcpus.get());
    let (ram, accepted) = (rec.ram_bytes.get(), rec.accepted_bytes.get());
    if rec.td_attributes.get() != td.td_attributes {
        return Err(format!(
            "the record's TD attributes {:#x} differ from the quote's {:#x}",
            rec.td_attributes.get(),
            td.td_attributes
        ));
    }
    if let Some(want) = &policy.image_sha384 {
        if want != &rec.image_sha384 {
            return Err(format!(
                "image SHA-384 {image} is not the manifest's {}",
                hexfmt::encode(want)
            ));
        }
    }
    if let Some(want) = policy.vcpus {
        if vcpus != want {
            return Err(format!("{vcpus} vCPUs, the policy requires {want}"));
        }
    }
    if let Some(min) = policy.min_ram_bytes {
        if ram < min {
            return Err(format!(
                "{} MiB RAM, the policy requires at least {} MiB",
                ram >> 20,
                min >> 20
            ));
        }
    }
    let pinned = if policy.image_sha384.is_some() {
        " (the manifest's)"
    } else {
        " (not pinned: no manifest image hash)"
    };
    Ok(format!(
        "image {image}{pinned}; {vcpus} vCPUs (max {max_vcpus}); {} MiB RAM ({} MiB accepted at \
         boot); GPAW {}",
        ram >> 20,
        accepted >> 20,
        rec.gpaw
    ))
}

/// The log line when the policy needs the boot configuration and no log came.
const LOG_ABSENT: &str =
    "absent: the policy requires the boot configuration (vCPUs, RAM), which only the event log \
     records";

/// Adds the [`CHECK_LOG`], [`CHECK_BOOT_CONFIG`] and (for a manifest with a Linux payload)
/// [`CHECK_PAYLOAD`] and per-part checks for TDX evidence whose quote is `quote` and whose event
/// log is `log`:
/// - the quote's RTMR\[1\]/RTMR\[2\] are the manifest's Linux payload's ([`TdxBootPolicy::linux`]):
///   [`CHECK_PAYLOAD`] passes; a log must replay ([`CHECK_LOG`]) and its part events are shown
///   ([`tdx_linux::check_parts`]); a vCPU/RAM requirement fails ([`CHECK_BOOT_CONFIG`]): that
///   boot writes no record;
/// - a log that replays and records another Linux payload: [`CHECK_PAYLOAD`] fails, and the part
///   lines say which part differs;
/// - otherwise the unikernel: the log's boot-configuration record ([`CHECK_BOOT_CONFIG`]).
///   Without a log nothing is added unless the policy needs the record
///   ([`TdxBootPolicy::requires_log`]) or comes from a manifest
///   ([`TdxBootPolicy::requires_payload`]): then the evidence fails, in one line that, with a
///   Linux payload in the manifest, gives both reasons (not the payload's RTMRs, no valid
///   record).
pub fn check(v: &mut Verdict, quote: &[u8], log: Option<&[u8]>, policy: &TdxBootPolicy) {
    if log.is_none() && !policy.requires_payload() {
        if policy.requires_log() {
            v.check(CHECK_LOG, false, LOG_ABSENT);
        }
        return;
    }
    let td = match QuotedTd::from_quote(quote) {
        Ok(td) => td,
        Err(e) => return v.check(CHECK_LOG, false, e),
    };
    if let Some(p) = policy
        .linux
        .as_ref()
        .filter(|p| tdx_linux::rtmrs_match(&td, p))
    {
        v.check(
            CHECK_PAYLOAD,
            true,
            format!(
                "Linux payload: RTMR[1] {} and RTMR[2] {} are the manifest's \
                 (payload.measurements.tdx); this boot writes no boot-configuration record",
                hexfmt::encode(&p.rtmr1),
                hexfmt::encode(&p.rtmr2)
            ),
        );
        if let Some(log) = log {
            match replay_log(&td, log) {
                Err(e) => v.check(CHECK_LOG, false, e),
                Ok((parsed, detail)) => {
                    v.check(CHECK_LOG, true, detail);
                    tdx_linux::check_parts(v, &parsed, &td, p);
                }
            }
        }
        if policy.requires_log() {
            v.check(
                CHECK_BOOT_CONFIG,
                false,
                "the policy requires the boot configuration (vCPUs, RAM: tdx_vcpus, \
                 tdx_min_ram_mib), which the Linux payload's boot does not record (the firmware \
                 hands over to Linux without it): drop these requirements to accept the payload",
            );
        }
        return;
    }
    // Not the manifest's Linux payload (or none in the manifest): the unikernel's record, from
    // the log, or why there is none.
    let parsed = match log {
        None => {
            if policy.requires_log() {
                v.check(CHECK_LOG, false, LOG_ABSENT);
            }
            Err(
                "no event log came with the quote to show the unikernel's boot-configuration \
                 record (the manifest's firmware boots the unikernel or a Linux kernel under the \
                 same MRTD; only the record or the payload's RTMRs tell which)"
                    .to_string(),
            )
        }
        Some(log) => match replay_log(&td, log) {
            Err(e) => {
                v.check(CHECK_LOG, false, e.clone());
                Err(format!("the event log does not replay: {e}"))
            }
            Ok((parsed, detail)) => {
                v.check(CHECK_LOG, true, detail);
                Ok(parsed)
            }
        },
    };
    if let (Ok(parsed), Some(p)) = (&parsed, &policy.linux) {
        if tdx_linux::is_linux_boot(parsed) {
            v.check(
                CHECK_PAYLOAD,
                false,
                format!(
                    "a Linux payload, but not the manifest's: {}",
                    tdx_linux::describe_rtmrs(&td, p)
                ),
            );
            tdx_linux::check_parts(v, parsed, &td, p);
            return;
        }
    }
    let unikernel = parsed.as_ref().map_err(Clone::clone).and_then(|parsed| {
        boot_config(parsed).and_then(|rec| check_boot_config(&rec, &td, policy))
    });
    match (&policy.linux, unikernel) {
        // A log that does not replay has failed already, on its own line.
        (None, Err(_)) if log.is_some() && parsed.is_err() => {}
        (None, r) => v.check_result(CHECK_BOOT_CONFIG, r),
        (Some(p), Ok(detail)) => {
            v.check(CHECK_BOOT_CONFIG, true, detail);
            v.check(
                CHECK_PAYLOAD,
                true,
                format!(
                    "the unikernel: its boot-configuration record is in the log; {}",
                    tdx_linux::describe_rtmrs(&td, p)
                ),
            );
        }
        (Some(p), Err(why)) => v.check(
            CHECK_PAYLOAD,
            false,
            format!(
                "neither payload: {} are not the Linux payload's, and not the unikernel: {why}",
                tdx_linux::describe_rtmrs(&td, p)
            ),
        ),
    }
}
