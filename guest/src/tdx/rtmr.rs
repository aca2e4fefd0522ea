//! Measuring the boot configuration into RTMR[2], with a TCG crypto-agile event log.
//!
//! **What is measured.** The image itself is in MRTD (measured by the TDX module at launch),
//! and the guest's keys are bound through REPORT_DATA. What neither covers is the configuration
//! the VMM chose at launch and the guest accepted: memory, vCPUs, TD attributes as the guest saw
//! them, plus the image hash the guest computed over its own ROM (ties the log to MRTD's
//! image). That record is [`BootConfig`]; its encoding ([`BootConfig::encode`]) is fixed-size
//! little-endian after a domain string, so a verifier can decode it ([`BootConfig::decode`])
//! and apply policy (e.g. minimum RAM, exact vCPU count).
//!
//! **Which RTMR.** RTMR[2] (TDG.MR.RTMR.EXTEND index 2; CCEL measurement-register index 3).
//! By the convention of TDVF/td-shim and the Linux TDX guest (UEFI spec §"EFI_CC_MEASUREMENT
//! _PROTOCOL", TDVF design guide "Measurement"), RTMR[0] holds firmware configuration, RTMR[1]
//! the OS loader/kernel, RTMR[2] the OS/application and its parameters, RTMR[3] is left for
//! run-time use. pupa is firmware and application at once: MRTD covers the code, and the
//! application-level configuration belongs in RTMR[2]; RTMR[1] stays zero, so a verifier
//! also sees that nothing loaded another stage.
//!
//! **The TD HOB (RTMR[0]).** The memory map the VMM wrote into the TD_HOB section is host
//! input that neither MRTD nor the boot configuration covers. Before the firmware uses it, it
//! is measured into RTMR[0] (TDG.MR.RTMR.EXTEND index 0; CCEL index 1), as OVMF's
//! `TdxHelperMeasureTdHob` does, by [`EventLog::measure_td_hob`]: event type
//! EV_PLATFORM_CONFIG_FLAGS (0x0000000A, PFP spec Table 9: platform configuration data), event
//! data = the HOB list itself, from the PHIT HOB through the 8-byte end-of-list HOB (type
//! 0xFFFF) inclusive (the unused tail of the section is not part of it), digest =
//! SHA-384(event data). A verifier recomputes the digest from the data and decodes the data as
//! a PI spec Vol. 3 §5 HOB list (`pupa_guest::memmap::parse_td_hob` reads exactly this) to see
//! the RAM, unaccepted RAM and MMIO ranges the host declared. (OVMF hashes the list without
//! the end-of-list HOB and logs an `EV_EFI_HANDOFF_TABLES2` pointer record instead of the
//! bytes, so its RTMR[0] value differs; pupa logs the bytes so the log alone is checkable.)
//! It is the first event of the log; RTMR[0] holds nothing else.
//!
//! **Extend.** `digest = SHA-384(event data)`, `RTMR' = SHA-384(RTMR ‖ digest)` (TDX Module ABI
//! spec, "TDG.MR.RTMR.EXTEND"); RTMRs start as 48 zero bytes.
//!
//! **Log.** TCG PC Client Platform Firmware Profile spec §10.2: a legacy `TCG_PCR_EVENT`
//! (EV_NO_ACTION, SHA-1-sized zero digest) carrying `TCG_EfiSpecIDEvent` ("Spec ID Event03",
//! one algorithm: SHA-384, id 0x000C, 48 bytes), then one `TCG_PCR_EVENT2` per extend with the
//! CCEL index (RTMR i → i + 1), type EV_EVENT_TAG (§10.4.1) and a `TCG_PCClientTaggedEvent`
//! `{u32 id = "PUPA", u32 size, BootConfig}` as event data. The host's replay
//! (`pupa_measurements::eventlog`) parses exactly this; a verifier gets the log bytes alongside
//! the evidence and checks that replaying it gives the quote's RTMR[2].

use alloc::vec::Vec;

use pupa_spec::tdx::boot_config::{tee_code, BootConfigEvent, BootConfigRecord};
use sha2::{Digest, Sha384};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::tee::TeeKind;

