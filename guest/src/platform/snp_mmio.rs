//! SEV-SNP device MMIO through the GHCB (GHCB spec 56421 §4.1.5, SW_EXITCODE MMIO_READ
//! 0x8000_0001 / MMIO_WRITE 0x8000_0002: SW_EXITINFO1 = GPA, SW_EXITINFO2 = size, SW_SCRATCH =
//! GPA of the data in the GHCB's shared buffer).

/// One MMIO access under SNP; see `arch::mmio`.
pub fn access(addr: u64, size: u64, write: bool, value: u64) -> u64 {
    crate::platform::snp::mmio(addr, size, write, value)
}
