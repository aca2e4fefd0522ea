//! `pupa-measure verify`: the arguments and the verdict table.
//!
//! ```text
//! pupa-measure verify --evidence FILE [--vcek FILE] [--collateral FILE] [--now RFC3339] [POLICY]
//! pupa-measure verify --tee snp --report FILE [--vcek FILE] [--now RFC3339] [POLICY]
//! pupa-measure verify --tee tdx --quote FILE --collateral FILE [--event-log FILE] [--now RFC3339] [POLICY]
//! pupa-measure verify --dev-evidence FILE [POLICY] --allow-insecure-dev   (= --evidence)
//!   POLICY: [--policy FILE (TOML, see `policy_file`)], then flags, which override the file:
//!           --expect manifest.json | --measurement HEX... | --any-measurement;
//!           --report-data HEX | --hpke-pk HEX --receipt-pk HEX --nonce HEX;
//!           --min-tcb (SNP: bl=N,tee=N,snp=N,ucode=N | TDX: a TCB status); --allow-debug[=BOOL];
//!           --vmpl N; --allow-migration-agent[=BOOL]; --allow-insecure-dev[=BOOL];
//!           --tdx-vcpus N; --tdx-min-ram-mib N; --require-gpus N;
//!           --gpu-driver-version V...; --gpu-vbios-version V...; --json
//!   GPUs (evidence with GPU reports): --gpu-rim FILE... (driver and VBIOS RIMs),
//!           --gpu-ocsp FILE... (DER OCSP responses for the GPU chain's certificates), or
//!           --gpu-skip-revocation (OCSP not checked: a warning instead of a failure)
//! pupa-measure verify --gpu-report FILE --gpu-chain FILE --gpu-nonce HEX [--gpu-rim FILE...]
//!           [--gpu-ocsp FILE... | --gpu-skip-revocation] [--now RFC3339]   (one report on its own)
//! ```
//! With `--evidence`, REPORT_DATA must be the binding of the evidence's own keys and nonce;
//! `--nonce`, `--hpke-pk`, `--receipt-pk` then pin what the evidence must carry (own checks).
//! Exit status 0 only if every check passes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{evidence, gpu, snp, tdx, tdx_log, Endorsements, PolicyKnobs, Verdict};
use crate::tee_arg::{self, TeeKind};

