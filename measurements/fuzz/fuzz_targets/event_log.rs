//! Fuzzes the CCEL / TCG crypto-agile event-log parser and RTMR replay.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupa_measurements::eventlog;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = eventlog::parse(data) {
        let _ = eventlog::replay_rtmrs(&log);
    }
});
