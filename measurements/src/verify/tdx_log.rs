//! The RTMR event log that comes with pupa's TDX evidence, and the boot configuration in it.
//!
//! The guest (`pupa_guest::tdx::rtmr`) measures one boot-configuration record into RTMR[2]
//! and serves its event log beside the quote. The quote authenticates the RTMRs only; the log is
//! carried by the host. So, in order:
//!
//! 1. parse the log (TCG PC Client PFP crypto-agile format, `crate::eventlog`);
//! 2. recompute every extended event's digest from its data (SHA-384): in pupa's log each
//!    digest is the hash of the logged data, so this authenticates the data the verifier reads
//!    next (a log whose data was altered but whose digests were kept replays correctly);
//! 3. replay the digests and compare all four RTMRs with the quote's;
//! 4. decode the one boot-configuration event (RTMR[2], EV_EVENT_TAG, tag "PUPA") with the
//!    layout shared with the guest (`pupa_spec::tdx::boot_config`), and apply the policy
//!    ([`TdxBootPolicy`]): the image hash (the manifest's), the vCPU count, the RAM; the record's
//!    TD attributes must equal the quote's.

use pupa_spec::tdx::boot_config::{
    tee_code, BootConfigEvent, BootConfigRecord, BOOT_CONFIG_RTMR, EV_EVENT_TAG,
};

use super::policy::TdxBootPolicy;
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
    /// RTMR[0..4].
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

/// Adds the [`CHECK_LOG`] and [`CHECK_BOOT_CONFIG`] checks for TDX evidence whose quote is
/// `quote` and whose event log is `log`. Without a log, nothing is added unless the policy needs
/// the boot configuration ([`TdxBootPolicy::requires_log`]): then the log check fails.
pub fn check(v: &mut Verdict, quote: &[u8], log: Option<&[u8]>, policy: &TdxBootPolicy) {
    let Some(log) = log else {
        if policy.requires_log() {
            v.check(
                CHECK_LOG,
                false,
                "absent: the policy requires the boot configuration (vCPUs, RAM), which only \
                 the event log records",
            );
        }
        return;
    };
    let td = match QuotedTd::from_quote(quote) {
        Ok(td) => td,
        Err(e) => return v.check(CHECK_LOG, false, e),
    };
    match replay_log(&td, log) {
        Err(e) => v.check(CHECK_LOG, false, e),
        Ok((parsed, detail)) => {
            v.check(CHECK_LOG, true, detail);
            v.check_result(
                CHECK_BOOT_CONFIG,
                boot_config(&parsed).and_then(|rec| check_boot_config(&rec, &td, policy)),
            );
        }
    }
}