/// Arguments of `pupa-measure verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Evidence kind: snp (attestation report), tdx (quote v4), dev (insecure development
    /// evidence, with --evidence only); with --evidence it must match the evidence's.
    #[arg(long, value_parser = tee_arg::parser(&[TeeKind::Snp, TeeKind::Tdx, TeeKind::Dev]))]
    pub tee: Option<TeeKind>,
    /// SNP: the attestation report (1184 bytes, raw or hex).
    #[arg(long, conflicts_with = "evidence")]
    pub report: Option<PathBuf>,
    /// SNP: the VCEK certificate (DER or PEM); used instead of one inside --evidence.
    #[arg(long)]
    pub vcek: Option<PathBuf>,
    /// TDX: the quote (v4).
    #[arg(long, conflicts_with = "evidence")]
    pub quote: Option<PathBuf>,
    /// TDX: collateral JSON (TCB info, QE identity, CRLs, issuer chains).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// TDX: the guest's RTMR event log served with the quote (inside --evidence already).
    #[arg(long, conflicts_with = "evidence")]
    pub event_log: Option<PathBuf>,
    /// The verification time (VCEK validity, TDX collateral), RFC 3339; default the system clock.
    #[arg(long)]
    pub now: Option<String>,
    /// Evidence of any TEE: the postcard bytes of a `pupa_protocol::evidence::Evidence` (what
    /// the guest serves). `--dev-evidence` is an alias.
    #[arg(long, visible_alias = "dev-evidence")]
    pub evidence: Option<PathBuf>,
    /// Policy file (TOML; keys as the flags, e.g. `expect`, `allow_debug`, `snp_min_tcb`,
    /// `tdx_min_tcb`); flags given here override it.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Expected measurements from a manifest.json (`pupa-image build`).
    #[arg(long, conflicts_with_all = ["measurement", "any_measurement"])]
    pub expect: Option<PathBuf>,
    /// Expected measurement, 96 hex characters (repeatable).
    #[arg(long, conflicts_with = "any_measurement")]
    pub measurement: Vec<String>,
    /// Accept any measurement.
    #[arg(long)]
    pub any_measurement: bool,
    /// Expected REPORT_DATA, 128 hex characters.
    #[arg(long, conflicts_with_all = ["hpke_pk", "receipt_pk", "nonce"])]
    pub report_data: Option<String>,
    /// REPORT_DATA binding: the guest's X25519 HPKE public key (hex).
    #[arg(long)]
    pub hpke_pk: Option<String>,
    /// REPORT_DATA binding: the guest's Ed25519 receipt public key (hex).
    #[arg(long)]
    pub receipt_pk: Option<String>,
    /// REPORT_DATA binding: the nonce (hex, 32 bytes); with --evidence, the nonce it must answer.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Minimum TCB: SNP `bl=N,tee=N,snp=N,ucode=N`; TDX the worst accepted status
    /// (UpToDate, SWHardeningNeeded, ConfigurationNeeded, ..., OutOfDate). TDX default UpToDate.
    #[arg(long)]
    pub min_tcb: Option<String>,
    /// Accept debug-enabled guests (`--allow-debug=false` overrides a policy file).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_debug: Option<bool>,
    /// TDX: the vCPU count the boot configuration (RTMR\[2\] event log) must record.
    #[arg(long)]
    pub tdx_vcpus: Option<u32>,
    /// TDX: the least RAM, in MiB, the boot configuration must record.
    #[arg(long)]
    pub tdx_min_ram_mib: Option<u64>,
    /// SNP: required VMPL (default 0).
    #[arg(long)]
    pub vmpl: Option<u32>,
    /// SNP: accept a guest policy that allows a migration agent.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_migration_agent: Option<bool>,
    /// Accept insecure development evidence (prints a warning).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_insecure_dev: Option<bool>,
    /// GPUs: at least this many attested GPUs in the evidence.
    #[arg(long)]
    pub require_gpus: Option<u32>,
    /// GPUs: an allowed driver version (repeatable; default any).
    #[arg(long)]
    pub gpu_driver_version: Vec<String>,
    /// GPUs: an allowed VBIOS version (repeatable; default any).
    #[arg(long)]
    pub gpu_vbios_version: Vec<String>,
    /// GPUs: a driver or VBIOS reference integrity manifest (signed SWID tag; repeatable).
    #[arg(long)]
    pub gpu_rim: Vec<PathBuf>,
    /// GPUs: accept the certificates without a revocation (OCSP) check, reported as a warning.
    #[arg(long)]
    pub gpu_skip_revocation: bool,
    /// GPUs: a DER OCSP response (RFC 6960) for a certificate of the GPU chain (repeatable);
    /// every certificate below the root needs a current, signed, good one.
    #[arg(long)]
    pub gpu_ocsp: Vec<PathBuf>,
    /// One NVIDIA GPU attestation report (hex as NVIDIA stores it, or binary), verified on its
    /// own with --gpu-chain and --gpu-nonce.
    #[arg(long, conflicts_with_all = ["evidence", "report", "quote"], requires_all = ["gpu_chain", "gpu_nonce"])]
    pub gpu_report: Option<PathBuf>,
    /// The GPU attestation key's PEM certificate chain (with --gpu-report).
    #[arg(long)]
    pub gpu_chain: Option<PathBuf>,
    /// The nonce the GPU report must answer, 64 hex characters (with --gpu-report).
    #[arg(long)]
    pub gpu_nonce: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn need<'a>(p: &'a Option<PathBuf>, flag: &str, tee: TeeKind) -> Result<&'a Path, String> {
    p.as_deref()
        .ok_or_else(|| format!("--tee {tee} needs {flag} FILE"))
}

