//! `pupa-image`: build the measured firmware image, or inspect any OVMF-format firmware.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pupa_image::build::{self, BuildOptions};
use pupa_image::initramfs;
use pupa_image::payload::{self, PayloadOptions};
use pupa_measurements::hexfmt::encode as hex;
use pupa_measurements::ovmf::Firmware;
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(
    name = "pupa-image",
    version,
    about = "Build and inspect pupa firmware images"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the guest and write DIR/pupa.fd and DIR/manifest.json.
    Build(BuildArgs),
    /// Write a deterministic initramfs (newc cpio, uncompressed): /init, /dev/console and the
    /// modules, listed in lib/modules/pupa.order in the order given (the load order).
    Initramfs {
        /// The executable to run as /init (a static pupa-worker).
        #[arg(long)]
        init: PathBuf,
        /// A kernel module (.ko) to include and load at boot; repeat, in load order.
        #[arg(long)]
        module: Vec<PathBuf>,
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the GUID table, SEV and TDVF metadata of an OVMF-format firmware file.
    Inspect {
        file: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `pupa-image build`.
#[derive(clap::Args)]
struct BuildArgs {
    /// Output directory [default: <src>/target/pupa].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The pupa source tree [default: the one this tool was built from].
    #[arg(long)]
    src: Option<PathBuf>,
    /// Cargo target directory for the guest [default: <src>/target].
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// Extra guest features (test builds: fault-test).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Do not compute the expected measurements.
    #[arg(long)]
    no_measurements: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// What the firmware boots: the built-in unikernel runtime, or Linux with pupa-worker
    /// as /init (writes DIR/linux/{vmlinuz,initramfs.cpio,cmdline} and the manifest's
    /// "payload"; needs apt-get, dpkg-deb, xz and Rust 1.95.0 with the musl target).
    #[arg(long, value_enum, default_value_t = PayloadKind::Unikernel)]
    payload: PayloadKind,
    /// The Linux payload without the GPU part (NVIDIA's 535 open kernel modules, built against
    /// the pinned kernel, and their GSP firmware: image/nvidia.lock).
    #[arg(long)]
    no_gpu: bool,
    /// Where the kernel .deb is downloaded and unpacked [default: <src>/target/linux-deb].
    #[arg(long)]
    deb_cache: Option<PathBuf>,
    /// The Linux payload's kernel command line [default: payload::DEFAULT_CMDLINE].
    #[arg(long)]
    cmdline: Option<String>,
}

/// `--payload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PayloadKind {
    /// The runtime inside the firmware (no payload files).
    Unikernel,
    /// Linux with pupa-worker as PID 1.
    Linux,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pupa-image: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Build(args) => build_cmd(args),
        Cmd::Initramfs { init, module, out } => write_initramfs(&init, &module, &out),
        Cmd::Inspect { file, json } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let fw = Firmware::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            if json {
                println!("{}", inspect_json(&fw));
            } else {
                print!("{}", fw.describe());
            }
            Ok(())
        }
    }
}

fn build_cmd(a: BuildArgs) -> Result<(), String> {
    match a.payload {
        PayloadKind::Unikernel if a.no_gpu || a.deb_cache.is_some() || a.cmdline.is_some() => {
            return Err("--no-gpu, --deb-cache and --cmdline apply to --payload linux".into())
        }
        _ => {}
    }
    let src = a.src.unwrap_or_else(build::default_src);
    let out = a.out.unwrap_or_else(|| src.join("target/pupa"));
    let opts = BuildOptions {
        src: src.clone(),
        out: out.clone(),
        target_dir: a.target_dir.clone(),
        features: a.features,
        skip_measurements: a.no_measurements,
        cargo_home: None,
    };
    let r = build::build(&opts).map_err(|e| e.to_string())?;
    let linux = if a.payload == PayloadKind::Linux {
        let mut p = PayloadOptions::new(&src, &out);
        p.skip_measurements = a.no_measurements;
        p.gpu = !a.no_gpu;
        if let Some(t) = &a.target_dir {
            p.worker_target_dir = t.join("musl");
        }
        if let Some(d) = a.deb_cache {
            p.deb_cache = d;
        }
        if let Some(c) = a.cmdline {
            p.cmdline = c;
        }
        Some(payload::build(&p).map_err(|e| e.to_string())?)
    } else {
        None
    };
    print_build(&r, linux.as_ref(), a.json);
    Ok(())
}

