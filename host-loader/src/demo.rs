//! `pupa-host demo`: the project's main job, end to end on one machine.
//!
//! 1. recompute the image's expected measurements and check them against `manifest.json`;
//! 2. boot the image as VM firmware under QEMU (KVM when it works here, else TCG) with the
//!    guest's service port forwarded to 127.0.0.1;
//! 3. as a client: fetch evidence for a fresh nonce, verify it (the dev evidence of a plain VM,
//!    accepted only because the demo says `allow_insecure_dev`, with a warning);
//! 4. seal an attention job and a matmul to the guest's key, run them, open the sealed results,
//!    check them against the host's f64 reference, verify each receipt's signature;
//!    print each receipt readably ([`crate::client::report`]): keys and hashes in hex, a TON
//!    receipt's BOC in hex and base64 with its cell hash and the price in TON;
//! 5. print measurement, results and receipts, and stop the guest.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use pupa_measurements::hexfmt::encode as hex;
use pupa_measurements::manifest;

use crate::client::jobspec::JobSpec;
use crate::client::{self, Connection, EvidencePolicy};
use crate::profile::{self, Accel, LaunchConfig, Network, TeeKind, Vmm};
use crate::vm::Guest;

/// Arguments of `pupa-host demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The firmware image.
    #[arg(long, default_value = "target/pupa/pupa.fd")]
    pub image: PathBuf,
    /// Its manifest.
    #[arg(long, default_value = "target/pupa/manifest.json")]
    pub manifest: PathBuf,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u32,
    /// Job descriptions (JSON) to run instead of the two built-in ones.
    #[arg(long)]
    pub job: Vec<PathBuf>,
}

/// The demo's two jobs: attention 4 heads × 256 tokens × 64 dims (causal, bf16) and a matmul.
pub const DEFAULT_JOBS: [&str; 2] = [
    r#"{"op":"attention","seq_q":256,"heads":4,"dim":64,"causal":true,"dtype":"bf16","seed":1}"#,
    r#"{"op":"matmul","m":128,"n":96,"k":160,"dtype":"f32","seed":2}"#,
];

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Run the demo; `Err` carries a one-line reason.
pub fn run(args: &DemoArgs) -> Result<(), String> {
    let image = std::fs::read(&args.image).map_err(|e| format!("{}: {e}", args.image.display()))?;
    let manifest_text = std::fs::read_to_string(&args.manifest)
        .map_err(|e| format!("{}: {e}", args.manifest.display()))?;
    show_measurement(&manifest_text, &image)?;
    let (mut guest, port) = boot(args)?;
    println!("== client");
    let addr = format!("127.0.0.1:{port}");
    let mut conn =
        Connection::connect(&addr, None, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let worker = client::fetch_and_verify(&mut conn, &policy).map_err(|e| e.to_string())?;
    println!(
        "  WARNING: the worker's evidence is the INSECURE development report (plain VM, no TEE);"
    );
    println!("           accepted only because this demo allows it (pupa-client needs --allow-insecure-dev)");
    println!(
        "  evidence: tee {}, fresh nonce bound in REPORT_DATA",
        worker.tee
    );
    println!("  guest hpke key    {}", hex(&worker.hpke_pk));
    println!("  guest receipt key {}", hex(&worker.receipt_pk));

    let specs: Vec<String> = if args.job.is_empty() {
        DEFAULT_JOBS.iter().map(|s| s.to_string()).collect()
    } else {
        args.job
            .iter()
            .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect::<Result<_, _>>()?
    };
    let mut failed = 0;
    for text in &specs {
        if !run_one(&mut conn, &worker, text)? {
            failed += 1;
        }
    }
    drop(conn);
    guest.stop();
    if failed > 0 {
        return Err(format!("{failed} job(s) differ from the reference"));
    }
    println!(
        "== done: {} jobs sealed, run in the guest, opened and checked",
        specs.len()
    );
    Ok(())
}

/// Recomputes the image's measurements and checks them against the manifest.
fn show_measurement(manifest_text: &str, image: &[u8]) -> Result<(), String> {
    println!("== measurement");
    let report =
        manifest::check(manifest_text, image).map_err(|e| format!("manifest check: {e}"))?;
    for row in report.rows.iter().filter(|r| {
        r.what.contains("sha384") || r.what.contains("TDX") || r.what.starts_with("SNP 1 vCPU")
    }) {
        println!(
            "  {:<48} {}  {}",
            row.what,
            if row.matches { "match" } else { "DIFFERS" },
            row.actual
        );
    }
    println!(
        "  ({} expected values recomputed from the image, {} match)",
        report.rows.len(),
        report.rows.iter().filter(|r| r.matches).count()
    );
    if !report.all_match() {
        return Err("the image does not match its manifest".into());
    }

    Ok(())
}

/// Boots the image with the job port forwarded from a free host port.
fn boot(args: &DemoArgs) -> Result<(Guest, u16), String> {
    println!("== boot");
    let accel = if profile::kvm_works(&args.image, Duration::from_secs(10)) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    println!(
        "  accelerator: {}",
        if accel == Accel::Kvm {
            "KVM"
        } else {
            "TCG (KVM unavailable or not working here)"
        }
    );
    let port = free_port()?;
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image: &args.image,
        memory_mib: args.memory_mib,
        vcpus: 1,
        accel,
        network: Network::UserForward {
            host_port: port,
            guest_port: 7000,
        },
        debug_exit: false,
        fw_cfg: vec![],
        payload: None,
    };
    let mut guest = Guest::start(&cfg).map_err(|e| e.to_string())?;
    guest
        .wait_for(
            "pupa: ready",
            Duration::from_secs(120),
            |l| l == "pupa: ready",
            |l| println!("  guest | {l}"),
        )
        .map_err(|e| e.to_string())?;

    Ok((guest, port))
}

/// Runs one job through `conn`; whether its result matched the reference.
fn run_one(
    conn: &mut Connection,
    worker: &client::VerifiedWorker,
    text: &str,
) -> Result<bool, String> {
    let spec = JobSpec::from_json(text).map_err(|e| format!("job {text}: {e}"))?;
    let built = spec.build().map_err(|e| format!("job {text}: {e}"))?;
    println!("== job {text}");
    let out = client::run_job(conn, worker, built.job).map_err(|e| e.to_string())?;
    let check = spec.check(&out.result).map_err(|e| e.to_string())?;
    println!(
        "  result: {} values, ‖out−ref‖/‖ref‖ = {:.3e} (bound {:.0e}) {}",
        built.out_dims.iter().map(|&d| d as u64).product::<u64>(),
        check.rel_err,
        check.tolerance,
        if check.passed { "OK" } else { "FAILED" }
    );
    println!(
        "  timing: seal {:.2} ms, round trip {:.2} ms, open+verify {:.2} ms ({} sealed bytes, {:.1} MFLOP)",
        out.timing.seal.as_secs_f64() * 1e3,
        out.timing.round_trip.as_secs_f64() * 1e3,
        out.timing.open_verify.as_secs_f64() * 1e3,
        out.sealed_bytes,
        built.flops as f64 / 1e6
    );
    for line in client::report::receipt_lines(&out.receipt) {
        println!("  {line}");
    }
    Ok(check.passed)
}
