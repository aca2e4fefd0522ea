//! `pupa-measure verify`: the arguments and the verdict table.
//!
//! ```text
//! pupa-measure verify --tee snp --report FILE [--vcek FILE] [POLICY]
//! pupa-measure verify --tee tdx --quote FILE --collateral FILE [--now RFC3339] [POLICY]
//! pupa-measure verify --dev-evidence FILE [POLICY] --allow-insecure-dev
//!   POLICY: --expect manifest.json | --measurement HEX... | --any-measurement;
//!           --report-data HEX | --hpke-pk HEX --receipt-pk HEX --nonce HEX;
//!           --min-tcb (SNP: bl=N,tee=N,snp=N,ucode=N | TDX: a TCB status); --allow-debug;
//!           --vmpl N; --allow-migration-agent; --allow-insecure-dev; --json
//! ```
//! Exit status 0 only if every check passes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{dev, snp, tdx, MeasurementPolicy, Policy, Verdict};
use crate::hexfmt;

/// Which evidence `verify` reads.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum VerifyTee {
    /// AMD SEV-SNP attestation report.
    Snp,
    /// Intel TDX quote v4.
    Tdx,
    /// Insecure development evidence (postcard `Evidence`).
    Dev,
}

/// Arguments of `pupa-measure verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Evidence kind (implied `dev` by --dev-evidence).
    #[arg(long, value_enum)]
    pub tee: Option<VerifyTee>,
    /// SNP: the attestation report (1184 bytes, raw or hex).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// SNP: the VCEK certificate (DER or PEM).
    #[arg(long)]
    pub vcek: Option<PathBuf>,
    /// TDX: the quote (v4).
    #[arg(long)]
    pub quote: Option<PathBuf>,
    /// TDX: collateral JSON (TCB info, QE identity, CRLs, issuer chains).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// TDX: the time to check the collateral at, RFC 3339 (default: the system clock).
    #[arg(long)]
    pub now: Option<String>,
    /// Dev: a file holding the postcard bytes of a `pupa_protocol::evidence::Evidence`.
    #[arg(long)]
    pub dev_evidence: Option<PathBuf>,
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
    #[arg(long, requires_all = ["receipt_pk", "nonce"])]
    pub hpke_pk: Option<String>,
    /// REPORT_DATA binding: the guest's Ed25519 receipt public key (hex).
    #[arg(long, requires_all = ["hpke_pk", "nonce"])]
    pub receipt_pk: Option<String>,
    /// REPORT_DATA binding: the nonce (hex, 32 bytes).
    #[arg(long, requires_all = ["hpke_pk", "receipt_pk"])]
    pub nonce: Option<String>,
    /// Minimum TCB: SNP `bl=N,tee=N,snp=N,ucode=N`; TDX the worst accepted status
    /// (UpToDate, SWHardeningNeeded, ConfigurationNeeded, ..., OutOfDate). TDX default UpToDate.
    #[arg(long)]
    pub min_tcb: Option<String>,
    /// Accept debug-enabled guests.
    #[arg(long)]
    pub allow_debug: bool,
    /// SNP: required VMPL.
    #[arg(long, default_value_t = 0)]
    pub vmpl: u32,
    /// SNP: accept a guest policy that allows a migration agent.
    #[arg(long)]
    pub allow_migration_agent: bool,
    /// Accept insecure development evidence (prints a warning).
    #[arg(long)]
    pub allow_insecure_dev: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn need<'a>(p: &'a Option<PathBuf>, flag: &str, tee: &str) -> Result<&'a Path, String> {
    p.as_deref()
        .ok_or_else(|| format!("--tee {tee} needs {flag} FILE"))
}

