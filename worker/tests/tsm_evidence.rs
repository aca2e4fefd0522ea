//! configfs-tsm evidence against a directory that mimics it (common/tsm_mimic.rs) serving the
//! real SEV-SNP and TDX samples (measurements/testdata/evidence/SOURCE): the worker's evidence
//! frame, fetched over TCP with pupa-host's client, reaches the verifier, which fails exactly
//! the REPORT_DATA binding (the samples were made over someone else's REPORT_DATA); and each
//! way configfs-tsm can go wrong gets its own error.

mod common;

use std::time::Duration;

use common::tsm_mimic::{Mimic, Scenario};
use common::{sample, snp_report, temp_dir, workspace_bin, WorkerProc};
use pupa_host::client::{verify_evidence, ClientError, Connection, EvidencePolicy};
use pupa_measurements::verify::{tdx, Endorsements, PolicyKnobs, Verdict};
use pupa_protocol::evidence::{report_data, TeeEvidence};
use pupa_protocol::msg::{EvidenceRequest, Message};
use pupa_worker::certtable::{self, VCEK_GUID, VLEK_GUID};
use pupa_worker::tsm::{ConfigfsTsm, TsmError, TsmKind, SNP_REPORT_LEN};

/// Inside the VCEK's validity and the TDX collateral's window (as measurements' tests use).
const NOW: &str = "2025-07-01T00:00:00Z";

fn snp_scenario() -> Scenario {
    let vcek = sample("vcek_milan.der");
    Scenario {
        provider: "sev_guest".into(),
        outblob: snp_report(),
        // A VLEK entry first, so the VCEK is found by its GUID, not by position.
        auxblob: Some(certtable::build(&[
            (VLEK_GUID, b"not a cert"),
            (VCEK_GUID, &vcek),
        ])),
        writes_seen: 1,
    }
}

fn tdx_scenario() -> Scenario {
    Scenario {
        provider: "tdx_guest".into(),
        outblob: sample("tdx_quote"),
        auxblob: None,
        writes_seen: 1,
    }
}

/// Any measurement (the samples are other people's launches), the sample's time, the TDX
/// collateral; no VCEK given: the SNP evidence must bring its own (from auxblob).
fn policy() -> EvidencePolicy {
    EvidencePolicy {
        allow_insecure_dev: false,
        knobs: PolicyKnobs {
            any_measurement: Some(true),
            ..PolicyKnobs::NONE
        },
        endorsements: Endorsements {
            vcek: None,
            tdx_collateral: Some(
                tdx::parse_collateral(&sample("tdx_quote_collateral.json")).unwrap(),
            ),
            now: Some(tdx::parse_now(NOW).unwrap()),
            ..Endorsements::NONE
        },
    }
}

fn failed(v: &Verdict) -> Vec<&str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

/// Starts a worker on a mimic of `scenario`, fetches fresh evidence, verifies it.
fn fetch_from_worker(tee: &str, scenario: Scenario) -> (TeeEvidence, ClientError, Vec<Vec<u8>>) {
    let dir = temp_dir(&format!("tsm-{tee}"));
    let tsm = dir.join("report");
    std::fs::create_dir(&tsm).unwrap();
    let mimic = Mimic::start(&tsm, scenario);
    let w = WorkerProc::start(
        &[
            "--tee",
            tee,
            "--compute",
            "cpu",
            "--tsm-path",
            tsm.to_str().unwrap(),
        ],
        &dir,
    );
    let mut c = Connection::connect(&w.addr.to_string(), None, Duration::from_secs(30)).unwrap();
    let nonce = [0x42; 32];
    c.send(&Message::EvidenceRequest(EvidenceRequest { nonce }))
        .unwrap();
    let Message::Evidence(ev) = c.recv().unwrap() else {
        panic!("no evidence; log:\n{}", w.log())
    };
    let err = verify_evidence(&ev, &policy(), &nonce).expect_err("someone else's REPORT_DATA");
    let inblobs = mimic.inblobs.lock().unwrap().clone();
    // The boot evidence (nonce 0) and this one, each over its own binding.
    assert_eq!(inblobs.len(), 2, "{}", w.log());
    assert_eq!(
        inblobs[0],
        report_data(&ev.hpke_pk, &ev.receipt_pk, &[0; 32])
    );
    assert_eq!(inblobs[1], report_data(&ev.hpke_pk, &ev.receipt_pk, &nonce));
    assert!(
        w.log().contains("REPORT_DATA is not the one written"),
        "{}",
        w.log()
    );
    measure_cli_fails_only_the_binding(&ev, &dir);
    (ev.tee, err, inblobs)
}

