//! Fuzzes the OVMF footer-table / ASEV / TDVF parser and everything that consumes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_measurements::snp::{self, CpuType, SnpConfig, VmmType};
use pupa_measurements::{tdx, Firmware};

fn exercise(bytes: &[u8]) {
    let Ok(fw) = Firmware::parse(bytes) else { return };
    let _ = fw.describe();
    for vmm in [VmmType::Qemu, VmmType::Ec2, VmmType::Gce] {
        let cfg = SnpConfig { vmm, ..SnpConfig::new(2, CpuType::Milan) };
        let _ = snp::launch_digest(&fw, &cfg);
    }
    let kh = snp::KernelHashes::new(b"k", None, Some("x"));
    let _ = snp::launch_digest(&fw, &SnpConfig { kernel_hashes: Some(kh), ..SnpConfig::new(1, CpuType::Epyc) });
    let _ = tdx::mrtd(&fw, tdx::Order::Single);
    let _ = tdx::mrtd(&fw, tdx::Order::TwoPass);
}

fuzz_target!(|data: &[u8]| {
    // As given (most inputs fail the size checks)...
    exercise(data);
    // ...and zero-padded at the front to a page multiple: every offset in the format counts
    // from the end of the image, so this keeps the fuzzer's table structure intact.
    let pad = (4096 - data.len() % 4096) % 4096;
    if pad != 0 && data.len() < 64 * 1024 {
        let mut v = vec![0u8; pad];
        v.extend_from_slice(data);
        exercise(&v);
    }
});
