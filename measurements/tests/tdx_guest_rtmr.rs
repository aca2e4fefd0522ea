//! The guest's RTMR[2] event log (pupa_guest::tdx::rtmr) replayed with the host's CCEL parser
//! (pupa_measurements::eventlog): both sides written independently from the TCG PC Client PFP
//! spec; the replay must give the RTMR value the guest expects the TDX module to hold.

use pupa_guest::tdx::rtmr::{BootConfig, EventLog, BOOT_CONFIG_RTMR, EV_EVENT_TAG, PUPA_TAG_ID};
use pupa_guest::tee::TeeKind;
use pupa_measurements::eventlog;

/// TD ATTRIBUTES of the sample quote (TD report body at 48, attributes at +120): the record's
/// must equal the quote's.
fn sample_td_attributes() -> u64 {
    const SAMPLE: &[u8] = include_bytes!("../testdata/evidence/tdx_quote");
    u64::from_le_bytes(SAMPLE[48 + 120..48 + 128].try_into().unwrap())
}

fn config(ram: u64) -> BootConfig {
    BootConfig {
        image_sha384: [0x42; 48],
        tee: TeeKind::Tdx,
        gpaw: 48,
        td_attributes: sample_td_attributes(),
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

/// The guest's log of `config(ram)` (with `vcpus`) and the RTMRs the TDX module would hold.
fn guest_log(cfg: &BootConfig) -> (Vec<u8>, [[u8; 48]; 4]) {
    let mut log = EventLog::new();
    log.measure_boot_config(cfg, &mut |_, _| 0).unwrap();
    let rtmrs = [0, 1, 2, 3].map(|i| log.expected_rtmr(i).unwrap());
    (log.bytes().to_vec(), rtmrs)
}

/// T4: a host that rewrites the logged boot configuration but keeps the digest (so the replay
/// still gives the quoted RTMRs) is caught: each digest must be the SHA-384 of its data.
#[test]
fn altered_event_data_with_kept_digest_is_rejected() {
    use pupa_measurements::verify::evidence::check_rtmr_log;
    let (mut log, rtmrs) = guest_log(&config(1 << 30));
    let quote = quote_with(&rtmrs, 4);
    assert!(check_rtmr_log(&quote, &log).is_ok());
    // The record is the last 106 bytes; its num_vcpus sits at offset 82 of the record.
    let at = log.len() - 106 + 82;
    log[at] = 64;
    let replay = eventlog::replay(&log).unwrap();
    assert_eq!(replay, rtmrs, "the digests alone still replay to the quote");
    let err = check_rtmr_log(&quote, &log).unwrap_err();
    assert!(err.contains("is not the SHA-384 of its data"), "{err}");
}

/// The sample quote's MRTD and a manifest (as `pupa-image build` writes it) listing it with
/// `image_sha384` as the image hash.
fn manifest(dir: &std::path::Path, image_sha384: &[u8; 48]) -> std::path::PathBuf {
    const SAMPLE: &[u8] = include_bytes!("../testdata/evidence/tdx_quote");
    let mrtd = pupa_measurements::hexfmt::encode(&SAMPLE[48 + 136..48 + 184]);
    let json = format!(
        r#"{{"image": {{"sha384": "{}", "size": 1}}, "measurements": {{"snp": [], "tdx": [{{"mrtd": "{mrtd}"}}]}}}}"#,
        pupa_measurements::hexfmt::encode(image_sha384)
    );
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("manifest.json");
    std::fs::write(&p, json).unwrap();
    p
}

fn tdx_evidence(quote: Vec<u8>, log: Vec<u8>) -> pupa_protocol::evidence::Evidence {
    use pupa_protocol::evidence::{Evidence, TeeEvidence};
    Evidence {
        hpke_pk: [1; 32],
        receipt_pk: [2; 32],
        nonce: [3; 32],
        tee: TeeEvidence::Tdx {
            quote,
            event_log: Some(serde_bytes::ByteBuf::from(log)),
        },
        gpus: Vec::new(),
    }
}

/// Verifies the evidence (the quote's signature no longer matches its edited RTMRs: that check
/// fails on its own) and returns the boot-configuration check.
fn boot_check(
    ev: &pupa_protocol::evidence::Evidence,
    knobs: &pupa_measurements::verify::PolicyKnobs,
) -> Option<(bool, String)> {
    use pupa_measurements::verify::{evidence, tdx, Endorsements};
    let coll = include_bytes!("../testdata/evidence/tdx_quote_collateral.json");
    let end = Endorsements {
        vcek: None,
        tdx_collateral: Some(tdx::parse_collateral(coll).unwrap()),
        now: Some(tdx::parse_now("2025-07-01T00:00:00Z").unwrap()),
        ..Endorsements::NONE
    };
    let policy = knobs
        .policy_without_report_data(pupa_spec::tee::TeeKind::Tdx)
        .unwrap();
    let v = evidence::verify(ev, &[0; 64], &policy, &end).unwrap();
    assert!(v.get("RTMR event log").unwrap().passed, "{v:#?}");
    v.get("boot configuration")
        .map(|c| (c.passed, c.detail.clone()))
}

/// T4: the boot configuration is decoded and its image hash must be the manifest's.
#[test]
fn boot_config_with_another_image_hash_is_rejected() {
    use pupa_measurements::verify::PolicyKnobs;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tdx_guest_rtmr_image");
    let (log, rtmrs) = guest_log(&config(1 << 30));
    let ev = tdx_evidence(quote_with(&rtmrs, 4), log);
    let knobs = |image: &[u8; 48]| PolicyKnobs {
        expect: Some(manifest(&dir, image)),
        ..PolicyKnobs::NONE
    };
    let (ok, detail) = boot_check(&ev, &knobs(&[0x42; 48])).expect("no boot configuration check");
    assert!(ok, "{detail}");
    assert!(detail.contains("(the manifest's)"), "{detail}");
    let (ok, detail) = boot_check(&ev, &knobs(&[0x43; 48])).expect("no boot configuration check");
    assert!(!ok);
    assert!(detail.contains("is not the manifest's"), "{detail}");
}

/// T4: the vCPU count and the RAM are held to the policy; without the log, a policy that needs
/// them fails; the record's TD attributes must be the quote's.
#[test]
fn boot_config_vcpus_and_ram_follow_the_policy() {
    use pupa_measurements::verify::PolicyKnobs;
    let mut cfg = config(2 << 30);
    cfg.num_vcpus = 4;
    let (log, rtmrs) = guest_log(&cfg);
    let ev = tdx_evidence(quote_with(&rtmrs, 4), log);
    let knobs = |vcpus, ram_mib| PolicyKnobs {
        any_measurement: Some(true),
        tdx_vcpus: vcpus,
        tdx_min_ram_mib: ram_mib,
        ..PolicyKnobs::NONE
    };
    let (ok, detail) = boot_check(&ev, &knobs(Some(4), Some(2048))).unwrap();
    assert!(ok, "{detail}");
    assert!(
        detail.contains("4 vCPUs") && detail.contains("2048 MiB RAM"),
        "{detail}"
    );
    let (ok, detail) = boot_check(&ev, &knobs(Some(2), None)).unwrap();
    assert!(!ok);
    assert_eq!(detail, "4 vCPUs, the policy requires 2");
    let (ok, detail) = boot_check(&ev, &knobs(None, Some(4096))).unwrap();
    assert!(!ok);
    assert_eq!(
        detail,
        "2048 MiB RAM, the policy requires at least 4096 MiB"
    );

    // Another TD attribute set than the quote's (e.g. DEBUG flipped in the record).
    cfg.td_attributes ^= 1;
    let (log, rtmrs) = guest_log(&cfg);
    let (ok, detail) = boot_check(
        &tdx_evidence(quote_with(&rtmrs, 4), log),
        &knobs(None, None),
    )
    .unwrap();
    assert!(!ok);
    assert!(detail.contains("differ from the quote's"), "{detail}");

    // No log: the vCPU/RAM policy cannot be met; without such a policy nothing is required.
    use pupa_measurements::verify::{tdx_log, TdxBootPolicy, Verdict};
    let quote = quote_with(&rtmrs, 4);
    let mut v = Verdict::new(pupa_spec::tee::TeeKind::Tdx);
    tdx_log::check(&mut v, &quote, None, &TdxBootPolicy::NONE);
    assert!(v.checks.is_empty());
    let need = TdxBootPolicy {
        vcpus: Some(1),
        ..TdxBootPolicy::NONE
    };
    tdx_log::check(&mut v, &quote, None, &need);
    assert!(!v.get("RTMR event log").unwrap().passed);
}

/// T4: a log without the boot-configuration event (only another RTMR[2] event), or whose
/// record is of another layout version, has no boot configuration to accept.
#[test]
fn missing_or_foreign_boot_config_is_rejected() {
    use pupa_measurements::verify::tdx_log::{boot_config, replay_log, QuotedTd};
    let mut log = EventLog::new();
    log.measure(
        BOOT_CONFIG_RTMR,
        EV_EVENT_TAG,
        b"not a pupa record",
        &mut |_, _| 0,
    )
    .unwrap();
    let td = QuotedTd {
        rtmrs: [0, 1, 2, 3].map(|i| log.expected_rtmr(i).unwrap()),
        td_attributes: 0,
    };
    let (parsed, _) = replay_log(&td, log.bytes()).unwrap();
    assert!(boot_config(&parsed)
        .unwrap_err()
        .contains("no pupa boot-configuration event"));

    let mut data = b"PUPA".to_vec();
    data.extend_from_slice(&106u32.to_le_bytes());
    let mut rec = config(1 << 30).encode();
    rec[..24].copy_from_slice(b"pupa/tdx-boot-config/v9\0");
    data.extend_from_slice(&rec);
    let mut log = EventLog::new();
    log.measure(BOOT_CONFIG_RTMR, EV_EVENT_TAG, &data, &mut |_, _| 0)
        .unwrap();
    let parsed = eventlog::parse(log.bytes()).unwrap();
    let err = boot_config(&parsed).unwrap_err();
    assert!(err.contains("does not open with"), "{err}");
}
