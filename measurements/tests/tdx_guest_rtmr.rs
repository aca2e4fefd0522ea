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