/// The record's layout and constants live in `pupa_spec::tdx::boot_config`, shared with the
/// verifier (`pupa_measurements::verify::tdx`), which decodes them from the log.
pub use pupa_spec::tdx::boot_config::{
    BOOT_CONFIG_DOMAIN, BOOT_CONFIG_LEN, BOOT_CONFIG_RTMR, EV_EVENT_TAG, PUPA_TAG_ID,
};
/// The RTMR the TD HOB goes into (TDG.MR.RTMR.EXTEND RDX), as in OVMF.
pub const TD_HOB_RTMR: u8 = 0;
/// EV_PLATFORM_CONFIG_FLAGS (PFP spec Table 9): the event type of the TD HOB measurement.
pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0xA;
/// TPM_ALG_SHA384 (TCG Algorithm Registry).
pub const ALG_SHA384: u16 = 0x000C;
/// EV_NO_ACTION (PFP spec Table 9).
pub const EV_NO_ACTION: u32 = 0x3;

/// The boot configuration recorded in RTMR[2].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootConfig {
    /// SHA-384 of the firmware image as the guest hashed its own ROM.
    pub image_sha384: [u8; 48],
    /// The TEE the guest detected (always [`TeeKind::Tdx`] when measured into an RTMR).
    pub tee: TeeKind,
    /// GPAW from TDG.VP.INFO (48 or 52).
    pub gpaw: u8,
    /// TD ATTRIBUTES from TDG.VP.INFO.
    pub td_attributes: u64,
    /// NUM_VCPUS from TDG.VP.INFO.
    pub num_vcpus: u32,
    /// MAX_VCPUS from TDG.VP.INFO.
    pub max_vcpus: u32,
    /// RAM in the TD HOB (accepted at launch plus unaccepted), bytes.
    pub ram_bytes: u64,
    /// Bytes the guest accepted at boot (TDG.MEM.PAGE.ACCEPT).
    pub accepted_bytes: u64,
}

fn tee_to_code(t: TeeKind) -> u8 {
    match t {
        TeeKind::Dev => tee_code::NONE,
        TeeKind::Snp => tee_code::SNP,
        TeeKind::Tdx => tee_code::TDX,
    }
}

