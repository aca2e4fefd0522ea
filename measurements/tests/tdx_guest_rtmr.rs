//! The guest's RTMR[2] event log (pupa_guest::tdx::rtmr) replayed with the host's CCEL parser
//! (pupa_measurements::eventlog): both sides written independently from the TCG PC Client PFP
//! spec; the replay must give the RTMR value the guest expects the TDX module to hold.

use pupa_guest::tdx::rtmr::{BootConfig, EventLog, BOOT_CONFIG_RTMR, EV_EVENT_TAG, PUPA_TAG_ID};
use pupa_guest::tee::TeeKind;
use pupa_measurements::eventlog;

fn config(ram: u64) -> BootConfig {
    BootConfig {
        image_sha384: [0x42; 48],
        tee: TeeKind::Tdx,
        gpaw: 48,
        td_attributes: 1 << 28,
        num_vcpus: 1,
        max_vcpus: 1,
        ram_bytes: ram,
        accepted_bytes: ram - (8 << 20),
    }
}

#[test]
fn host_replay_of_guest_log_gives_the_guest_rtmr() {
    let mut log = EventLog::new();
    // What the TDX module would do on each TDG.MR.RTMR.EXTEND, kept independently.
    let mut module = [[0u8; 48]; 4];
    let mut extend = |i: u8, d: &[u8; 48]| {
        use sha2::{Digest, Sha384};
        let mut h = Sha384::new();
        h.update(module[i as usize]);
        h.update(d);
        module[i as usize] = h.finalize().into();
        0u64
    };
    log.measure_boot_config(&config(1 << 30), &mut extend)
        .unwrap();
    log.measure(3, EV_EVENT_TAG, b"run-time event", &mut extend)
        .unwrap();

    let parsed = eventlog::parse(log.bytes()).unwrap();
    assert_eq!(parsed.algorithms, vec![(0x000C, 48)]);
    assert_eq!(parsed.events.len(), 2);
    let ev = &parsed.events[0];
    assert_eq!(
        (ev.mr_index, ev.event_type),
        (BOOT_CONFIG_RTMR as u32 + 1, EV_EVENT_TAG)
    );
    assert_eq!(ev.data[0..4], PUPA_TAG_ID.to_le_bytes());
    assert_eq!(BootConfig::decode(&ev.data[8..]), Some(config(1 << 30)));

    let rtmrs = eventlog::replay(log.bytes()).unwrap();
    assert_eq!(rtmrs, module);
    for (i, r) in rtmrs.iter().enumerate() {
        assert_eq!(Some(*r), log.expected_rtmr(i));
    }
    assert_eq!(rtmrs[0], [0; 48]);
    assert_ne!(rtmrs[2], [0; 48]);

    // A different configuration gives a different RTMR[2].
    let mut other = EventLog::new();
    other
        .measure_boot_config(&config(2 << 30), &mut |_, _| 0)
        .unwrap();
    assert_ne!(eventlog::replay(other.bytes()).unwrap()[2], rtmrs[2]);
}

/// The real dcap-qvl v4 sample quote with its TD report's RTMRs replaced by `rtmrs` (TDX DCAP
/// quote §A.3: header 48 bytes; in the TD report, TEE_TCB_SVN .. MROWNERCONFIG take 328 bytes,
/// then RTMR[0..4]); as version 5, the 6-byte body descriptor (type 2 = TD report 1.0, size
/// 584) follows the header. The signature no longer matches, which the log check does not read
/// (`tdx::verify` does).
fn quote_with(rtmrs: &[[u8; 48]; 4], version: u16) -> Vec<u8> {
    const SAMPLE: &[u8] = include_bytes!("../testdata/evidence/tdx_quote");
    let mut q = SAMPLE.to_vec();
    let body = if version == 5 {
        let mut desc = 2u16.to_le_bytes().to_vec();
        desc.extend_from_slice(&584u32.to_le_bytes());
        q.splice(48..48, desc);
        54
    } else {
        48
    };
    q[..2].copy_from_slice(&version.to_le_bytes());
    for (i, r) in rtmrs.iter().enumerate() {
        q[body + 328 + 48 * i..][..48].copy_from_slice(r);
    }
    q
}

#[test]
fn verifier_replays_the_guest_log_against_the_quoted_rtmrs() {
    use pupa_measurements::verify::evidence::check_rtmr_log;
    let mut log = EventLog::new();
    let mut module = [[0u8; 48]; 4];
    log.measure_boot_config(&config(1 << 30), &mut |i, d| {
        use sha2::{Digest, Sha384};
        let mut h = Sha384::new();
        h.update(module[i as usize]);
        h.update(d);
        module[i as usize] = h.finalize().into();
        0
    })
    .unwrap();
    for v in [4, 5] {
        let ok = check_rtmr_log(&quote_with(&module, v), log.bytes()).unwrap();
        assert!(ok.starts_with("1 events replay"), "{ok}");
    }
    // The quote says another configuration was measured: named mismatch on RTMR[2].
    let mut other = module;
    other[2][0] ^= 1;
    let err = check_rtmr_log(&quote_with(&other, 4), log.bytes()).unwrap_err();
    assert!(err.starts_with("RTMR[2] replays to"), "{err}");
    // An event the quote does not hold (RTMR[1] non-zero in the quote, nothing logged).
    let mut extra = module;
    extra[1] = [7; 48];
    assert!(check_rtmr_log(&quote_with(&extra, 4), log.bytes())
        .unwrap_err()
        .starts_with("RTMR[1]"));
    // Garbage log, truncated quote, unknown version.
    assert!(check_rtmr_log(&quote_with(&module, 4), b"garbage")
        .unwrap_err()
        .starts_with("event log:"));
    assert!(check_rtmr_log(&quote_with(&module, 4)[..400], log.bytes()).is_err());
    assert!(check_rtmr_log(&quote_with(&module, 3), log.bytes()).is_err());
}