/// The policy file (if any) overridden by the flags, for evidence of kind `tee`.
fn knobs(a: &VerifyArgs, tee: TeeKind) -> Result<PolicyKnobs, String> {
    let mut flags = PolicyKnobs {
        expect: a.expect.clone(),
        measurements: (!a.measurement.is_empty()).then(|| a.measurement.clone()),
        any_measurement: a.any_measurement.then_some(true),
        report_data: a.report_data.clone(),
        hpke_pk: a.hpke_pk.clone(),
        receipt_pk: a.receipt_pk.clone(),
        nonce: a.nonce.clone(),
        allow_debug: a.allow_debug,
        vmpl: a.vmpl,
        allow_migration_agent: a.allow_migration_agent,
        allow_insecure_dev: a.allow_insecure_dev,
        tdx_vcpus: a.tdx_vcpus,
        tdx_min_ram_mib: a.tdx_min_ram_mib,
        require_gpus: a.require_gpus,
        gpu_driver_versions: (!a.gpu_driver_version.is_empty())
            .then(|| a.gpu_driver_version.clone()),
        gpu_vbios_versions: (!a.gpu_vbios_version.is_empty()).then(|| a.gpu_vbios_version.clone()),
        gpu_rims: (!a.gpu_rim.is_empty()).then(|| a.gpu_rim.clone()),
        gpu_skip_revocation: a.gpu_skip_revocation.then_some(true),
        gpu_ocsp: (!a.gpu_ocsp.is_empty()).then(|| a.gpu_ocsp.clone()),
        ..PolicyKnobs::default()
    };
    if let Some(t) = &a.min_tcb {
        match tee {
            TeeKind::Snp => flags.snp_min_tcb = Some(t.clone()),
            TeeKind::Tdx => flags.tdx_min_tcb = Some(t.clone()),
            TeeKind::Dev => return Err("--min-tcb applies to SNP and TDX evidence only".into()),
        }
    }
    if tee != TeeKind::Tdx && (a.tdx_vcpus.is_some() || a.tdx_min_ram_mib.is_some()) {
        return Err("--tdx-vcpus and --tdx-min-ram-mib apply to TDX evidence only".into());
    }
    let file = match &a.policy {
        Some(f) => PolicyKnobs::load(f).map_err(|e| e.to_string())?,
        None => PolicyKnobs::default(),
    };
    Ok(file.overridden_by(&flags))
}

/// Verifies an `Evidence` file: REPORT_DATA = the binding of its keys and nonce, plus the
/// pinned keys / nonce.
fn verify_evidence_file(a: &VerifyArgs, file: &Path) -> Result<Verdict, String> {
    let err = |e: super::VerifyError| e.to_string();
    let ev = evidence::decode(&read(file, "evidence")?).map_err(err)?;
    let tee = evidence::tee_of(&ev);
    if let Some(t) = a.tee {
        if t != tee {
            return Err(format!(
                "--tee {t} but {} holds {tee} evidence",
                file.display()
            ));
        }
    }
    let k = knobs(a, tee)?;
    if k.report_data.is_some() {
        return Err(
            "with --evidence, REPORT_DATA is the binding of the evidence's own keys and \
             nonce: pin those with --hpke-pk / --receipt-pk / --nonce instead of report_data"
                .into(),
        );
    }
    let policy = k.policy_without_report_data(tee).map_err(err)?;
    let pins = k.pins().map_err(err)?;
    let end = Endorsements::load(a.vcek.as_deref(), a.collateral.as_deref(), a.now.as_deref())
        .and_then(|e| e.with_gpu_knobs(&k))
        .map_err(err)?;
    let mut v = evidence::verify(&ev, &ev.expected_report_data(), &policy, &end).map_err(err)?;
    evidence::check_pins(&mut v, &ev, &pins);
    Ok(v)
}

