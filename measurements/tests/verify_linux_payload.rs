//! The verifier and pupa's Linux payload: evidence is accepted as the payload exactly when it
//! matches the manifest (`payload` of `pupa-image build --payload linux`), written here by hand.
//!
//! - SNP: the real signed Milan sample, whose MEASUREMENT the constructed manifest lists as a
//!   payload digest with kernel hashes, as a unikernel digest, or not at all;
//! - TDX: the real dcap-qvl sample quote with its RTMRs replaced (its signature then fails on
//!   its own line, as in tdx_guest_rtmr.rs) by those of the guest's own event log
//!   (`pupa_guest::linux::tdx_measure`, `pupa_guest::tdx::rtmr`) for some payload bytes, checked
//!   against `pupa_measurements::linux::tdx_payload_rtmrs` of the same bytes; and the unmodified
//!   signed sample under a manifest naming its RTMRs, which passes every check.

use std::path::{Path, PathBuf};

use pupa_guest::linux::tdx_measure::{measure_payload, PayloadSha384};
use pupa_guest::tdx::rtmr::{BootConfig, EventLog, EV_EVENT_TAG};
use pupa_measurements::hexfmt;
use pupa_measurements::linux::{kernel_sha384, tdx_payload_rtmrs};
use pupa_measurements::verify::tdx_linux::{
    CHECK_CMDLINE, CHECK_INITRD, CHECK_KERNEL, CHECK_PAYLOAD,
};
use pupa_measurements::verify::tdx_log::{CHECK_BOOT_CONFIG, CHECK_LOG};
use pupa_measurements::verify::{
    evidence, policy, snp, tdx, Endorsements, MeasurementPolicy, PolicyKnobs, Verdict, VerifyError,
};
use pupa_protocol::evidence::{Evidence, TeeEvidence};
use pupa_spec::tee::TeeKind;
use sha2::{Digest, Sha384};

mod verdict;
use verdict::{detail, failed};

const REPORT_HEX: &[u8] = include_bytes!("../testdata/evidence/report_milan.hex");
const VCEK: &[u8] = include_bytes!("../testdata/evidence/vcek_milan.der");
const QUOTE: &[u8] = include_bytes!("../testdata/evidence/tdx_quote");
const COLLATERAL: &[u8] = include_bytes!("../testdata/evidence/tdx_quote_collateral.json");
/// The SNP sample's MEASUREMENT and REPORT_DATA (as in verify_snp.rs).
const SNP_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const SNP_REPORT_DATA: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";
/// Inside the TDX collateral window and the VCEK's validity.
const NOW: &str = "2025-07-01T00:00:00Z";
/// TD report body offsets in a v4 quote (body at 48): MRTD, RTMR[0], REPORT_DATA, attributes.
const MRTD: usize = 48 + 136;
const RTMR0: usize = 48 + 328;
const REPORT_DATA: usize = 48 + 520;
const TD_ATTRIBUTES: usize = 48 + 120;
/// The image hash the constructed manifests name (and the unikernel's record carries).
const IMAGE: [u8; 48] = [0x42; 48];
/// A digest no evidence has.
const OTHER: [u8; 48] = [0x5a; 48];

fn sha384(b: &[u8]) -> [u8; 48] {
    Sha384::digest(b).into()
}