/// `pupa-measure verify --evidence` on the evidence as received: exactly REPORT_DATA fails.
fn measure_cli_fails_only_the_binding(
    ev: &pupa_protocol::evidence::Evidence,
    dir: &std::path::Path,
) {
    let file = dir.join("evidence.bin");
    std::fs::write(&file, postcard::to_allocvec(ev).unwrap()).unwrap();
    let collateral = format!("{}tdx_quote_collateral.json", common::SAMPLES);
    let out = std::process::Command::new(workspace_bin("pupa-measurements", "pupa-measure"))
        .arg("verify")
        .arg("--evidence")
        .arg(&file)
        .args([
            "--any-measurement",
            "--now",
            NOW,
            "--collateral",
            &collateral,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("FAIL  "))
        .map(|l| l.split("  ").next().unwrap_or_default().trim())
        .collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(failed, ["REPORT_DATA"], "{text}");
}

fn assert_only_binding_fails(err: &ClientError) {
    let ClientError::EvidenceRejected { check, verdict, .. } = err else {
        panic!("expected a rejected verdict, got {err}")
    };
    assert_eq!(check, "REPORT_DATA");
    let v = verdict.as_deref().expect("a verdict");
    assert_eq!(failed(v), ["REPORT_DATA"], "{v:#?}");
    assert!(v.checks.len() > 3, "{v:#?}");
}

#[test]
fn snp_sample_through_the_worker_fails_only_the_binding() {
    let (tee, err, _) = fetch_from_worker("snp", snp_scenario());
    let TeeEvidence::Snp { report, vcek } = &tee else {
        panic!("{tee:?}")
    };
    assert_eq!(report, &snp_report());
    assert_eq!(
        vcek.as_deref().map(|v| v.as_slice()),
        Some(sample("vcek_milan.der").as_slice())
    );
    assert_only_binding_fails(&err);
    let v = pupa_host::client::attest::rejected_verdict(&err).unwrap();
    assert!(v.get("VCEK chain").is_some_and(|c| c.passed), "{v:#?}");
}

#[test]
fn tdx_sample_through_the_worker_fails_only_the_binding() {
    let (tee, err, _) = fetch_from_worker("tdx", tdx_scenario());
    let TeeEvidence::Tdx { quote, event_log } = &tee else {
        panic!("{tee:?}")
    };
    assert_eq!(quote, &sample("tdx_quote"));
    assert!(event_log.is_none());
    assert_only_binding_fails(&err);
}

/// The firmware's TDX event log, published in its CCEL table, travels with every quote
/// (`--ccel FILE`; on a TD Linux exposes it at /sys/firmware/acpi/tables/data/CCEL, absent
/// here, which the test above shows: no log, and the worker still serves).
#[test]
fn tdx_quotes_carry_the_ccel_event_log() {
    let dir = temp_dir("tsm-tdx-ccel");
    let tsm = dir.join("report");
    std::fs::create_dir(&tsm).unwrap();
    // a log as the firmware leaves it: events, then 0xFF filler to the end of the area
    let mut log = pupa_guest_like_log();
    log.resize(log.len() + 4096, 0xFF);
    let ccel = dir.join("CCEL");
    std::fs::write(&ccel, &log).unwrap();
    let _mimic = Mimic::start(&tsm, tdx_scenario());
    let ev = ConfigfsTsm::new(&tsm, TsmKind::Tdx)
        .with_event_log(pupa_worker::tsm::read_event_log(&ccel).unwrap())
        .report(&[7; 64])
        .unwrap();
    let TeeEvidence::Tdx { event_log, .. } = &ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        event_log.as_deref().map(|l| l.as_slice()),
        Some(log.as_slice())
    );

    // unreadable, empty or oversized logs are errors, not silently empty evidence
    let missing = pupa_worker::tsm::read_event_log(&dir.join("nothing")).unwrap_err();
    assert!(matches!(missing, TsmError::EventLog(_)), "{missing}");
    std::fs::write(dir.join("empty"), b"").unwrap();
    let empty = pupa_worker::tsm::read_event_log(&dir.join("empty")).unwrap_err();
    assert!(empty.to_string().contains("empty"), "{empty}");
    std::fs::write(
        dir.join("huge"),
        vec![0xFF; pupa_worker::tsm::MAX_EVENT_LOG + 1],
    )
    .unwrap();
    let huge = pupa_worker::tsm::read_event_log(&dir.join("huge")).unwrap_err();
    assert!(matches!(huge, TsmError::TooLarge { .. }), "{huge}");
}

