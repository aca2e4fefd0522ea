//! Fuzzes NVIDIA RIM verification (`verify::gpu::rim::verify_rim`: XML parse with DTDs
//! refused, C14N, XML-DSig, the certificate chain) with the pinned RIM root, at a time inside
//! the sample RIMs' validity, so that inputs close to a real RIM reach the signature checks.
//! Seeds: ../testdata/gpu-rim/*.swidtag (NVIDIA/nvtrust, see ../testdata/gpu-rim/SOURCE).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_measurements::verify::gpu::rim::verify_rim;

const RIM_ROOT: &[u8] = include_bytes!("../../testdata/gpu-rim/verifier_RIM_root.pem");
/// 2024-03-01T00:00:00Z.
const NOW: i64 = 1_709_251_200;

fuzz_target!(|data: &[u8]| {
    if let Ok(now) = time::OffsetDateTime::from_unix_timestamp(NOW) {
        let _ = verify_rim(data, RIM_ROOT, now);
    }
});
