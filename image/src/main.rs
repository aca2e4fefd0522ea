//! `pupa-image`: build the measured firmware image, or inspect any OVMF-format firmware.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pupa_image::build::{self, BuildOptions};
use pupa_image::initramfs;
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
    Build {
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
    },
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
        Cmd::Build {
            out,
            src,
            target_dir,
            features,
            no_measurements,
            json,
        } => {
            let src = src.unwrap_or_else(build::default_src);
            let out = out.unwrap_or_else(|| src.join("target/pupa"));
            let opts = BuildOptions {
                src,
                out,
                target_dir,
                features,
                skip_measurements: no_measurements,
                cargo_home: None,
            };
            let r = build::build(&opts).map_err(|e| e.to_string())?;
            if json {
                let v = serde_json::json!({
                    "image": r.image, "manifest": r.manifest, "sha384": r.sha384, "size": r.size,
                });
                println!("{v}");
            } else {
                println!("image     {}", r.image.display());
                println!("manifest  {}", r.manifest.display());
                println!("size      {} bytes ({} KiB)", r.size, r.size / 1024);
                println!("sha384    {}", r.sha384);
            }
            Ok(())
        }
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