fn policy(a: &VerifyArgs, tee: &str) -> Result<Policy, String> {
    let measurement = if let Some(m) = &a.expect {
        let text = String::from_utf8(read(m, "manifest")?)
            .map_err(|_| format!("{}: not UTF-8", m.display()))?;
        MeasurementPolicy::from_manifest(&text, tee).map_err(|e| e.to_string())?
    } else if !a.measurement.is_empty() {
        MeasurementPolicy::OneOf(
            a.measurement
                .iter()
                .map(|h| {
                    hexfmt::decode_array::<48>(h).map_err(|e| format!("--measurement {h:?}: {e}"))
                })
                .collect::<Result<_, _>>()?,
        )
    } else if a.any_measurement {
        MeasurementPolicy::Any
    } else {
        return Err("choose a measurement policy: --expect manifest.json, --measurement HEX or --any-measurement".into());
    };
    let hex32 = |s: &Option<String>, flag: &str| -> Result<[u8; 32], String> {
        hexfmt::decode_array::<32>(s.as_deref().unwrap_or_default())
            .map_err(|e| format!("{flag}: {e}"))
    };
    let report_data = match (&a.report_data, &a.hpke_pk) {
        (Some(h), _) => {
            Some(hexfmt::decode_array::<64>(h).map_err(|e| format!("--report-data: {e}"))?)
        }
        (None, Some(_)) => Some(pupa_protocol::evidence::report_data(
            &hex32(&a.hpke_pk, "--hpke-pk")?,
            &hex32(&a.receipt_pk, "--receipt-pk")?,
            &hex32(&a.nonce, "--nonce")?,
        )),
        (None, None) => None,
    };
    let mut p = Policy {
        measurement,
        report_data,
        allow_debug: a.allow_debug,
        snp_vmpl: a.vmpl,
        allow_migration_agent: a.allow_migration_agent,
        allow_insecure_dev: a.allow_insecure_dev,
        ..Policy::default()
    };
    if let Some(t) = &a.min_tcb {
        match tee {
            "snp" => {
                p.snp_min_tcb = Some(t.parse().map_err(|e: super::VerifyError| e.to_string())?)
            }
            "tdx" => p.tdx_min_status = t.parse().map_err(|e: super::VerifyError| e.to_string())?,
            _ => return Err("--min-tcb applies to SNP and TDX evidence only".into()),
        }
    }
    Ok(p)
}

/// Runs `pupa-measure verify`; `Ok(code)` is 0 only if every check passed.
pub fn run(a: &VerifyArgs) -> Result<ExitCode, String> {
    let tee = match (a.tee, &a.dev_evidence) {
        (Some(VerifyTee::Dev) | None, Some(_)) => VerifyTee::Dev,
        (Some(t), None) => t,
        (Some(_), Some(_)) => return Err("--dev-evidence goes with --tee dev (or no --tee)".into()),
        (None, None) => return Err("give --tee snp|tdx (or --dev-evidence FILE)".into()),
    };
    let verdict = match tee {
        VerifyTee::Snp => {
            let p = policy(a, "snp")?;
            let report = snp::load_report(&read(need(&a.report, "--report", "snp")?, "report")?)
                .map_err(|e| e.to_string())?;
            let vcek = a.vcek.as_deref().map(|f| read(f, "VCEK")).transpose()?;
            snp::verify(&report, vcek.as_deref(), &p).map_err(|e| e.to_string())?
        }
        VerifyTee::Tdx => {
            let p = policy(a, "tdx")?;
            let quote = read(need(&a.quote, "--quote", "tdx")?, "quote")?;
            let coll = tdx::parse_collateral(&read(
                need(&a.collateral, "--collateral", "tdx")?,
                "collateral",
            )?)
            .map_err(|e| e.to_string())?;
            let now = match &a.now {
                Some(s) => tdx::parse_now(s).map_err(|e| e.to_string())?,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| format!("system clock: {e}"))?
                    .as_secs(),
            };
            tdx::verify(&quote, &coll, now, &p).map_err(|e| e.to_string())?
        }
        VerifyTee::Dev => {
            let p = policy(a, "dev")?;
            let file = a
                .dev_evidence
                .as_deref()
                .ok_or("--tee dev needs --dev-evidence FILE")?;
            let ev =
                dev::decode_evidence(&read(file, "dev evidence")?).map_err(|e| e.to_string())?;
            dev::verify(&ev, &p).map_err(|e| e.to_string())?
        }
    };
    print(&verdict, a.json);
    Ok(if verdict.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print(v: &Verdict, json: bool) {
    for w in &v.warnings {
        eprintln!("WARNING: {w}");
    }
    if json {
        let out = serde_json::json!({ "tee": v.tee, "ok": v.ok(), "checks": v.checks, "warnings": v.warnings });
        println!("{out}");
        return;
    }
    println!("evidence: {}", v.tee.to_uppercase());
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
