//! The SEV-SNP attestation report (SEV-SNP Firmware ABI spec 56860, §7.3 Table 23
//! "ATTESTATION_REPORT Structure"; signature format Table 139 "ECDSA Signature Format"; Linux
//! `struct snp_report`, virtee/sev `AttestationReport`).
//!
//! Versions 2 to 5 share this 1184-byte layout; version 3 fills CPUID_FAM/MOD/STEP, version 5
//! the mitigation vectors. The TCB fields are the raw 64-bit TCB_VERSION: its byte layout
//! depends on the processor generation (Milan/Genoa: boot loader 0, TEE 1, SNP 6, microcode 7;
//! Turin adds FMC at 0 and moves the others), so decoding it is left to the verifier.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// An ECDSA P-384 signature (Table 139): R and S, each 72 bytes little-endian (the upper 24
/// bytes zero), then reserved to 512 bytes.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct EcdsaSignature {
    /// 0x00 R.
    pub r: [u8; 72],
    /// 0x48 S.
    pub s: [u8; 72],
    /// 0x90 reserved.
    pub _reserved: [u8; 512 - 144],
}

/// ATTESTATION_REPORT (Table 23).
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct AttestationReport {
    /// 0x000 VERSION (2 or later for this layout).
    pub version: U32,
    /// 0x004 GUEST_SVN.
    pub guest_svn: U32,
    /// 0x008 POLICY (guest policy, §4.3 Table 9; bit 19 DEBUG, bit 18 MIGRATE_MA).
    pub policy: U64,
    /// 0x010 FAMILY_ID.
    pub family_id: [u8; 16],
    /// 0x020 IMAGE_ID.
    pub image_id: [u8; 16],
    /// 0x030 VMPL the report was requested at.
    pub vmpl: U32,
    /// 0x034 SIGNATURE_ALGO (1: ECDSA P-384 with SHA-384).
    pub signature_algo: U32,
    /// 0x038 CURRENT_TCB.
    pub current_tcb: U64,
    /// 0x040 PLATFORM_INFO.
    pub platform_info: U64,
    /// 0x048 AUTHOR_KEY_EN (bit 0), MASK_CHIP_KEY (bit 1), SIGNING_KEY (bits 4:2).
    pub key_info: U32,
    /// 0x04C reserved.
    pub _reserved_04c: U32,
    /// 0x050 REPORT_DATA (guest-provided).
    pub report_data: [u8; 64],
    /// 0x090 MEASUREMENT (the launch digest).
    pub measurement: [u8; 48],
    /// 0x0C0 HOST_DATA.
    pub host_data: [u8; 32],
    /// 0x0E0 ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// 0x110 AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// 0x140 REPORT_ID.
    pub report_id: [u8; 32],
    /// 0x160 REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// 0x180 REPORTED_TCB.
    pub reported_tcb: U64,
    /// 0x188 CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (version 3 and later).
    pub cpuid_fms: [u8; 3],
    /// 0x18B reserved.
    pub _reserved_18b: [u8; 21],
    /// 0x1A0 CHIP_ID (zero when MASK_CHIP_ID is set).
    pub chip_id: [u8; 64],
    /// 0x1E0 COMMITTED_TCB.
    pub committed_tcb: U64,
    /// 0x1E8 CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR, reserved.
    pub current_version: [u8; 4],
    /// 0x1EC COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR, reserved.
    pub committed_version: [u8; 4],
    /// 0x1F0 LAUNCH_TCB.
    pub launch_tcb: U64,
    /// 0x1F8 LAUNCH_MIT_VECTOR (version 5).
    pub launch_mit_vector: U64,
    /// 0x200 CURRENT_MIT_VECTOR (version 5).
    pub current_mit_vector: U64,
    /// 0x208 reserved.
    pub _reserved_208: [u8; 0x2A0 - 0x208],
    /// 0x2A0 SIGNATURE over bytes 0x000–0x29F.
    pub signature: EcdsaSignature,
}

/// Size of the attestation report.
pub const REPORT_LEN: usize = 1184;
/// The bytes the signature covers: [0, SIGNED_LEN).
pub const SIGNED_LEN: usize = core::mem::offset_of!(AttestationReport, signature);
/// POLICY bit 19: debugging allowed.
pub const POLICY_DEBUG: u64 = 1 << 19;
/// POLICY bit 18: a migration agent may be associated.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// SIGNATURE_ALGO of ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

impl AttestationReport {
    /// KEY_INFO.SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none.
    pub fn signing_key(&self) -> u32 {
        (self.key_info.get() >> 2) & 7
    }
    /// KEY_INFO.MASK_CHIP_KEY.
    pub fn mask_chip_key(&self) -> bool {
        self.key_info.get() & 2 != 0
    }
    /// KEY_INFO.AUTHOR_KEY_EN.
    pub fn author_key_en(&self) -> bool {
        self.key_info.get() & 1 != 0
    }
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<EcdsaSignature>() == 512);
    assert!(offset_of!(EcdsaSignature, s) == 0x48);
    assert!(size_of::<AttestationReport>() == REPORT_LEN);
    assert!(offset_of!(AttestationReport, guest_svn) == 0x004);
    assert!(offset_of!(AttestationReport, policy) == 0x008);
    assert!(offset_of!(AttestationReport, family_id) == 0x010);
    assert!(offset_of!(AttestationReport, image_id) == 0x020);
    assert!(offset_of!(AttestationReport, vmpl) == 0x030);
    assert!(offset_of!(AttestationReport, signature_algo) == 0x034);
    assert!(offset_of!(AttestationReport, current_tcb) == 0x038);
    assert!(offset_of!(AttestationReport, platform_info) == 0x040);
    assert!(offset_of!(AttestationReport, key_info) == 0x048);
    assert!(offset_of!(AttestationReport, report_data) == 0x050);
    assert!(offset_of!(AttestationReport, measurement) == 0x090);
    assert!(offset_of!(AttestationReport, host_data) == 0x0C0);
    assert!(offset_of!(AttestationReport, id_key_digest) == 0x0E0);
    assert!(offset_of!(AttestationReport, author_key_digest) == 0x110);
    assert!(offset_of!(AttestationReport, report_id) == 0x140);
    assert!(offset_of!(AttestationReport, report_id_ma) == 0x160);
    assert!(offset_of!(AttestationReport, reported_tcb) == 0x180);
    assert!(offset_of!(AttestationReport, cpuid_fms) == 0x188);
    assert!(offset_of!(AttestationReport, chip_id) == 0x1A0);
    assert!(offset_of!(AttestationReport, committed_tcb) == 0x1E0);
    assert!(offset_of!(AttestationReport, current_version) == 0x1E8);
    assert!(offset_of!(AttestationReport, committed_version) == 0x1EC);
    assert!(offset_of!(AttestationReport, launch_tcb) == 0x1F0);
    assert!(offset_of!(AttestationReport, launch_mit_vector) == 0x1F8);
    assert!(offset_of!(AttestationReport, current_mit_vector) == 0x200);
    assert!(SIGNED_LEN == 0x2A0);
};