fn hex(b: &[u8]) -> String {
    hexfmt::encode(b)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("verify_linux_payload")
        .join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Payload files: a stand-in bzImage (its loader fields hold something, as after QEMU), an
/// initrd and a command line (without its NUL).
#[derive(Clone)]
struct Payload {
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    cmdline: String,
}

fn payload() -> Payload {
    Payload {
        kernel: (0..0x2000u32).map(|i| (i * 7 + 3) as u8).collect(),
        initrd: b"070701 initramfs with /init = pupa-worker".repeat(40),
        cmdline: "console=ttyS0 panic=-1 pupa.tee=auto".into(),
    }
}

impl Payload {
    fn cmdline_nul(&self) -> Vec<u8> {
        let mut c = self.cmdline.as_bytes().to_vec();
        c.push(0);
        c
    }
}

/// What the firmware logs and extends for `p` (the guest's code, the TDX module simulated by
/// `expected_rtmr`), after two ACPI tables in RTMR[0]; returns the log and RTMR[0..4].
fn linux_boot(p: &Payload) -> (Vec<u8>, [[u8; 48]; 4]) {
    let mut log = EventLog::new();
    for table in [&b"DSDT"[..], b"FACP"] {
        log.measure(0, EV_EVENT_TAG, table, &mut |_, _| 0).unwrap();
    }
    let parts = PayloadSha384 {
        kernel: kernel_sha384(&p.kernel),
        initrd: sha384(&p.initrd),
        cmdline: sha384(&p.cmdline_nul()),
    };
    measure_payload(&mut log, &parts, &mut |_, _| 0).unwrap();
    let rtmrs = [0, 1, 2, 3].map(|i| log.expected_rtmr(i).unwrap());
    (log.bytes().to_vec(), rtmrs)
}

fn sample_td_attributes() -> u64 {
    u64::from_le_bytes(QUOTE[TD_ATTRIBUTES..TD_ATTRIBUTES + 8].try_into().unwrap())
}

/// The unikernel's boot: its boot-configuration record in RTMR[2], naming `image`.
fn unikernel_boot(image: [u8; 48]) -> (Vec<u8>, [[u8; 48]; 4]) {
    let cfg = BootConfig {
        image_sha384: image,
        tee: pupa_guest::tee::TeeKind::Tdx,
        gpaw: 48,
        td_attributes: sample_td_attributes(),
        num_vcpus: 1,
        max_vcpus: 1,
        ram_bytes: 1 << 30,
        accepted_bytes: (1 << 30) - (8 << 20),
    };
    let mut log = EventLog::new();
    log.measure_boot_config(&cfg, &mut |_, _| 0).unwrap();
    let rtmrs = [0, 1, 2, 3].map(|i| log.expected_rtmr(i).unwrap());
    (log.bytes().to_vec(), rtmrs)
}

/// The sample quote with its RTMRs replaced (the signature no longer matches).
fn quote_with(rtmrs: &[[u8; 48]; 4]) -> Vec<u8> {
    let mut q = QUOTE.to_vec();
    for (i, r) in rtmrs.iter().enumerate() {
        q[RTMR0 + 48 * i..][..48].copy_from_slice(r);
    }
    q
}

fn sample_rtmrs() -> [[u8; 48]; 4] {
    [0, 1, 2, 3].map(|i| QUOTE[RTMR0 + 48 * i..][..48].try_into().unwrap())
}

/// A manifest as `pupa-image build --payload linux` writes it (the fields the verifier reads):
/// the firmware's SNP digests and TDX MRTD (the sample's), and the payload `p` with its SNP
/// digests with kernel hashes and its TDX RTMRs (`tdx_rtmrs`, or recomputed from `p`).
fn manifest(
    snp: &[[u8; 48]],
    payload_snp: &[[u8; 48]],
    p: &Payload,
    tdx_rtmrs: Option<([u8; 48], [u8; 48])>,
) -> String {
    let entries = |l: &[[u8; 48]]| {
        l.iter()
            .map(|d| {
                format!(
                    r#"{{"vcpus": 1, "vcpu_type": "EPYC-v4", "vcpu_sig": 8392466, "vmm_type": "QEMU", "guest_features": 1, "digest": "{}"}}"#,
                    hex(d)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (r1, r2) = tdx_rtmrs.unwrap_or_else(|| {
        let r = tdx_payload_rtmrs(&p.kernel, Some(&p.initrd), Some(&p.cmdline));
        (r.rtmr1, r.rtmr2)
    });
    let part = |file: &str, bytes: &[u8]| {
        format!(
            r#"{{"file": "{file}", "size": {}, "sha384": "{}"}}"#,
            bytes.len(),
            hex(&sha384(bytes))
        )
    };
    // the file's bytes and one NUL, as pupa-image hashes it
    let cmdline = format!(
        r#"{{"file": "linux/cmdline", "size": {}, "sha384": "{}"}}"#,
        p.cmdline.len(),
        hex(&sha384(&p.cmdline_nul()))
    );
    format!(
        r#"{{"format": "pupa-manifest/v1",
  "image": {{"file": "pupa.fd", "sha384": "{image}", "size": 589824}},
  "measurements": {{"snp": [{snp}], "tdx": [{{"order": "single", "mrtd": "{mrtd}"}}]}},
  "payload": {{"kind": "linux",
    "kernel": {kernel}, "initrd": {initrd}, "cmdline": {cmdline},
    "measurements": {{"snp_with_kernel_hashes": [{psnp}], "tdx": {{"rtmr1": "{r1}", "rtmr2": "{r2}"}}}}}}}}"#,
        image = hex(&IMAGE),
        snp = entries(snp),
        mrtd = hex(&QUOTE[MRTD..MRTD + 48]),
        kernel = part("linux/vmlinuz", &p.kernel),
        initrd = part("linux/initramfs.cpio", &p.initrd),
        cmdline = cmdline,
        psnp = entries(payload_snp),
        r1 = hex(&r1),
        r2 = hex(&r2),
    )
}

fn knobs_for(name: &str, manifest: &str) -> PolicyKnobs {
    let path = tmpdir(name).join("manifest.json");
    std::fs::write(&path, manifest).unwrap();
    PolicyKnobs {
        expect: Some(path),
        ..PolicyKnobs::NONE
    }
}

fn tdx_evidence(quote: Vec<u8>, log: Option<Vec<u8>>) -> Evidence {
    Evidence {
        hpke_pk: [1; 32],
        receipt_pk: [2; 32],
        nonce: [3; 32],
        tee: TeeEvidence::Tdx {
            quote,
            event_log: log.map(serde_bytes::ByteBuf::from),
        },
        gpus: Vec::new(),
    }
}

/// Verifies TDX evidence under `knobs`, REPORT_DATA = the sample's.
fn verify_tdx(ev: &Evidence, knobs: &PolicyKnobs) -> Verdict {
    let end = Endorsements {
        tdx_collateral: Some(tdx::parse_collateral(COLLATERAL).unwrap()),
        now: Some(tdx::parse_now(NOW).unwrap()),
        ..Endorsements::NONE
    };
    let policy = knobs.policy_without_report_data(TeeKind::Tdx).unwrap();
    let rd: [u8; 64] = QUOTE[REPORT_DATA..REPORT_DATA + 64].try_into().unwrap();
    evidence::verify(ev, &rd, &policy, &end).unwrap()
}

/// The failed checks other than the two an edited quote always fails (its signature, hence
/// its TCB status).
fn failed_beyond_signature(v: &Verdict) -> Vec<&str> {
    failed(v)
        .into_iter()
        .filter(|n| *n != "quote signature and chain" && *n != "TCB status")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SNP

fn snp_verify(knobs: &PolicyKnobs) -> Verdict {
    let mut p = knobs.policy_without_report_data(TeeKind::Snp).unwrap();
    p.report_data = Some(hexfmt::decode_array(SNP_REPORT_DATA).unwrap());
    let report = snp::load_report(REPORT_HEX).unwrap();
    snp::verify(&report, Some(VCEK), tdx::parse_now(NOW).unwrap(), &p).unwrap()
}

#[test]
fn snp_report_with_a_payload_digest_passes_and_names_the_payload() {
    let sample: [u8; 48] = hexfmt::decode_array(SNP_MEASUREMENT).unwrap();
    let p = payload();
    // The signed sample's measurement as the payload's digest with kernel hashes.
    let k = knobs_for("snp_payload", &manifest(&[OTHER], &[sample], &p, None));
    let v = snp_verify(&k);
    assert!(v.ok(), "{v:#?}");
    assert_eq!(
        detail(&v, "measurement"),
        format!("{SNP_MEASUREMENT} is expected (Linux payload, kernel hashes)")
    );
    // As the firmware's own digest: the unikernel.
    let k = knobs_for("snp_unikernel", &manifest(&[sample], &[OTHER], &p, None));
    let v = snp_verify(&k);
    assert!(v.ok(), "{v:#?}");
    assert_eq!(
        detail(&v, "measurement"),
        format!("{SNP_MEASUREMENT} is expected (unikernel)")
    );
    // Neither: only the measurement fails, and the line says what was looked at.
    let k = knobs_for("snp_neither", &manifest(&[OTHER], &[OTHER], &p, None));
    let v = snp_verify(&k);
    assert_eq!(failed(&v), ["measurement"], "{v:#?}");
    assert!(
        detail(&v, "measurement")
            .contains("neither the unikernel's (1) nor the Linux payload's with kernel hashes (1)"),
        "{v:#?}"
    );
}

#[test]
fn manifest_payload_is_read_for_each_tee_and_malformed_payloads_are_policy_errors() {
    let p = payload();
    let json = manifest(&[OTHER], &[IMAGE], &p, None);
    assert_eq!(
        MeasurementPolicy::from_manifest(&json, TeeKind::Snp).unwrap(),
        MeasurementPolicy::WithLinuxPayload {
            unikernel: vec![OTHER],
            linux_kernel_hashes: vec![IMAGE],
            how: "kernel hashes",
        }
    );
    // TDX: the MRTD is the firmware's whatever the payload; dev: the image hash.
    let mrtd: [u8; 48] = QUOTE[MRTD..MRTD + 48].try_into().unwrap();
    assert_eq!(
        MeasurementPolicy::from_manifest(&json, TeeKind::Tdx).unwrap(),
        MeasurementPolicy::OneOf(vec![mrtd])
    );
    assert_eq!(
        MeasurementPolicy::from_manifest(&json, TeeKind::Dev).unwrap(),
        MeasurementPolicy::OneOf(vec![IMAGE])
    );
    // Dev with the payload's dev measurement (pupa-worker booted by pupa's firmware): either.
    let mut with_dev: serde_json::Value = serde_json::from_str(&json).unwrap();
    with_dev["payload"]["measurements"]["dev"] = hex(&OTHER).into();
    let dev = MeasurementPolicy::from_manifest(&with_dev.to_string(), TeeKind::Dev).unwrap();
    assert_eq!(
        dev,
        MeasurementPolicy::WithLinuxPayload {
            unikernel: vec![IMAGE],
            linux_kernel_hashes: vec![OTHER],
            how: "boot digests",
        }
    );
    assert!(dev
        .check(&OTHER)
        .unwrap()
        .ends_with("(Linux payload, boot digests)"));
    assert!(dev.check(&IMAGE).unwrap().ends_with("(unikernel)"));
    assert!(dev
        .check(&[0; 48])
        .unwrap_err()
        .contains("nor the Linux payload's with boot digests (1)"));
    with_dev["payload"]["measurements"]["dev"] = 7.into();
    assert!(MeasurementPolicy::from_manifest(&with_dev.to_string(), TeeKind::Dev).is_err());
    let tdx = policy::linux_payload_tdx_from_manifest(&json)
        .unwrap()
        .unwrap();
    let want = tdx_payload_rtmrs(&p.kernel, Some(&p.initrd), Some(&p.cmdline));
    assert_eq!((tdx.rtmr1, tdx.rtmr2), (want.rtmr1, want.rtmr2));
    assert_eq!(tdx.initrd_sha384, Some(sha384(&p.initrd)));
    assert_eq!(tdx.cmdline_sha384, Some(sha384(&p.cmdline_nul())));
    // Only the payload's SNP digests: still a measurement list.
    let only_payload = manifest(&[], &[IMAGE], &p, None);
    assert!(matches!(
        MeasurementPolicy::from_manifest(&only_payload, TeeKind::Snp).unwrap(),
        MeasurementPolicy::WithLinuxPayload { .. }
    ));
    // A manifest without a payload: as before.
    let plain = format!(
        r#"{{"image": {{"sha384": "{}"}}, "measurements": {{"snp": [{{"digest": "{}"}}], "tdx": []}}}}"#,
        hex(&IMAGE),
        hex(&OTHER)
    );
    assert_eq!(
        MeasurementPolicy::from_manifest(&plain, TeeKind::Snp).unwrap(),
        MeasurementPolicy::OneOf(vec![OTHER])
    );
    assert_eq!(policy::linux_payload_tdx_from_manifest(&plain), Ok(None));
    // Malformed: one clear policy error each.
    for (from, to, want) in [
        (
            r#""kind": "linux""#,
            r#""kind": "bsd""#,
            "payload.kind \"bsd\"",
        ),
        (r#""kind": "linux","#, "", "payload has no \"kind\""),
        (
            &format!(r#""rtmr1": "{}""#, hex(&want.rtmr1))[..],
            r#""rtmr1": "zz""#,
            "payload.measurements.tdx.rtmr1 \"zz\"",
        ),
        (
            r#""snp_with_kernel_hashes": ["#,
            r#""snp_with_kernel_hashes": [{"vcpus": 1}, "#,
            "lacks \"digest\"",
        ),
    ] {
        let bad = json.replacen(from, to, 1);
        assert_ne!(bad, json, "{from}");
        let errs = [
            MeasurementPolicy::from_manifest(&bad, TeeKind::Snp).err(),
            policy::linux_payload_tdx_from_manifest(&bad).err(),
        ];
        let e = errs
            .iter()
            .flatten()
            .next()
            .unwrap_or_else(|| panic!("{to} accepted"));
        assert!(
            matches!(e, VerifyError::Policy(m) if m.contains(want) && !m.contains('\n')),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// TDX

#[test]
fn guest_log_and_manifest_rtmrs_agree() {
    let p = payload();
    let (_, rtmrs) = linux_boot(&p);
    let want = tdx_payload_rtmrs(&p.kernel, Some(&p.initrd), Some(&p.cmdline));
    assert_eq!((rtmrs[1], rtmrs[2]), (want.rtmr1, want.rtmr2));
}

#[test]
fn tdx_evidence_with_the_payload_rtmrs_passes_as_the_linux_payload() {
    let p = payload();
    let k = knobs_for("tdx_payload", &manifest(&[OTHER], &[OTHER], &p, None));
    let (log, rtmrs) = linux_boot(&p);
    // With the log: every line passes but the edited quote's signature.
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log)), &k);
    assert_eq!(failed_beyond_signature(&v), Vec::<&str>::new(), "{v:#?}");
    assert!(
        detail(&v, CHECK_PAYLOAD).starts_with("Linux payload: RTMR[1]"),
        "{v:#?}"
    );
    assert!(
        detail(&v, CHECK_LOG).starts_with("5 events replay"),
        "{v:#?}"
    );
    assert!(
        detail(&v, CHECK_KERNEL).contains(&hex(&kernel_sha384(&p.kernel))),
        "{v:#?}"
    );
    assert!(detail(&v, CHECK_KERNEL).contains("judged by RTMR[1]"));
    assert_eq!(
        detail(&v, CHECK_INITRD),
        format!(
            "SHA-384 {}, the manifest's payload.initrd",
            hex(&sha384(&p.initrd))
        )
    );
    assert_eq!(
        detail(&v, CHECK_CMDLINE),
        format!(
            "SHA-384 {}, the manifest's payload.cmdline",
            hex(&sha384(&p.cmdline_nul()))
        )
    );
    // The payload writes no boot-configuration record, and none is asked for.
    assert!(v.get(CHECK_BOOT_CONFIG).is_none(), "{v:#?}");
    // Without the log: the quote's RTMRs alone identify the payload.
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), None), &k);
    assert_eq!(failed_beyond_signature(&v), Vec::<&str>::new(), "{v:#?}");
    assert!(v.get(CHECK_PAYLOAD).unwrap().passed);
    assert!(v.get(CHECK_INITRD).is_none());
}

/// The unmodified signed sample under a manifest whose payload RTMRs are the sample's: every
/// check passes, signature and TCB included.
#[test]
fn signed_sample_quote_with_the_manifests_payload_rtmrs_is_accepted() {
    let r = sample_rtmrs();
    let k = knobs_for(
        "tdx_signed",
        &manifest(&[OTHER], &[OTHER], &payload(), Some((r[1], r[2]))),
    );
    let v = verify_tdx(&tdx_evidence(QUOTE.to_vec(), None), &k);
    assert!(v.ok(), "{v:#?}");
    assert!(detail(&v, CHECK_PAYLOAD).starts_with("Linux payload"));
    // Another manifest's payload: the same signed quote is neither payload.
    let k = knobs_for(
        "tdx_signed_other",
        &manifest(&[OTHER], &[OTHER], &payload(), None),
    );
    let v = verify_tdx(&tdx_evidence(QUOTE.to_vec(), None), &k);
    assert_eq!(failed(&v), [CHECK_PAYLOAD], "{v:#?}");
}

#[test]
fn tdx_payload_one_byte_off_fails_with_the_parts_line() {
    let p = payload();
    let k = knobs_for("tdx_off", &manifest(&[OTHER], &[OTHER], &p, None));
    let mut initrd = p.clone();
    initrd.initrd[100] ^= 1;
    let mut cmdline = p.clone();
    cmdline.cmdline.push(' ');
    let mut kernel = p.clone();
    kernel.kernel[0x1000] ^= 1;
    for (booted, line, rtmr) in [
        (initrd, CHECK_INITRD, 2),
        (cmdline, CHECK_CMDLINE, 2),
        (kernel, CHECK_KERNEL, 1),
    ] {
        let (log, rtmrs) = linux_boot(&booted);
        let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log.clone())), &k);
        assert_eq!(failed_beyond_signature(&v), [CHECK_PAYLOAD, line], "{v:#?}");
        assert!(
            detail(&v, CHECK_PAYLOAD).starts_with("a Linux payload, but not the manifest's"),
            "{v:#?}"
        );
        let d = detail(&v, line);
        if rtmr == 1 {
            assert!(
                d.starts_with("RTMR[1] ") && d.contains("another kernel"),
                "{d}"
            );
        } else {
            assert!(d.contains("is not the manifest's payload."), "{d}");
        }
        // Without the log: one line, with both reasons.
        let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), None), &k);
        assert_eq!(failed_beyond_signature(&v), [CHECK_PAYLOAD], "{v:#?}");
        let d = detail(&v, CHECK_PAYLOAD);
        assert!(
            d.starts_with("neither payload: RTMR[1]")
                && d.contains("are not the Linux payload's")
                && d.contains("no event log came with the quote"),
            "{d}"
        );
    }
    // One bit off in the quote's RTMR[1] or RTMR[2] with the genuine log: the log no longer
    // replays, and the evidence is neither payload.
    let (log, rtmrs) = linux_boot(&p);
    for i in [1, 2] {
        let mut off = rtmrs;
        off[i][47] ^= 1;
        let v = verify_tdx(&tdx_evidence(quote_with(&off), Some(log.clone())), &k);
        assert_eq!(
            failed_beyond_signature(&v),
            [CHECK_LOG, CHECK_PAYLOAD],
            "{v:#?}"
        );
        assert!(detail(&v, CHECK_LOG).starts_with(&format!("RTMR[{i}] replays to")));
        assert!(detail(&v, CHECK_PAYLOAD).contains("the event log does not replay"));
    }
}

