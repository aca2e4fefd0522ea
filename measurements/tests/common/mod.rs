//! A small builder of synthetic OVMF-format images for tests, written from the format
//! description (edk2 ResetVectorVtf0.asm / OvmfSevMetadata.asm, TDVF design guide), not from
//! the parser under test.
#![allow(dead_code)]

use pupa_measurements::guid::{self, Guid};

/// One TDVF section as written into the descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Tdvf {
    pub data_offset: u32,
    pub raw_size: u32,
    pub gpa: u64,
    pub mem_size: u64,
    pub kind: u32,
    pub attributes: u32,
}

/// Description of an image to synthesize.
pub struct Synth {
    /// Total size in bytes.
    pub size: usize,
    /// Extra table entries (GUID, data), listed nearest-the-footer first.
    pub entries: Vec<(Guid, Vec<u8>)>,
    /// `ASEV` sections (gpa, size, type); `None` = no SEV metadata entry.
    pub asev: Option<Vec<(u32, u32, u32)>>,
    /// TDVF sections; `None` = no TDX metadata entry.
    pub tdvf: Option<Vec<Tdvf>>,
    /// AP reset address for the SEV-ES reset block; `None` = no block.
    pub reset_eip: Option<u32>,
    /// Seed for the body bytes.
    pub seed: u64,
}

impl Synth {
    pub fn new(size: usize) -> Self {
        Synth {
            size,
            entries: vec![],
            asev: None,
            tdvf: None,
            reset_eip: Some(0xfff0_1000),
            seed: 1,
        }
    }

    /// Builds the image. Metadata blocks go at fixed offsets from the end: ASEV at end−0x800,
    /// TDVF at end−0x600; the table sits just below the 0x20-byte reset-vector tail.
    pub fn build(&self) -> Vec<u8> {
        let mut img = vec![0u8; self.size];
        // Deterministic pseudo-random body (xorshift64*), so every page hashes differently.
        let mut x = self.seed | 1;
        for b in img.iter_mut() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        let n = self.size;
        let mut entries: Vec<(Guid, Vec<u8>)> = Vec::new();
        if let Some(eip) = self.reset_eip {
            let mut d = eip.to_le_bytes().to_vec();
            d.extend_from_slice(&[0; 2]);
            entries.push((guid::SEV_ES_RESET_BLOCK, d));
        }
        if let Some(secs) = &self.asev {
            let at = n - 0x800;
            let mut blk = b"ASEV".to_vec();
            blk.extend_from_slice(&(16 + 12 * secs.len() as u32).to_le_bytes());
            blk.extend_from_slice(&1u32.to_le_bytes());
            blk.extend_from_slice(&(secs.len() as u32).to_le_bytes());
            for (g, s, t) in secs {
                for v in [g, s, t] {
                    blk.extend_from_slice(&v.to_le_bytes());
                }
            }
            img[at..at + blk.len()].copy_from_slice(&blk);
            entries.push((guid::SEV_METADATA, 0x800u32.to_le_bytes().to_vec()));
        }
        if let Some(secs) = &self.tdvf {
            let at = n - 0x600;
            let mut blk = b"TDVF".to_vec();
            blk.extend_from_slice(&(16 + 32 * secs.len() as u32).to_le_bytes());
            blk.extend_from_slice(&1u32.to_le_bytes());
            blk.extend_from_slice(&(secs.len() as u32).to_le_bytes());
            for s in secs {
                blk.extend_from_slice(&s.data_offset.to_le_bytes());
                blk.extend_from_slice(&s.raw_size.to_le_bytes());
                blk.extend_from_slice(&s.gpa.to_le_bytes());
                blk.extend_from_slice(&s.mem_size.to_le_bytes());
                blk.extend_from_slice(&s.kind.to_le_bytes());
                blk.extend_from_slice(&s.attributes.to_le_bytes());
            }
            img[at..at + blk.len()].copy_from_slice(&blk);
            entries.push((guid::TDX_METADATA_OFFSET, 0x600u32.to_le_bytes().to_vec()));
        }
        entries.extend(self.entries.iter().cloned());
        // Serialize: the first entry sits right below the footer entry.
        let mut table = Vec::new();
        for (g, d) in entries.iter().rev() {
            table.extend_from_slice(d);
            table.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
            table.extend_from_slice(g.as_bytes());
        }
        table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(guid::OVMF_TABLE_FOOTER.as_bytes());
        let end = n - 0x20;
        img[end - table.len()..end].copy_from_slice(&table);
        img
    }
}

/// A pupa-like layout: SNP_SEC_MEM, SECRETS, CPUID; TDVF BFV (whole image, MR.EXTEND),
/// TD_HOB, TEMP_MEM.
pub fn pupa_like(size: usize) -> Synth {
    let mut s = Synth::new(size);
    s.asev = Some(vec![
        (0x0080_0000, 0x9000, 1),
        (0x0080_9000, 0x1000, 2),
        (0x0080_a000, 0x1000, 3),
        (0x0080_b000, 0x5000, 1),
    ]);
    s.tdvf = Some(vec![
        Tdvf {
            data_offset: 0,
            raw_size: size as u32,
            gpa: (1u64 << 32) - size as u64,
            mem_size: size as u64,
            kind: 0,
            attributes: 1,
        },
        Tdvf {
            data_offset: 0,
            raw_size: 0,
            gpa: 0x10_0000,
            mem_size: 0x2000,
            kind: 2,
            attributes: 0,
        },
        Tdvf {
            data_offset: 0,
            raw_size: 0,
            gpa: 0,
            mem_size: 0xa_0000,
            kind: 3,
            attributes: 0,
        },
    ]);
    s
}
