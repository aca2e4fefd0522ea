//! CCEL event-log parsing and RTMR replay.
//!
//! Real data: a TDX CCEL log from Phala-Network/dstack with dstack's own parse of it (see
//! testdata/SOURCE); our events must equal theirs and our RTMRs must equal a replay of their
//! digests. Synthetic logs cover multi-algorithm records and every error.

use pupa_measurements::eventlog::{self, EventLogError, EV_NO_ACTION};
use pupa_measurements::hexfmt;
use sha2::{Digest, Sha384};

fn testdata(p: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// RTMR[i] = SHA-384(RTMR[i] ‖ digest), from zero (TDG.MR.RTMR.EXTEND semantics).
fn replay_reference(events: &[(usize, Vec<u8>)]) -> [[u8; 48]; 4] {
    let mut r = [[0u8; 48]; 4];
    for (i, d) in events {
        let mut buf = r[*i].to_vec();
        buf.extend_from_slice(d);
        r[*i] = Sha384::digest(&buf).into();
    }
    r
}

#[test]
fn real_ccel_matches_an_independent_parse() {
    let log = eventlog::parse(&testdata("ccel/dstack_ccel.bin")).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&testdata("ccel/dstack_ccel_events.json")).unwrap();
    let theirs = theirs.as_array().unwrap();
    let ours: Vec<_> = log
        .events
        .iter()
        .filter(|e| e.event_type != EV_NO_ACTION)
        .collect();
    assert_eq!(ours.len(), theirs.len());
    let mut reference = Vec::new();
    for (o, t) in ours.iter().zip(theirs) {
        let imr = t["imr"].as_u64().unwrap() as usize;
        assert_eq!(o.mr_index as usize, imr + 1, "CC MR index = RTMR index + 1");
        assert_eq!(u64::from(o.event_type), t["event_type"].as_u64().unwrap());
        let d = hexfmt::decode(t["digest"].as_str().unwrap()).unwrap();
        assert_eq!(o.sha384.unwrap().to_vec(), d);
        assert_eq!(
            hexfmt::encode(&o.data),
            t["event_payload"].as_str().unwrap()
        );
        reference.push((imr, d));
    }
    let rtmrs = eventlog::replay_rtmrs(&log).unwrap();
    assert_eq!(rtmrs, replay_reference(&reference));
    assert_ne!(rtmrs[0], [0; 48]);
    assert_eq!(
        rtmrs[2], [0; 48],
        "this boot-time log extends only RTMR0 and RTMR1"
    );
}

struct LogBuilder(Vec<u8>);

