//! Fuzzes decoding and verification of dev evidence (postcard `Evidence`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_measurements::verify::{dev, MeasurementPolicy, Policy};

fuzz_target!(|data: &[u8]| {
    let policy = Policy { measurement: MeasurementPolicy::Any, allow_insecure_dev: true, ..Policy::default() };
    if let Ok(ev) = dev::decode_evidence(data) {
        let _ = dev::verify(&ev, &policy);
    }
});