fn print_build(r: &build::BuildOutput, linux: Option<&payload::PayloadOutput>, json: bool) {
    if json {
        let mut v = serde_json::json!({
            "image": r.image, "manifest": r.manifest, "sha384": r.sha384, "size": r.size,
        });
        if let Some(l) = linux {
            v["linux"] = serde_json::json!({
                "kernel": l.kernel, "initrd": l.initrd, "cmdline": l.cmdline,
                "kernel_size": l.kernel_size, "initrd_size": l.initrd_size,
                "modules": l.modules.load.len(), "worker_size": l.worker_size,
                "worker_build_seconds": l.worker_build_time.as_secs_f64(),
                "snp_missing": l.snp_note,
            });
            if let Some(g) = &l.gpu {
                v["linux"]["gpu"] = serde_json::json!({
                    "driver_version": g.driver_version,
                    "modules": g.modules, "firmware": g.firmware,
                    "initrd_size_without_gpu": g.initrd_size_without_gpu,
                    "userspace_bytes": g.userspace_bytes,
                    "build_seconds": g.build_time.as_secs_f64(), "cached": g.cached,
                });
            }
        }
        println!("{v}");
        return;
    }
    println!("image     {}", r.image.display());
    println!("manifest  {}", r.manifest.display());
    println!("size      {} bytes ({} KiB)", r.size, r.size / 1024);
    println!("sha384    {}", r.sha384);
    let Some(l) = linux else { return };
    let names: Vec<&str> = l.modules.load.iter().map(|m| m.file_name()).collect();
    println!("kernel    {} ({} bytes)", l.kernel.display(), l.kernel_size);
    println!(
        "initramfs {} ({} bytes, {} modules: {}; pupa-worker {} bytes, cargo {:.1} s)",
        l.initrd.display(),
        l.initrd_size,
        names.len(),
        names.join(" "),
        l.worker_size,
        l.worker_build_time.as_secs_f64()
    );
    if let Some(g) = &l.gpu {
        let mods: Vec<String> = g
            .modules
            .iter()
            .map(|(f, xz, ko)| format!("{f} {xz} bytes ({ko} stripped)"))
            .collect();
        let fw: Vec<String> = g
            .firmware
            .iter()
            .map(|(p, n)| format!("{p} {n} bytes"))
            .collect();
        let how = if g.cached {
            "from the cache".to_string()
        } else {
            format!("built in {:.1} s", g.build_time.as_secs_f64())
        };
        println!(
            "gpu       NVIDIA {} open modules ({how}): {}; firmware {}",
            g.driver_version,
            mods.join(", "),
            fw.join(", ")
        );
        println!(
            "initramfs {} bytes with the GPU part ({} bytes of glibc, NVIDIA user space and \
             cubins), {} bytes without",
            l.initrd_size, g.userspace_bytes, g.initrd_size_without_gpu
        );
    }
    println!("cmdline   {}", l.cmdline.display());
    if let Some(n) = &l.snp_note {
        println!("warning   no SNP launch digests with kernel hashes: {n}");
    }
}

fn write_initramfs(init: &Path, modules: &[PathBuf], out: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut mods = Vec::new();
    for m in modules {
        let name = m
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", m.display()))?;
        mods.push((name.to_string(), read(m)?));
    }
    let bytes = initramfs::payload(&read(init)?, &mods).map_err(|e| e.to_string())?;
    std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("initramfs {}", out.display());
    println!("size      {} bytes", bytes.len());
    println!("sha256    {}", hex(&Sha256::digest(&bytes)));
    Ok(())
}

fn inspect_json(fw: &Firmware) -> serde_json::Value {
    serde_json::json!({
        "size": fw.len(),
        "load_gpa": fw.load_gpa(),
        "entries": fw.entries().iter().map(|e| serde_json::json!({
            "guid": e.guid.to_string(), "offset": e.offset, "len": e.data.len(),
        })).collect::<Vec<_>>(),
        "sev": fw.sev_sections().map(|s| s.iter().map(|s| serde_json::json!({
            "type": s.kind.name(), "gpa": s.gpa, "size": s.size,
        })).collect::<Vec<_>>()),
        "sev_es_reset_eip": fw.sev_es_reset_eip(),
        "tdvf": fw.tdvf_sections().map(|s| s.iter().map(|s| serde_json::json!({
            "type": s.kind.name(), "gpa": s.gpa, "mem_size": s.mem_size, "data_offset": s.data_offset,
            "raw_size": s.raw_size, "mr_extend": s.mr_extend(), "page_aug": s.page_aug(),
        })).collect::<Vec<_>>()),
    })
}