#[test]
fn tdx_unikernel_evidence_still_passes_under_a_payload_manifest() {
    let p = payload();
    let k = knobs_for("tdx_unikernel", &manifest(&[OTHER], &[OTHER], &p, None));
    let (log, rtmrs) = unikernel_boot(IMAGE);
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log)), &k);
    assert_eq!(failed_beyond_signature(&v), Vec::<&str>::new(), "{v:#?}");
    assert!(detail(&v, CHECK_BOOT_CONFIG).contains("(the manifest's)"));
    assert!(detail(&v, CHECK_PAYLOAD).starts_with("the unikernel"));
    // Another image's record: neither payload, both reasons in one line.
    let (log, rtmrs) = unikernel_boot(OTHER);
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log)), &k);
    assert_eq!(failed_beyond_signature(&v), [CHECK_PAYLOAD], "{v:#?}");
    let d = detail(&v, CHECK_PAYLOAD);
    assert!(
        d.starts_with("neither payload") && d.contains("is not the manifest's"),
        "{d}"
    );
    // No log: nothing shows which payload ran.
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), None), &k);
    assert_eq!(failed_beyond_signature(&v), [CHECK_PAYLOAD], "{v:#?}");
}

/// A Linux kernel (not the manifest's, so its RTMRs are not the payload's) that extends
/// RTMR[2] with a copy of the unikernel's record: the log's PLNX events show a Linux boot, so
/// the record is not taken as the unikernel's, with or without a payload in the manifest.
#[test]
fn record_extended_after_a_linux_boot_is_not_the_unikernels() {
    let mut evil = payload();
    evil.cmdline = "init=/bin/sh".into();
    let (log, _) = linux_boot(&evil);
    let (unikernel_log, _) = unikernel_boot(IMAGE);
    // Append the unikernel's one event (after its Spec ID header) to the Linux log.
    let header = EventLog::new().bytes().len();
    let mut log = log;
    log.extend_from_slice(&unikernel_log[header..]);
    let rtmrs = pupa_measurements::eventlog::replay(&log).unwrap();
    let p = payload();
    let k = knobs_for("tdx_forged", &manifest(&[OTHER], &[OTHER], &p, None));
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log.clone())), &k);
    assert!(v.get(CHECK_LOG).unwrap().passed, "{v:#?}");
    assert!(failed(&v).contains(&CHECK_PAYLOAD), "{v:#?}");
    assert!(failed(&v).contains(&CHECK_CMDLINE), "{v:#?}");
    // A manifest without a payload (only the image hash): the record is refused.
    let plain = format!(
        r#"{{"image": {{"sha384": "{}"}}, "measurements": {{"snp": [], "tdx": [{{"mrtd": "{}"}}]}}}}"#,
        hex(&IMAGE),
        hex(&QUOTE[MRTD..MRTD + 48])
    );
    let k = knobs_for("tdx_forged_plain", &plain);
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log)), &k);
    assert_eq!(failed_beyond_signature(&v), [CHECK_BOOT_CONFIG], "{v:#?}");
    assert!(detail(&v, CHECK_BOOT_CONFIG).contains("records a Linux payload"));
    // Nor is the manifest's own payload, when the manifest lacks its TDX measurements.
    let (log, rtmrs) = linux_boot(&p);
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log)), &k);
    assert_eq!(failed_beyond_signature(&v), [CHECK_BOOT_CONFIG], "{v:#?}");
    assert!(
        detail(&v, CHECK_BOOT_CONFIG).contains("payload.measurements.tdx"),
        "{v:#?}"
    );
}

