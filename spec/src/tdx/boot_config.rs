//! pupa's TDX boot-configuration record: the data of the one event the firmware measures into
//! RTMR[2] at boot (`pupa_guest::tdx::rtmr`) and the verifier decodes from the event log
//! (`pupa_measurements::verify::tdx`).
//!
//! The event is a TCG `TCG_PCClientTaggedEvent` (TCG PC Client Platform Firmware Profile spec
//! §10.4.1, event type EV_EVENT_TAG) `{u32 taggedEventID = "PUPA", u32 taggedEventDataSize,
//! taggedEventData}` whose data is [`BootConfigRecord`]: a domain string, then fixed-size
//! little-endian fields, no padding (106 bytes; 114 with the tag header). The event's digest in
//! the log is SHA-384 of the whole tagged event, extended into RTMR[2] by TDG.MR.RTMR.EXTEND.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The RTMR the record is extended into (TDG.MR.RTMR.EXTEND index; CCEL index 3).
pub const BOOT_CONFIG_RTMR: u8 = 2;
/// EV_EVENT_TAG (PFP spec Table 9): the event type of the record.
pub const EV_EVENT_TAG: u32 = 0x6;
/// taggedEventID of the record: "PUPA" little-endian.
pub const PUPA_TAG_ID: u32 = u32::from_le_bytes(*b"PUPA");
/// The domain string that opens the record (version 1 of this layout).
pub const BOOT_CONFIG_DOMAIN: &[u8; 24] = b"pupa/tdx-boot-config/v1\0";
/// Size of [`BootConfigRecord`].
pub const BOOT_CONFIG_LEN: usize = 106;
/// Size of [`BootConfigEvent`] (the event data in the log).
pub const BOOT_CONFIG_EVENT_LEN: usize = 8 + BOOT_CONFIG_LEN;

/// Values of [`BootConfigRecord::tee`].
pub mod tee_code {
    /// No TEE (a plain VM: `TeeKind::Dev`).
    pub const NONE: u8 = 0;
    /// AMD SEV-SNP.
    pub const SNP: u8 = 1;
    /// Reserved (AMD SEV or SEV-ES without SNP in the first layout): never recorded, since
    /// such a guest terminates before it measures anything; decoders refuse it.
    pub const SEV_WITHOUT_SNP: u8 = 2;
    /// Intel TDX (the only value a TD measures).
    pub const TDX: u8 = 3;
}

/// The boot configuration the TD saw: what the VMM chose at launch and the guest accepted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct BootConfigRecord {
    /// [`BOOT_CONFIG_DOMAIN`].
    pub domain: [u8; 24],
    /// SHA-384 of the firmware image as the guest hashed its own ROM (the `image.sha384` of the
    /// image's manifest).
    pub image_sha384: [u8; 48],
    /// The TEE the guest detected ([`tee_code`]).
    pub tee: u8,
    /// GPAW from TDG.VP.INFO (48 or 52).
    pub gpaw: u8,
    /// TD ATTRIBUTES from TDG.VP.INFO.
    pub td_attributes: U64,
    /// NUM_VCPUS from TDG.VP.INFO.
    pub num_vcpus: U32,
    /// MAX_VCPUS from TDG.VP.INFO.
    pub max_vcpus: U32,
    /// RAM in the TD HOB (accepted at launch plus unaccepted), bytes.
    pub ram_bytes: U64,
    /// Bytes the guest accepted at boot (TDG.MEM.PAGE.ACCEPT).
    pub accepted_bytes: U64,
}

/// The event data in the log: the tagged-event header and the record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct BootConfigEvent {
    /// taggedEventID: [`PUPA_TAG_ID`].
    pub tagged_event_id: U32,
    /// taggedEventDataSize: [`BOOT_CONFIG_LEN`].
    pub tagged_event_data_size: U32,
    /// taggedEventData.
    pub record: BootConfigRecord,
}

const _: () = {
    assert!(core::mem::size_of::<BootConfigRecord>() == BOOT_CONFIG_LEN);
    assert!(core::mem::size_of::<BootConfigEvent>() == BOOT_CONFIG_EVENT_LEN);
    assert!(core::mem::offset_of!(BootConfigRecord, image_sha384) == 24);
    assert!(core::mem::offset_of!(BootConfigRecord, tee) == 72);
    assert!(core::mem::offset_of!(BootConfigRecord, gpaw) == 73);
    assert!(core::mem::offset_of!(BootConfigRecord, td_attributes) == 74);
    assert!(core::mem::offset_of!(BootConfigRecord, num_vcpus) == 82);
    assert!(core::mem::offset_of!(BootConfigRecord, max_vcpus) == 86);
    assert!(core::mem::offset_of!(BootConfigRecord, ram_bytes) == 90);
    assert!(core::mem::offset_of!(BootConfigRecord, accepted_bytes) == 98);
    assert!(core::mem::offset_of!(BootConfigEvent, record) == 8);
};

/// Why event data is not a boot-configuration event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootConfigError {
    /// The data is not [`BOOT_CONFIG_EVENT_LEN`] bytes.
    Length(usize),
    /// taggedEventID is not "PUPA".
    TagId(u32),
    /// taggedEventDataSize is not [`BOOT_CONFIG_LEN`].
    TagSize(u32),
    /// The record does not open with [`BOOT_CONFIG_DOMAIN`] (another layout version).
    Domain,
}

impl core::fmt::Display for BootConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Length(n) => write!(
                f,
                "boot-config event data is {n} bytes, want {BOOT_CONFIG_EVENT_LEN}"
            ),
            Self::TagId(id) => write!(f, "tagged event id {id:#010x}, want \"PUPA\""),
            Self::TagSize(n) => write!(f, "tagged event data size {n}, want {BOOT_CONFIG_LEN}"),
            Self::Domain => write!(f, "record does not open with \"pupa/tdx-boot-config/v1\""),
        }
    }
}

impl BootConfigEvent {
    /// The event data for `record` (with its tag header).
    pub fn new(record: BootConfigRecord) -> Self {
        Self {
            tagged_event_id: U32::new(PUPA_TAG_ID),
            tagged_event_data_size: U32::new(BOOT_CONFIG_LEN as u32),
            record,
        }
    }

    /// Whether `data` opens with pupa's tag id (a pupa tagged event, of whatever length).
    pub fn is_pupa_tagged(data: &[u8]) -> bool {
        data.get(..4) == Some(&PUPA_TAG_ID.to_le_bytes()[..])
    }

    /// Decodes event data: exact length, tag id, tag size and domain checked.
    pub fn decode(data: &[u8]) -> Result<Self, BootConfigError> {
        let ev = Self::read_from_bytes(data).map_err(|_| BootConfigError::Length(data.len()))?;
        if ev.tagged_event_id.get() != PUPA_TAG_ID {
            return Err(BootConfigError::TagId(ev.tagged_event_id.get()));
        }
        if ev.tagged_event_data_size.get() != BOOT_CONFIG_LEN as u32 {
            return Err(BootConfigError::TagSize(ev.tagged_event_data_size.get()));
        }
        if &ev.record.domain != BOOT_CONFIG_DOMAIN {
            return Err(BootConfigError::Domain);
        }
        Ok(ev)
    }
}
