//! Fuzzes the GPU attestation-report parser (hex text or binary SPDM request + response) and,
//! for inputs that parse, the whole GPU verifier with NVIDIA's real 2023 chain; also the PEM
//! chain parser on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_measurements::verify::gpu::{certs, spdm, verify_gpu_report};

const CHAIN: &[u8] = include_bytes!("../../testdata/gpu/hopper-2023/gpuAkCertChain.txt");

fuzz_target!(|data: &[u8]| {
    let _ = certs::parse_pem_chain(data);
    if let Ok(report) = spdm::parse_report(data) {
        let _ = (report.driver_version(), report.vbios_version(), report.measurement_counts());
        let now = time::OffsetDateTime::from_unix_timestamp(1_709_251_200).unwrap(); // 2024-03-01
        let _ = verify_gpu_report(data, CHAIN, &report.request.nonce, now);
    }
});