/// Verifies one NVIDIA GPU report on its own (`--gpu-report`): the report lines, the RIMs,
/// revocation and the version policy, as for a GPU inside evidence but over the given nonce.
fn verify_gpu_file(a: &VerifyArgs) -> Result<Verdict, String> {
    let err = |e: super::VerifyError| e.to_string();
    let report = read(
        a.gpu_report.as_deref().ok_or("--gpu-report FILE")?,
        "GPU report",
    )?;
    let chain = read(
        a.gpu_chain.as_deref().ok_or("--gpu-chain FILE")?,
        "GPU chain",
    )?;
    let nonce = a.gpu_nonce.as_deref().ok_or("--gpu-nonce HEX")?;
    let nonce =
        crate::hexfmt::decode_array::<32>(nonce.trim()).map_err(|e| format!("--gpu-nonce: {e}"))?;
    let k = knobs(a, TeeKind::Dev)?;
    let end = Endorsements::load(None, None, a.now.as_deref())
        .and_then(|e| e.with_gpu_knobs(&k))
        .map_err(err)?;
    let now = end.now_datetime().map_err(err)?;
    let policy = k.gpu_policy();
    let rims = gpu::evidence::load_rims(&end.gpu.rims, now);
    let mut v = Verdict::new(TeeKind::Dev);
    gpu::evidence::check_one(
        &mut v, "gpu", &report, &chain, &nonce, &rims, &policy, &end.gpu, now,
    );
    Ok(v)
}

/// Runs `pupa-measure verify`; `Ok(code)` is 0 only if every check passed.
pub fn run(a: &VerifyArgs) -> Result<ExitCode, String> {
    let err = |e: super::VerifyError| e.to_string();
    let verdict = match (&a.evidence, a.tee) {
        _ if a.gpu_report.is_some() => verify_gpu_file(a)?,
        (Some(f), _) => verify_evidence_file(a, f)?,
        (None, None) => return Err("give --evidence FILE, or --tee snp|tdx with its files".into()),
        (None, Some(TeeKind::Dev)) => return Err("--tee dev needs --evidence FILE".into()),
        (None, Some(tee @ TeeKind::Snp)) => {
            let p = knobs(a, tee)?.policy(tee).map_err(err)?;
            let report = snp::load_report(&read(need(&a.report, "--report", tee)?, "report")?)
                .map_err(err)?;
            let end = Endorsements::load(a.vcek.as_deref(), None, a.now.as_deref()).map_err(err)?;
            snp::verify(
                &report,
                end.vcek.as_deref(),
                end.now_secs().map_err(err)?,
                &p,
            )
            .map_err(err)?
        }
        (None, Some(tee @ TeeKind::Tdx)) => {
            let p = knobs(a, tee)?.policy(tee).map_err(err)?;
            let quote = read(need(&a.quote, "--quote", tee)?, "quote")?;
            let coll = need(&a.collateral, "--collateral", tee)?;
            let end = Endorsements::load(None, Some(coll), a.now.as_deref()).map_err(err)?;
            let coll = end.tdx_collateral.as_ref().ok_or("no collateral")?;
            let log = a
                .event_log
                .as_deref()
                .map(|f| read(f, "event log"))
                .transpose()?;
            let mut v = tdx::verify(&quote, coll, end.now_secs().map_err(err)?, &p).map_err(err)?;
            tdx_log::check(&mut v, &quote, log.as_deref(), &p.tdx_boot);
            v
        }
    };
    let title = match a.gpu_report {
        Some(_) => "GPU (NVIDIA attestation report)",
        None => verdict.tee.name(),
    };
    print(&verdict, a.json, title);
    Ok(if verdict.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print(v: &Verdict, json: bool, title: &str) {
    for w in &v.warnings {
        eprintln!("WARNING: {w}");
    }
    if json {
        let out = serde_json::json!({ "tee": v.tee.name(), "evidence": title, "ok": v.ok(), "checks": v.checks, "warnings": v.warnings });
        println!("{out}");
        return;
    }
    println!("evidence: {}", title.to_uppercase());
    let width = v
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    for c in &v.checks {
        let mark = if c.passed { "PASS" } else { "FAIL" };
        println!("  {mark}  {:<width$}  {}", c.name, c.detail);
    }
    let failed = v.checks.iter().filter(|c| !c.passed).count();
    if v.ok() {
        println!("verdict: ACCEPTED ({} checks passed)", v.checks.len());
    } else {
        println!(
            "verdict: REJECTED ({failed} of {} checks failed)",
            v.checks.len()
        );
    }
}
