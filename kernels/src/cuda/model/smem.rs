//! Shared memory as the kernels use it: TMA tiles with the 128-byte swizzle, and the wgmma matrix
//! descriptors that read them back.

/// The 128-byte swizzle pattern repeats every 1024 bytes (8 rows of 128 bytes); tiles start on
/// such a boundary so the descriptors' base offset stays 0.
pub const SW128_ATOM: u32 = 1024;

/// The 128-byte swizzle as a function of the shared-memory byte address: the 16-byte chunk index
/// (bits 4..7) is XORed with the 128-byte row index modulo 8 (bits 7..10). This is
/// `CU_TENSOR_MAP_SWIZZLE_128B` for TMA writes (CUDA Driver API, "Tensor Map Object Management",
/// cuTensorMapEncodeTiled) and the 128-byte swizzling mode of wgmma descriptors (PTX ISA
/// 9.7.15.5.1.2 "Shared Memory Matrix Layout", swizzling modes); both act on the absolute address.
pub fn sw128(addr: u32) -> u32 {
    addr ^ (((addr >> 7) & 7) << 4)
}

/// Simulated shared memory of one CTA (byte addressed, starting at address 0).
#[derive(Clone, Debug)]
pub struct Smem {
    bytes: Vec<u8>,
}

impl Smem {
    /// `size` bytes, all set to 0xFF so a read of a never-written byte shows as a NaN bf16.
    pub fn new(size: usize) -> Self {
        Smem {
            bytes: vec![0xFF; size],
        }
    }

    /// Stores one bf16 (little endian, as on the GPU).
    pub fn write_bf16(&mut self, addr: u32, v: u16) {
        let a = addr as usize;
        self.bytes[a..a + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Loads one bf16.
    pub fn read_bf16(&self, addr: u32) -> u16 {
        let a = addr as usize;
        u16::from_le_bytes([self.bytes[a], self.bytes[a + 1]])
    }
}

/// A TMA tiled load of a box `rows` x 64 bf16 (inner box dimension 128 bytes, the most a 128-byte
/// swizzle allows) to `dst` (a multiple of [`SW128_ATOM`]): box element (r, c) lands at
/// `sw128(dst + 128 r + 2 c)`. `fetch(r, c)` returns the global element, or 0 where the box is out
/// of the tensor's bounds (TMA's zero fill, `CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE`).
pub fn tma_load_box_sw128(
    smem: &mut Smem,
    dst: u32,
    rows: usize,
    fetch: impl Fn(usize, usize) -> u16,
) {
    debug_assert_eq!(dst % SW128_ATOM, 0);
    for r in 0..rows {
        for c in 0..64 {
            smem.write_bf16(sw128(dst + 128 * r as u32 + 2 * c as u32), fetch(r, c));
        }
    }
}

/// Builds a 128-byte-swizzle matrix descriptor exactly as `smem_desc_sw128` in hopper.cuh
/// (PTX ISA 9.7.15.5.1.2.2 "Matrix Descriptor Format").
pub fn make_desc_sw128(addr: u32, lbo: u32, sbo: u32) -> u64 {
    u64::from((addr & 0x3FFFF) >> 4)
        | (u64::from((lbo & 0x3FFFF) >> 4) << 16)
        | (u64::from((sbo & 0x3FFFF) >> 4) << 32)
        | (1u64 << 62)
}

/// The fields of a wgmma matrix descriptor, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Start address (bits 0..14, in 16-byte units).
    pub start: u32,
    /// Leading-dimension byte offset (bits 16..30).
    pub lbo: u32,
    /// Stride-dimension byte offset (bits 32..46).
    pub sbo: u32,
    /// Base offset (bits 49..52).
    pub base_offset: u32,
    /// Swizzle mode (bits 62..64): 0 none, 1 128-byte, 2 64-byte, 3 32-byte.
    pub swizzle: u32,
}

/// Decodes a matrix descriptor (PTX ISA 9.7.15.5.1.2.2 "Matrix Descriptor Format").
pub fn decode_desc(d: u64) -> Desc {
    Desc {
        start: ((d & 0x3FFF) << 4) as u32,
        lbo: (((d >> 16) & 0x3FFF) << 4) as u32,
        sbo: (((d >> 32) & 0x3FFF) << 4) as u32,
        base_offset: ((d >> 49) & 7) as u32,
        swizzle: ((d >> 62) & 3) as u32,
    }
}

/// Address wgmma reads for element (mn, k), k < 16, of a K-major operand (A, or B with
/// trans-b = 0) under a 128-byte-swizzle descriptor. PTX ISA 9.7.15.5.1.2.1.3 "Canonical
/// Layouts", K-major 128B: `Swizzle<3,4,3> o ((8,m),(T,2k)):((8T,SBO),(1,T))` (T = 8 bf16):
/// rows of 128 bytes hold 64 consecutive K elements; 8-row core groups are SBO bytes apart; the
/// LBO is unused ("assumed 1") for swizzled K-major layouts.
pub fn kmajor_addr(desc: &Desc, mn: usize, k: usize) -> u32 {
    debug_assert!(desc.swizzle == 1 && desc.base_offset == 0 && k < 16);
    sw128(desc.start + (mn / 8) as u32 * desc.sbo + (mn % 8) as u32 * 128 + 2 * k as u32)
}

/// Address wgmma reads for element (k, n), k < 16, of an MN-major operand (B with trans-b = 1)
/// under a 128-byte-swizzle descriptor. Same section, MN-major 128B:
/// `Swizzle<3,4,3> o ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO))`: rows of 128 bytes hold 64
/// consecutive N elements for one k; consecutive k are 128 bytes apart, 8-k groups SBO bytes
/// apart, and each further 64 N elements LBO bytes on (9.7.15.5.1.2.1.1/2: for swizzled MN-major
/// layouts the LBO steps across MN, the SBO across K).
pub fn mnmajor_addr(desc: &Desc, k: usize, n: usize) -> u32 {
    debug_assert!(desc.swizzle == 1 && desc.base_offset == 0 && k < 16);
    sw128(
        desc.start
            + (n / 64) as u32 * desc.lbo
            + (k / 8) as u32 * desc.sbo
            + (k % 8) as u32 * 128
            + 2 * (n % 64) as u32,
    )
}
