//! `pupa-measure`: recompute SNP / TDX launch measurements of OVMF-format firmware offline.
//!
//! ```text
//! pupa-measure FIRMWARE --tee snp --vcpus N (--vcpu-type T | --vcpu-sig S) [--vmm-type QEMU|ec2|gce]
//!              [--guest-features 0x1] [--kernel K [--initrd I] [--append A]] [--dump-vmsa DIR] [--json]
//! pupa-measure FIRMWARE --tee tdx [--order single|twopass] [--event-log CCEL]
//!              [--kernel K [--initrd I] [--append A]] [--json]
//! pupa-measure check MANIFEST FIRMWARE [--json]
//! pupa-measure bench FIRMWARE [--runs N] [--json]
//! pupa-measure verify --tee snp|tdx|dev ... (see `verify::cli`)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pupa_measurements::hexfmt;
use pupa_measurements::snp::{self, CpuType, KernelHashes, SnpConfig, VmmType};
use pupa_measurements::tdx::{self, Order};
use pupa_measurements::tee_arg::{self, TeeKind};
use pupa_measurements::{eventlog, linux, manifest, Firmware};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "pupa-measure",
    version,
    about = "Recompute AMD SEV-SNP launch digests and Intel TDX MRTD/RTMRs of OVMF-format firmware, offline"
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    measure: MeasureArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Recompute every measurement listed in a manifest.json and compare.
    Check {
        /// manifest.json written by `pupa-image build`.
        manifest: PathBuf,
        /// The firmware image.
        firmware: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Time parsing + SNP digest + MRTD of a firmware (median of N runs).
    Bench {
        /// The firmware image.
        firmware: PathBuf,
        /// Number of timed runs.
        #[arg(long, default_value_t = 50)]
        runs: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Verify SNP / TDX / dev evidence against a policy (exit 0 only if every check passes).
    Verify(Box<pupa_measurements::verify::cli::VerifyArgs>),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Hex,
}

#[derive(Args)]
struct MeasureArgs {
    /// OVMF-format firmware image.
    #[arg(required = true)]
    firmware: Option<PathBuf>,
    /// Which TEE's measurement to compute.
    #[arg(long, required = true, value_parser = tee_arg::parser(&[TeeKind::Snp, TeeKind::Tdx]))]
    tee: Option<TeeKind>,
    /// SNP: number of vCPUs.
    #[arg(long)]
    vcpus: Option<u32>,
    /// SNP: vCPU model (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin; or Milan, Genoa, …).
    #[arg(long)]
    vcpu_type: Option<String>,
    /// SNP: vCPU CPUID signature (e.g. 0xA00F11).
    #[arg(long, value_parser = parse_u64)]
    vcpu_sig: Option<u64>,
    /// SNP: vCPU family (with --vcpu-model and --vcpu-stepping).
    #[arg(long, requires_all = ["vcpu_model", "vcpu_stepping"])]
    vcpu_family: Option<u32>,
    /// SNP: vCPU model number.
    #[arg(long)]
    vcpu_model: Option<u32>,
    /// SNP: vCPU stepping.
    #[arg(long)]
    vcpu_stepping: Option<u32>,
    /// SNP: hypervisor (QEMU, ec2, gce).
    #[arg(long, default_value = "QEMU")]
    vmm_type: String,
    /// SNP: SEV_FEATURES of the VMSAs, hex (0x1 = SNP only).
    #[arg(long, default_value = "0x1", value_parser = parse_u64)]
    guest_features: u64,
    /// The Linux payload's kernel (bzImage). SNP: measured direct boot (the firmware must have
    /// a SNP_KERNEL_HASHES section); TDX: the payload's RTMR[1] and RTMR[2] are printed too.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// The payload's initrd (with --kernel).
    #[arg(long, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// The payload's kernel command line (with --kernel).
    #[arg(long, requires = "kernel")]
    append: Option<String>,
    /// SNP: precomputed digest of the firmware pages (sev-snp-measure's --snp-ovmf-hash).
    #[arg(long)]
    snp_ovmf_hash: Option<String>,
    /// SNP: write the VMSA pages as DIR/vmsa<N>.bin.
    #[arg(long)]
    dump_vmsa: Option<PathBuf>,
    /// TDX: PAGE.ADD / MR.EXTEND ordering (single = QEMU >= 10.1 / Linux >= 6.16, twopass = older).
    #[arg(long, default_value = "single")]
    order: String,
    /// TDX: CCEL event log (the log area) to replay into RTMR0..3.
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// Output: table (default) or hex (the digest alone, as sev-snp-measure --output-format hex).
    #[arg(long, value_enum, default_value = "table")]
    output_format: OutputFormat,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number (decimal or 0x-hex): {e}"))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn load_firmware(path: &Path) -> Result<Firmware, String> {
    Firmware::parse(&read(path, "firmware")?).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Check {
            manifest,
            firmware,
            json,
        }) => run_check(&manifest, &firmware, json),
        Some(Cmd::Bench {
            firmware,
            runs,
            json,
        }) => run_bench(&firmware, runs, json),
        Some(Cmd::Verify(args)) => pupa_measurements::verify::cli::run(&args),
        None => run_measure(&cli.measure),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn snp_config(a: &MeasureArgs) -> Result<SnpConfig, String> {
    let vcpus = a.vcpus.ok_or("--tee snp needs --vcpus N")?;
    let vmm: VmmType = a.vmm_type.parse().map_err(|e| format!("{e}"))?;
    let vcpu_sig =
        if let (Some(f), Some(m), Some(s)) = (a.vcpu_family, a.vcpu_model, a.vcpu_stepping) {
            Some(u64::from(snp::cpu_sig(f, m, s)))
        } else if let Some(sig) = a.vcpu_sig {
            Some(sig)
        } else if let Some(t) = &a.vcpu_type {
            Some(u64::from(
                t.parse::<CpuType>().map_err(|e| e.to_string())?.sig(),
            ))
        } else {
            None
        };
    let kernel_hashes = match &a.kernel {
        None => None,
        Some(k) => {
            let kernel = read(k, "kernel")?;
            let initrd = a.initrd.as_deref().map(|p| read(p, "initrd")).transpose()?;
            Some(KernelHashes::new(
                &kernel,
                initrd.as_deref(),
                a.append.as_deref(),
            ))
        }
    };
    let ovmf_hash = a
        .snp_ovmf_hash
        .as_deref()
        .map(hexfmt::decode_array::<48>)
        .transpose()
        .map_err(|e| format!("--snp-ovmf-hash: {e}"))?;
    Ok(SnpConfig {
        vcpus,
        vcpu_sig,
        vmm,
        guest_features: a.guest_features,
        kernel_hashes,
        ovmf_hash,
    })
}

fn run_measure(a: &MeasureArgs) -> Result<ExitCode, String> {
    let path = a.firmware.as_deref().ok_or("missing FIRMWARE")?;
    let fw = load_firmware(path)?;
    let mut rows: Vec<(String, String)> = vec![(
        "firmware".into(),
        format!("{} ({} bytes)", path.display(), fw.len()),
    )];
    let tee = a.tee.ok_or("missing --tee snp|tdx")?;
    let (digest, mut obj) = match tee {
        TeeKind::Snp => {
            let cfg = snp_config(a)?;
            let (digest, vmsas) =
                snp::launch_digest_with_vmsas(&fw, &cfg).map_err(|e| e.to_string())?;
            if let Some(dir) = &a.dump_vmsa {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                for (i, p) in vmsas.iter().enumerate() {
                    let f = dir.join(format!("vmsa{i}.bin"));
                    std::fs::write(&f, &p[..])
                        .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
                }
            }
            let sig = cfg
                .vcpu_sig
                .map(|s| format!("{s:#x}"))
                .unwrap_or_else(|| "-".into());
            rows.extend([
                ("tee".into(), "SEV-SNP".into()),
                ("vmm".into(), cfg.vmm.to_string()),
                ("vcpus".into(), cfg.vcpus.to_string()),
                ("vcpu sig".into(), sig.clone()),
                (
                    "guest features".into(),
                    format!("{:#x}", cfg.guest_features),
                ),
                (
                    "kernel hashes".into(),
                    if cfg.kernel_hashes.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                ),
            ]);
            let obj = json!({
                "tee": tee.name(), "vmm_type": cfg.vmm, "vcpus": cfg.vcpus, "vcpu_sig": cfg.vcpu_sig,
                "guest_features": cfg.guest_features, "kernel_hashes": cfg.kernel_hashes.is_some(),
                "launch_digest": hexfmt::encode(&digest),
            });
            rows.push(("launch digest".into(), hexfmt::encode(&digest)));
            (digest, obj)
        }
        TeeKind::Tdx => {
            let order: Order = a.order.parse().map_err(|e| format!("{e}"))?;
            let mrtd = tdx::mrtd(&fw, order).map_err(|e| e.to_string())?;
            rows.extend([
                ("tee".into(), "TDX".into()),
                ("order".into(), order.to_string()),
            ]);
            rows.push(("MRTD".into(), hexfmt::encode(&mrtd)));
            let mut obj = json!({"tee": tee.name(), "order": order, "mrtd": hexfmt::encode(&mrtd)});
            if let Some(k) = &a.kernel {
                let kernel = read(k, "kernel")?;
                let initrd = a.initrd.as_deref().map(|p| read(p, "initrd")).transpose()?;
                let p = linux::tdx_payload_rtmrs(&kernel, initrd.as_deref(), a.append.as_deref());
                let (r1, r2) = (hexfmt::encode(&p.rtmr1), hexfmt::encode(&p.rtmr2));
                rows.push(("payload RTMR1".into(), r1.clone()));
                rows.push(("payload RTMR2".into(), r2.clone()));
                obj["payload_rtmrs"] = json!({"rtmr1": r1, "rtmr2": r2});
            }
            (mrtd, obj)
        }
        TeeKind::Dev => {
            return Err(
                "--tee dev has no launch measurement: dev evidence carries the image's \
                        SHA-384 (pupa-image build's manifest)"
                    .into(),
            )
        }
    };
    if let Some(log) = &a.event_log {
        let rtmrs = eventlog::replay(&read(log, "event log")?)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let hexes: Vec<String> = rtmrs.iter().map(|r| hexfmt::encode(r)).collect();
        for (i, h) in hexes.iter().enumerate() {
            rows.push((format!("RTMR{i}"), h.clone()));
        }
        obj["rtmrs"] = json!(hexes);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&obj).expect("serializable")
        );
    } else if a.output_format == OutputFormat::Hex {
        println!("{}", hexfmt::encode(&digest));
    } else {
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:<w$}  {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(manifest_path: &Path, firmware: &Path, json: bool) -> Result<ExitCode, String> {
    let text = String::from_utf8(read(manifest_path, "manifest")?)
        .map_err(|_| format!("{} is not UTF-8", manifest_path.display()))?;
    let fw = read(firmware, "firmware")?;
    let report = manifest::check(&text, &fw).map_err(|e| e.to_string())?;
    if json {
        let obj = json!({"all_match": report.all_match(), "rows": report.rows});
        println!(
            "{}",
            serde_json::to_string_pretty(&obj).expect("serializable")
        );
    } else {
        print!("{report}");
    }
    Ok(if report.all_match() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn run_bench(path: &Path, runs: u32, json: bool) -> Result<ExitCode, String> {
    let bytes = read(path, "firmware")?;
    let runs = runs.max(1);
    let mut results = Vec::new();
    type Job<'a> = Box<dyn Fn() -> Result<(), String> + 'a>;
    let jobs: Vec<(&str, Job)> = vec![
        (
            "parse",
            Box::new(|| Firmware::parse(&bytes).map(drop).map_err(|e| e.to_string())),
        ),
        (
            "parse + SNP digest (1 vCPU, EPYC-v4)",
            Box::new(|| {
                let fw = Firmware::parse(&bytes).map_err(|e| e.to_string())?;
                snp::launch_digest(&fw, &SnpConfig::new(1, CpuType::Epyc))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "parse + TDX MRTD (single)",
            Box::new(|| {
                let fw = Firmware::parse(&bytes).map_err(|e| e.to_string())?;
                tdx::mrtd(&fw, Order::Single)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        ),
    ];
    for (name, job) in &jobs {
        if let Err(e) = job() {
            results.push(json!({"what": name, "skipped": e}));
            continue;
        }
        let mut ms = Vec::with_capacity(runs as usize);
        for _ in 0..runs {
            let t = Instant::now();
            job()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (med, min, max) = median_min_max(ms);
        results.push(
            json!({"what": name, "median_ms": med, "min_ms": min, "max_ms": max, "runs": runs}),
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"firmware_bytes": bytes.len(), "results": results})
            )
            .expect("serializable")
        );
    } else {
        println!(
            "firmware {} ({} bytes), {runs} runs each",
            path.display(),
            bytes.len()
        );
        for r in &results {
            match r.get("median_ms") {
                Some(m) => println!(
                    "  {:<38} median {:>8.3} ms  (min {:.3}, max {:.3})",
                    r["what"].as_str().unwrap_or(""),
                    m.as_f64().unwrap_or(0.0),
                    r["min_ms"].as_f64().unwrap_or(0.0),
                    r["max_ms"].as_f64().unwrap_or(0.0)
                ),
                None => println!(
                    "  {:<38} skipped: {}",
                    r["what"].as_str().unwrap_or(""),
                    r["skipped"]
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