/// The TCG2 log header event pupa's firmware starts its RTMR log with (EV_NO_ACTION,
/// "Spec ID Event03"), enough for the worker, which does not parse the log.
fn pupa_guest_like_log() -> Vec<u8> {
    let mut l = Vec::new();
    l.extend_from_slice(&0u32.to_le_bytes()); // PCR/CCEL index
    l.extend_from_slice(&3u32.to_le_bytes()); // EV_NO_ACTION
    l.extend_from_slice(&[0; 20]);
    let spec = b"Spec ID Event03\0";
    l.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    l.extend_from_slice(spec);
    l
}

/// One report from a mimic of `scenario` through the library.
fn report(kind: TsmKind, scenario: Scenario, name: &str) -> Result<TeeEvidence, TsmError> {
    let dir = temp_dir(name).join("report");
    std::fs::create_dir(&dir).unwrap();
    let _mimic = Mimic::start(&dir, scenario);
    ConfigfsTsm::new(&dir, kind).report(&[7; 64])
}

#[test]
fn a_concurrent_writer_is_refused() {
    let sc = Scenario {
        writes_seen: 2,
        ..snp_scenario()
    };
    let e = report(TsmKind::Snp, sc, "generation").unwrap_err();
    assert!(
        matches!(
            e,
            TsmError::GenerationMoved {
                before: 0,
                after: 2
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("another writer"), "{e}");
}

#[test]
fn a_wrong_provider_is_refused() {
    let e = report(TsmKind::Snp, tdx_scenario(), "provider-snp").unwrap_err();
    assert!(
        matches!(&e, TsmError::WrongProvider { want: "sev_guest", got } if got == "tdx_guest"),
        "{e}"
    );
    let e = report(TsmKind::Tdx, snp_scenario(), "provider-tdx").unwrap_err();
    assert!(
        matches!(
            &e,
            TsmError::WrongProvider {
                want: "tdx_guest",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn truncated_outblobs_are_refused() {
    let mut sc = snp_scenario();
    sc.outblob.truncate(1000);
    let e = report(TsmKind::Snp, sc, "trunc-snp").unwrap_err();
    assert!(matches!(e, TsmError::SnpReportSize { got: 1000 }), "{e}");
    assert!(e.to_string().contains(&SNP_REPORT_LEN.to_string()));
    // v4: header 48 + body 584, then the signature data's length (u32) and the data; the
    // sample is zero-padded after it.
    let mut sc = tdx_scenario();
    let q = &sc.outblob;
    let quote_len = 636 + u32::from_le_bytes(q[632..636].try_into().unwrap()) as usize;
    assert!(quote_len < q.len() && q[quote_len..].iter().all(|&b| b == 0));
    sc.outblob.truncate(quote_len - 10);
    let e = report(TsmKind::Tdx, sc, "trunc-tdx").unwrap_err();
    assert!(
        matches!(&e, TsmError::TdxQuote(m) if m.contains("inside the signature data")),
        "{e}"
    );
    let mut sc = tdx_scenario();
    let n = sc.outblob.len();
    sc.outblob[n - 1] = 1;
    let e = report(TsmKind::Tdx, sc, "trailing-tdx").unwrap_err();
    assert!(
        matches!(&e, TsmError::TdxQuote(m) if m.contains("non-zero bytes after")),
        "{e}"
    );
    let mut sc = tdx_scenario();
    sc.outblob.truncate(600);
    let e = report(TsmKind::Tdx, sc, "trunc-tdx-body").unwrap_err();
    assert!(
        matches!(&e, TsmError::TdxQuote(m) if m.contains("TD report body")),
        "{e}"
    );
    let sc = Scenario {
        outblob: Vec::new(),
        ..snp_scenario()
    };
    let e = report(TsmKind::Snp, sc, "empty").unwrap_err();
    assert!(matches!(e, TsmError::EmptyOutblob), "{e}");
}

#[test]
fn a_bad_certificate_table_is_refused() {
    let mut sc = snp_scenario();
    let aux = sc.auxblob.as_mut().unwrap();
    aux.truncate(aux.len() - 1);
    let e = report(TsmKind::Snp, sc, "certtable").unwrap_err();
    assert!(matches!(e, TsmError::CertTable(_)), "{e}");
    // No auxblob at all: the report without a VCEK.
    let sc = Scenario {
        auxblob: None,
        ..snp_scenario()
    };
    let ev = report(TsmKind::Snp, sc, "no-auxblob").unwrap();
    assert!(matches!(ev, TeeEvidence::Snp { vcek: None, .. }));
}

#[test]
fn not_a_configfs_directory() {
    let dir = temp_dir("plain");
    let e = ConfigfsTsm::new(&dir, TsmKind::Snp)
        .with_attr_wait(Duration::from_millis(50))
        .report(&[0; 64])
        .unwrap_err();
    assert!(
        matches!(
            e,
            TsmError::AttributeMissing {
                attr: "generation",
                ..
            }
        ),
        "{e}"
    );
    let e = ConfigfsTsm::new(dir.join("missing"), TsmKind::Tdx)
        .report(&[0; 64])
        .unwrap_err();
    assert!(matches!(e, TsmError::Mkdir { .. }), "{e}");
}

#[test]
fn a_worker_on_the_wrong_tee_does_not_start() {
    let dir = temp_dir("wrong-tee");
    let tsm = dir.join("report");
    std::fs::create_dir(&tsm).unwrap();
    let _mimic = Mimic::start(&tsm, tdx_scenario());
    let Err((code, err)) = WorkerProc::try_start(
        &[
            "--tee",
            "snp",
            "--compute",
            "cpu",
            "--tsm-path",
            tsm.to_str().unwrap(),
        ],
        &dir,
    ) else {
        panic!("started")
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("provider is \"tdx_guest\", expected \"sev_guest\""),
        "{err}"
    );
    assert!(err.contains("wrong provider for --tee"), "{err}");
}

/// `--tee auto` (and `pupa.tee=auto` on the kernel command line) takes the configfs-tsm
/// provider: SNP and TDX guests from their driver's name, a kernel without a TSM is a plain VM
/// and serves dev evidence (which clients refuse unless told otherwise).
#[test]
fn tee_auto_follows_the_tsm_provider() {
    use pupa_worker::{resolve_tee, TeeChoice};
    for (name, scenario, want) in [
        ("auto-snp", snp_scenario(), TeeChoice::Snp),
        ("auto-tdx", tdx_scenario(), TeeChoice::Tdx),
    ] {
        let dir = temp_dir(name).join("report");
        std::fs::create_dir(&dir).unwrap();
        let _mimic = Mimic::start(&dir, scenario);
        assert_eq!(resolve_tee(TeeChoice::Auto, &dir), want, "{name}");
    }
    let none = temp_dir("auto-none").join("no-such-report-dir");
    assert_eq!(resolve_tee(TeeChoice::Auto, &none), TeeChoice::Dev);
    // explicit choices are kept as given
    assert_eq!(resolve_tee(TeeChoice::Snp, &none), TeeChoice::Snp);
}