impl LogBuilder {
    /// Spec ID event declaring SHA-1, SHA-256 and SHA-384.
    fn new() -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend_from_slice(&3u32.to_le_bytes());
        for (alg, size) in [(4u16, 20u16), (0xb, 32), (0xc, 48)] {
            spec.extend_from_slice(&alg.to_le_bytes());
            spec.extend_from_slice(&size.to_le_bytes());
        }
        spec.push(0);
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        b.extend_from_slice(&[0; 20]);
        b.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        b.extend_from_slice(&spec);
        LogBuilder(b)
    }
    fn event(&mut self, mr: u32, ty: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> &mut Self {
        let b = &mut self.0;
        b.extend_from_slice(&mr.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (alg, d) in digests {
            b.extend_from_slice(&alg.to_le_bytes());
            b.extend_from_slice(d);
        }
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        self
    }
}

fn d384(x: u8) -> (u16, Vec<u8>) {
    (0xc, vec![x; 48])
}

#[test]
fn synthetic_multi_algorithm_log() {
    let mut l = LogBuilder::new();
    l.event(
        1,
        0x8000_0001,
        &[(4, vec![9; 20]), d384(1), (0xb, vec![8; 32])],
        b"a",
    )
    .event(2, 0xd, &[d384(2)], b"")
    .event(3, EV_NO_ACTION, &[d384(3)], b"not extended")
    .event(4, 0x6, &[(0xb, vec![1; 32]), d384(4)], b"b")
    .event(1, 0x4, &[d384(5)], b"c");
    let mut bytes = l.0.clone();
    bytes.extend_from_slice(&[0xff; 100]); // unused log area
    let want = replay_reference(&[
        (0, vec![1; 48]),
        (1, vec![2; 48]),
        (3, vec![4; 48]),
        (0, vec![5; 48]),
    ]);
    assert_eq!(eventlog::replay(&bytes).unwrap(), want);
    let mut zero_tail = l.0.clone();
    zero_tail.extend_from_slice(&[0; 64]);
    assert_eq!(eventlog::replay(&zero_tail).unwrap(), want);
}

#[test]
fn malformed_logs_are_rejected() {
    let mut good = LogBuilder::new();
    good.event(1, 1, &[d384(1)], b"xyz");
    let g = good.0.clone();
    // Truncated inside the last event.
    assert!(matches!(
        eventlog::parse(&g[..g.len() - 2]),
        Err(EventLogError::Truncated { .. })
    ));
    assert!(matches!(
        eventlog::parse(&g[..10]),
        Err(EventLogError::Truncated { .. })
    ));
    // ACPI table instead of the log.
    assert_eq!(
        eventlog::parse(b"CCEL\x38\0\0\0"),
        Err(EventLogError::AcpiTableNotLog)
    );
    // Not a crypto-agile log.
    let mut m = g.clone();
    m[32] = b'X';
    assert_eq!(eventlog::parse(&m), Err(EventLogError::NoSpecId));
    // Undeclared algorithm.
    let mut l = LogBuilder::new();
    l.event(1, 1, &[(0x12, vec![0; 32])], b"");
    assert!(matches!(
        eventlog::parse(&l.0),
        Err(EventLogError::UnknownAlgorithm { alg: 0x12, .. })
    ));
    // No SHA-384 in an extended event.
    let mut l = LogBuilder::new();
    l.event(2, 1, &[(0xb, vec![0; 32])], b"");
    assert_eq!(eventlog::replay(&l.0), Err(EventLogError::MissingSha384(0)));
    // Register index outside RTMR0..3.
    for idx in [0, 5] {
        let mut l = LogBuilder::new();
        l.event(idx, 1, &[d384(0)], b"");
        assert_eq!(
            eventlog::replay(&l.0),
            Err(EventLogError::BadIndex {
                event: 0,
                index: idx
            })
        );
    }
    // Absurd digest count.
    let mut m = g.clone();
    // The last event is index, type, count, (alg, 48-byte digest), size, 3 data bytes.
    let ev = g.len() - (4 + 4 + 4 + 2 + 48 + 4 + 3);
    m[ev + 8..ev + 12].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        eventlog::parse(&m),
        Err(EventLogError::TooMany { count: 1000, .. })
    ));
    // Spec ID without SHA-384.
    let mut m = g.clone();
    // SHA-384 is the third (alg, size) pair; the Spec ID data starts at 32.
    let pair = 32 + 16 + 8 + 4 + 8;
    m[pair..pair + 2].copy_from_slice(&0x0du16.to_le_bytes());
    assert!(matches!(
        eventlog::parse(&m),
        Err(EventLogError::NoSha384Algorithm)
    ));
}

/// `check_data_digests` holds pupa's logs to digest = SHA-384(data); general firmware logs do
/// not meet it (OVMF's EV_EFI_BOOT_SERVICES_APPLICATION digests a PE image, not its logged
/// device path), which is why `replay_rtmrs` does not require it.
#[test]
fn data_digests_are_checked_only_on_request() {
    let real = eventlog::parse(&testdata("ccel/dstack_ccel.bin")).unwrap();
    assert!(eventlog::replay_rtmrs(&real).is_ok());
    assert!(matches!(
        eventlog::check_data_digests(&real),
        Err(EventLogError::DigestMismatch { .. })
    ));
}
