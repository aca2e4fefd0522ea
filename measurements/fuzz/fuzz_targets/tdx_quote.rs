//! Fuzzes TDX quote parsing and verification against the real collateral.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pupa_measurements::verify::{tdx, MeasurementPolicy, Policy};

const COLLATERAL: &[u8] = include_bytes!("../../testdata/evidence/tdx_quote_collateral.json");

fuzz_target!(|data: &[u8]| {
    static C: OnceLock<dcap_qvl::QuoteCollateralV3> = OnceLock::new();
    let c = C.get_or_init(|| tdx::parse_collateral(COLLATERAL).expect("sample collateral"));
    let policy = Policy { measurement: MeasurementPolicy::Any, ..Policy::default() };
    let _ = tdx::parse_quote(data);
    let _ = tdx::verify(data, c, 1_751_328_000, &policy);
});