impl BootConfig {
    /// The shared record (`pupa_spec::tdx::boot_config::BootConfigRecord`): `domain ‖
    /// image_sha384 ‖ u8 tee ‖ u8 gpaw ‖ u64 td_attributes ‖ u32 num_vcpus ‖ u32 max_vcpus ‖
    /// u64 ram_bytes ‖ u64 accepted_bytes`, little-endian, no padding.
    pub fn record(&self) -> BootConfigRecord {
        BootConfigRecord {
            domain: *BOOT_CONFIG_DOMAIN,
            image_sha384: self.image_sha384,
            tee: tee_to_code(self.tee),
            gpaw: self.gpaw,
            td_attributes: U64::new(self.td_attributes),
            num_vcpus: U32::new(self.num_vcpus),
            max_vcpus: U32::new(self.max_vcpus),
            ram_bytes: U64::new(self.ram_bytes),
            accepted_bytes: U64::new(self.accepted_bytes),
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> [u8; BOOT_CONFIG_LEN] {
        let mut b = [0u8; BOOT_CONFIG_LEN];
        b.copy_from_slice(self.record().as_bytes());
        b
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` if malformed.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let r = BootConfigRecord::read_from_bytes(b).ok()?;
        if &r.domain != BOOT_CONFIG_DOMAIN {
            return None;
        }
        let tee = match r.tee {
            tee_code::NONE => TeeKind::Dev,
            tee_code::SNP => TeeKind::Snp,
            tee_code::TDX => TeeKind::Tdx,
            _ => return None,
        };
        Some(Self {
            image_sha384: r.image_sha384,
            tee,
            gpaw: r.gpaw,
            td_attributes: r.td_attributes.get(),
            num_vcpus: r.num_vcpus.get(),
            max_vcpus: r.max_vcpus.get(),
            ram_bytes: r.ram_bytes.get(),
            accepted_bytes: r.accepted_bytes.get(),
        })
    }
}

/// `SHA-384(rtmr ‖ digest)`: the value TDG.MR.RTMR.EXTEND leaves in the RTMR.
pub fn extend(rtmr: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(rtmr);
    h.update(digest);
    h.finalize().into()
}

/// Why an RTMR extend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtmrError {
    /// RTMR index above 3.
    #[error("RTMR index {0} out of 0..=3")]
    Index(u8),
    /// TDG.MR.RTMR.EXTEND returned this status.
    #[error("TDG.MR.RTMR.EXTEND failed with status {0:#x}")]
    Tdcall(u64),
}

/// The guest's event log and the RTMR values it replays to.
#[derive(Debug, Clone)]
pub struct EventLog {
    bytes: Vec<u8>,
    rtmr: [[u8; 48]; 4],
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// A log holding only the Spec ID event.
    pub fn new() -> Self {
        let mut spec = Vec::new();
        spec.extend_from_slice(b"Spec ID Event03\0");
        spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
        spec.extend_from_slice(&[0, 2, 0, 2]); // spec version 2.0, errata 0, uintnSize 2 (UINT64)
        spec.extend_from_slice(&1u32.to_le_bytes()); // numberOfAlgorithms
        spec.extend_from_slice(&ALG_SHA384.to_le_bytes());
        spec.extend_from_slice(&48u16.to_le_bytes());
        spec.push(0); // vendorInfoSize
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u32.to_le_bytes()); // PCRIndex
        bytes.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 20]); // SHA-1-sized digest, zero
        bytes.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&spec);
        Self {
            bytes,
            rtmr: [[0; 48]; 4],
        }
    }

    /// The log bytes (serve them with the evidence).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What RTMR[i] must hold if every extend of this log (and nothing else) happened.
    pub fn expected_rtmr(&self, i: usize) -> Option<[u8; 48]> {
        self.rtmr.get(i).copied()
    }

    /// Extends RTMR[`rtmr`] with `SHA-384(data)` through `extend_fn(index, digest)` (the
    /// TDG.MR.RTMR.EXTEND wrapper, returning its RAX) and logs the event once it succeeded.
    /// Every event of this log has digest = SHA-384(its data): the verifier
    /// (`pupa_measurements::verify::tdx`) recomputes each digest and rejects a log where one
    /// differs, so an event that measures something other than its logged data (e.g. a digest of
    /// a large structure with a short description as data) needs a matching verifier change.
    pub fn measure(
        &mut self,
        rtmr: u8,
        event_type: u32,
        data: &[u8],
        extend_fn: &mut impl FnMut(u8, &[u8; 48]) -> u64,
    ) -> Result<[u8; 48], RtmrError> {
        if rtmr > 3 {
            return Err(RtmrError::Index(rtmr));
        }
        let digest: [u8; 48] = Sha384::digest(data).into();
        let rax = extend_fn(rtmr, &digest);
        if rax != 0 {
            return Err(RtmrError::Tdcall(rax));
        }
        let r = &mut self.rtmr[rtmr as usize];
        *r = extend(r, &digest);
        self.bytes
            .extend_from_slice(&(rtmr as u32 + 1).to_le_bytes()); // CCEL index
        self.bytes.extend_from_slice(&event_type.to_le_bytes());
        self.bytes.extend_from_slice(&1u32.to_le_bytes()); // digest count
        self.bytes.extend_from_slice(&ALG_SHA384.to_le_bytes());
        self.bytes.extend_from_slice(&digest);
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        Ok(digest)
    }

    /// Measures the TD HOB list `hob_list` (PHIT through end-of-list, see the module docs)
    /// into RTMR\[0\] as an EV_PLATFORM_CONFIG_FLAGS event whose data is the list. Call before
    /// anything acts on the HOB.
    pub fn measure_td_hob(
        &mut self,
        hob_list: &[u8],
        extend_fn: &mut impl FnMut(u8, &[u8; 48]) -> u64,
    ) -> Result<[u8; 48], RtmrError> {
        self.measure(TD_HOB_RTMR, EV_PLATFORM_CONFIG_FLAGS, hob_list, extend_fn)
    }

    /// Measures `cfg` into RTMR[2] as a pupa tagged event.
    pub fn measure_boot_config(
        &mut self,
        cfg: &BootConfig,
        extend_fn: &mut impl FnMut(u8, &[u8; 48]) -> u64,
    ) -> Result<[u8; 48], RtmrError> {
        let ev = BootConfigEvent::new(cfg.record());
        self.measure(BOOT_CONFIG_RTMR, EV_EVENT_TAG, ev.as_bytes(), extend_fn)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> BootConfig {
        BootConfig {
            image_sha384: [0x5A; 48],
            tee: TeeKind::Tdx,
            gpaw: 52,
            td_attributes: 1 << 28,
            num_vcpus: 2,
            max_vcpus: 2,
            ram_bytes: 0x1_0000_0000,
            accepted_bytes: 0xF780_0000,
        }
    }

    #[test]
    fn boot_config_round_trip_and_layout() {
        let c = sample();
        let e = c.encode();
        assert_eq!(BootConfig::decode(&e), Some(c));
        assert_eq!(&e[..24], BOOT_CONFIG_DOMAIN);
        assert_eq!(e[72..74], [3, 52]);
        assert_eq!(e[98..106], 0xF780_0000u64.to_le_bytes());
        assert_eq!(BootConfig::decode(&e[..100]), None);
        let mut bad = e;
        bad[72] = 9;
        assert_eq!(BootConfig::decode(&bad), None);
    }

    #[test]
    fn extend_matches_hand_computed_chain() {
        let mut log = EventLog::new();
        let mut seen = Vec::new();
        let d = log
            .measure_boot_config(&sample(), &mut |i, d| {
                seen.push((i, *d));
                0
            })
            .unwrap();
        assert_eq!(seen, alloc::vec![(2u8, d)]);
        // Independent computation: SHA-384(zeros ‖ SHA-384(tag ‖ size ‖ encoding)).
        let mut ev = Vec::new();
        ev.extend_from_slice(b"PUPA");
        ev.extend_from_slice(&(BOOT_CONFIG_LEN as u32).to_le_bytes());
        ev.extend_from_slice(&sample().encode());
        let digest = Sha384::digest(&ev);
        assert_eq!(d[..], digest[..]);
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(digest);
        assert_eq!(log.expected_rtmr(2).unwrap()[..], h.finalize()[..]);
        assert_eq!(log.expected_rtmr(0), Some([0; 48]));
        // The event record: CCEL index 3, EV_EVENT_TAG, one SHA-384 digest, the data.
        let rec = &log.bytes()[log.bytes().len() - (4 + 4 + 4 + 2 + 48 + 4 + ev.len())..];
        assert_eq!(rec[0..4], 3u32.to_le_bytes());
        assert_eq!(rec[4..8], 6u32.to_le_bytes());
        assert_eq!(rec[12..14], [0x0C, 0]);
    }

    #[test]
    fn td_hob_goes_into_rtmr0_with_its_bytes() {
        // T1: the host-written HOB list is logged whole and extended into RTMR[0].
        let mut list = Vec::new();
        list.extend_from_slice(&[1, 0, 56, 0, 0, 0, 0, 0]);
        list.extend_from_slice(&[0u8; 48]);
        list.extend_from_slice(&[0xFF, 0xFF, 8, 0, 0, 0, 0, 0]);
        let mut log = EventLog::new();
        let mut seen = Vec::new();
        let d = log
            .measure_td_hob(&list, &mut |i, d| {
                seen.push((i, *d));
                0
            })
            .unwrap();
        assert_eq!(seen, alloc::vec![(0u8, d)]);
        assert_eq!(d[..], Sha384::digest(&list)[..]);
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(d);
        assert_eq!(log.expected_rtmr(0).unwrap()[..], h.finalize()[..]);
        assert_eq!(log.expected_rtmr(2), Some([0; 48]));
        // CCEL index 1, EV_PLATFORM_CONFIG_FLAGS, SHA-384, the list as the event data.
        let rec = &log.bytes()[log.bytes().len() - (4 + 4 + 4 + 2 + 48 + 4 + list.len())..];
        assert_eq!(rec[0..4], 1u32.to_le_bytes());
        assert_eq!(rec[4..8], 0xAu32.to_le_bytes());
        assert_eq!(rec[62..66], (list.len() as u32).to_le_bytes());
        assert_eq!(&rec[66..], &list[..]);
    }

    #[test]
    fn failed_extend_is_not_logged() {
        let mut log = EventLog::new();
        let before = log.bytes().to_vec();
        assert_eq!(
            log.measure_boot_config(&sample(), &mut |_, _| 0xC000_0100_0000_0000),
            Err(RtmrError::Tdcall(0xC000_0100_0000_0000))
        );
        assert_eq!(log.bytes(), &before[..]);
        assert_eq!(log.expected_rtmr(2), Some([0; 48]));
        assert_eq!(
            log.measure(4, EV_EVENT_TAG, b"x", &mut |_, _| 0),
            Err(RtmrError::Index(4))
        );
    }
}
