//! Fuzzes SNP report loading/parsing and verification (with the real VCEK, or a fuzzed one after
//! the first 1184 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_measurements::verify::{snp, MeasurementPolicy, Policy};

const VCEK: &[u8] = include_bytes!("../../testdata/evidence/vcek_milan.der");
/// 2025-07-01T00:00:00Z, inside the VCEK's validity window.
const NOW: u64 = 1_751_328_000;

fuzz_target!(|data: &[u8]| {
    let policy = Policy { measurement: MeasurementPolicy::Any, ..Policy::default() };
    let _ = snp::load_report(data);
    let _ = snp::parse_vcek(data);
    if data.len() >= snp::REPORT_LEN {
        let (report, rest) = data.split_at(snp::REPORT_LEN);
        let vcek = if rest.is_empty() { VCEK } else { rest };
        let _ = snp::verify(report, Some(vcek), NOW, &policy);
    } else {
        let _ = snp::verify(data, Some(VCEK), NOW, &policy);
    }
});