#[test]
fn tdx_vcpu_or_ram_requirement_fails_clearly_for_the_payload() {
    let p = payload();
    let mut k = knobs_for("tdx_vcpus", &manifest(&[OTHER], &[OTHER], &p, None));
    k.tdx_vcpus = Some(1);
    let (log, rtmrs) = linux_boot(&p);
    for log in [Some(log), None] {
        let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), log), &k);
        assert_eq!(failed_beyond_signature(&v), [CHECK_BOOT_CONFIG], "{v:#?}");
        assert!(
            detail(&v, CHECK_BOOT_CONFIG).contains("the Linux payload's boot does not record"),
            "{v:#?}"
        );
    }
    // The unikernel meets it.
    let (log, rtmrs) = unikernel_boot(IMAGE);
    let v = verify_tdx(&tdx_evidence(quote_with(&rtmrs), Some(log)), &k);
    assert_eq!(failed_beyond_signature(&v), Vec::<&str>::new(), "{v:#?}");
}

/// A policy file needs nothing beyond `expect`: the manifest carries the payload.
#[test]
fn policy_file_expect_carries_the_payload() {
    let p = payload();
    let dir = tmpdir("policy_file");
    std::fs::write(
        dir.join("manifest.json"),
        manifest(&[OTHER], &[OTHER], &p, None),
    )
    .unwrap();
    let k = PolicyKnobs::from_toml("expect = \"manifest.json\"\n", &dir).unwrap();
    let boot = k.tdx_boot_policy().unwrap();
    let linux = boot.linux.expect("the payload's TDX measurements");
    let want = tdx_payload_rtmrs(&p.kernel, Some(&p.initrd), Some(&p.cmdline));
    assert_eq!(linux.rtmr1, want.rtmr1);
    assert_eq!(boot.image_sha384, Some(IMAGE));
    assert!(matches!(
        k.measurement(TeeKind::Snp).unwrap(),
        MeasurementPolicy::WithLinuxPayload { .. }
    ));
}

/// `pupa-measure verify --expect manifest.json`: the measurement line names the payload.
#[test]
fn cli_names_the_payload_in_the_measurement_line() {
    let sample: [u8; 48] = hexfmt::decode_array(SNP_MEASUREMENT).unwrap();
    let dir = tmpdir("cli");
    let m = dir.join("manifest.json");
    std::fs::write(&m, manifest(&[OTHER], &[sample], &payload(), None)).unwrap();
    let td = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/evidence/");
    let (code, out, err) = verdict::cli(&[
        "--tee",
        "snp",
        "--report",
        &format!("{td}report_milan.hex"),
        "--vcek",
        &format!("{td}vcek_milan.der"),
        "--now",
        NOW,
        "--expect",
        m.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{SNP_MEASUREMENT} is expected (Linux payload, kernel hashes)"
        )),
        "{out}"
    );
}
