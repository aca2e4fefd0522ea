//! EFI GUIDs as they are stored in firmware images.
//!
//! UEFI stores a GUID as `u32 ‖ u16 ‖ u16 ‖ [u8; 8]` with the three integers little-endian
//! (UEFI Specification 2.10, Appendix A "GUID and Time Formats"). The canonical text form
//! prints those integers big-endian, so the first three groups appear byte-swapped relative
//! to the stored bytes ("mixed-endian").

use core::fmt;
use core::str::FromStr;

/// A GUID, held in its on-disk (mixed-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

/// Error returned when a GUID string is not of the form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx): {0:?}")]
pub struct GuidParseError(pub String);

impl Guid {
    /// Builds a GUID from its canonical fields (`d1-d2-d3-d4[0..2]-d4[2..8]`).
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// The 16 bytes as stored in the firmware image.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let d2 = u16::from_le_bytes([b[4], b[5]]);
        let d3 = u16::from_le_bytes([b[6], b[7]]);
        write!(f, "{d1:08x}-{d2:04x}-{d3:04x}-{:02x}{:02x}-", b[8], b[9])?;
        for x in &b[10..16] {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GuidParseError(s.to_owned());
        let parts: Vec<&str> = s.split('-').collect();
        let lens = [8usize, 4, 4, 4, 12];
        if parts.len() != 5 || parts.iter().zip(lens).any(|(p, l)| p.len() != l) {
            return Err(err());
        }
        let d1 = u32::from_str_radix(parts[0], 16).map_err(|_| err())?;
        let d2 = u16::from_str_radix(parts[1], 16).map_err(|_| err())?;
        let d3 = u16::from_str_radix(parts[2], 16).map_err(|_| err())?;
        let tail =
            crate::hexfmt::decode(&format!("{}{}", parts[3], parts[4])).map_err(|_| err())?;
        let mut d4 = [0u8; 8];
        d4.copy_from_slice(&tail);
        Ok(Guid::from_fields(d1, d2, d3, d4))
    }
}

/// Footer GUID of the OVMF GUIDed table (`OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`).
pub const OVMF_TABLE_FOOTER: Guid = Guid::from_fields(
    0x96b582de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// SEV metadata offset (`ASEV` block), edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`.
pub const SEV_METADATA: Guid = Guid::from_fields(
    0xdc886566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
/// SEV-ES reset block: the AP reset address (`SEV_ES_RESET_BLOCK_GUID`).
pub const SEV_ES_RESET_BLOCK: Guid = Guid::from_fields(
    0x00f771de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// SEV hash table GPA and size (`SEV_HASH_TABLE_RV_GUID`).
pub const SEV_HASH_TABLE_RV: Guid = Guid::from_fields(
    0x7255371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// SEV secret block GPA and size (`SEV_SECRET_GUID`).
pub const SEV_SECRET_BLOCK: Guid = Guid::from_fields(
    0x4c2eb361,
    0x7d9b,
    0x4cc3,
    [0x80, 0x81, 0x12, 0x7c, 0x90, 0xd3, 0xd2, 0x94],
);
/// TDX metadata offset (`TDVF` descriptor), QEMU `hw/i386/tdvf.c` / TDVF design guide.
pub const TDX_METADATA_OFFSET: Guid = Guid::from_fields(
    0xe47a6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// A human name for the GUIDs this crate knows, for tables.
pub fn known_name(g: &Guid) -> Option<&'static str> {
    Some(match *g {
        OVMF_TABLE_FOOTER => "OVMF table footer",
        SEV_METADATA => "SEV metadata (ASEV)",
        SEV_ES_RESET_BLOCK => "SEV-ES reset block",
        SEV_HASH_TABLE_RV => "SEV hash table",
        SEV_SECRET_BLOCK => "SEV secret block",
        TDX_METADATA_OFFSET => "TDX metadata (TDVF)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_roundtrip_and_byte_order() {
        let s = "96b582de-1fb2-45f7-baea-a366c55a082d";
        let g: Guid = s.parse().unwrap();
        assert_eq!(g, OVMF_TABLE_FOOTER);
        assert_eq!(g.to_string(), s);
        // Stored order: first three groups little-endian (bytes as Python's uuid.bytes_le).
        assert_eq!(
            crate::hexfmt::encode(g.as_bytes()),
            "de82b596b21ff745baeaa366c55a082d"
        );
        assert!("96b582de-1fb2-45f7-baea-a366c55a082"
            .parse::<Guid>()
            .is_err());
        assert!("96b582de-1fb2-45f7-baea+a366c55a082d"
            .parse::<Guid>()
            .is_err());
        assert!("g6b582de-1fb2-45f7-baea-a366c55a082d"
            .parse::<Guid>()
            .is_err());
    }
}
