//! `pupa-image build`: compile the guest, assemble `pupa.fd`, check it, write `manifest.json`.
//!
//! Reproducibility: the guest is built with the toolchain pinned in `rust-toolchain.toml`, the
//! committed `Cargo.lock` (`--locked`), one codegen unit and fat LTO (`[profile.firmware]`),
//! `-Ztrim-paths` (no absolute paths of the checkout, `$CARGO_HOME` or the sysroot in the
//! binary), no build id, and a cleared `RUSTFLAGS`. The assembled image is then scanned for
//! anything that looks like an absolute path and refused if one is found.

use std::path::{Path, PathBuf};
use std::process::Command;

use pupa_measurements::hexfmt;
use pupa_measurements::ovmf::Firmware;
use sha2::{Digest, Sha384};

use crate::{elf, layout, ROM_SIZE};

/// The guest's custom target, relative to the source root.
pub const TARGET_SPEC: &str = "guest/x86_64-pupa.json";
/// The cargo profile of the firmware.
pub const PROFILE: &str = "firmware";

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The workspace root (holds `rust-toolchain.toml`, `Cargo.lock`, `guest/`).
    pub src: PathBuf,
    /// Where `pupa.fd` and `manifest.json` go.
    pub out: PathBuf,
    /// Cargo target dir for the guest build (default `<src>/target`).
    pub target_dir: Option<PathBuf>,
    /// Extra guest features (e.g. `fault-test` for test builds).
    pub features: Vec<String>,
    /// Skip computing the expected measurements (faster; the manifest then has none).
    pub skip_measurements: bool,
    /// Build with this `CARGO_HOME` (the reproducibility check uses a fresh one).
    pub cargo_home: Option<PathBuf>,
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildOutput {
    pub image: PathBuf,
    pub manifest: PathBuf,
    pub sha384: String,
    pub size: u64,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} is not a pupa source tree (no guest/Cargo.toml)")]
    NotSource(PathBuf),
    #[error("could not run cargo: {0}")]
    Spawn(std::io::Error),
    #[error("the guest build failed (cargo exit status {0})")]
    Cargo(std::process::ExitStatus),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    #[error("the assembled image does not parse as OVMF firmware: {0}")]
    Ovmf(#[from] pupa_measurements::ovmf::OvmfError),
    #[error("early memory is not declared in the metadata:\n  {}", .0.join("\n  "))]
    Layout(Vec<String>),
    #[error("the image contains an absolute path ({0:?}): the build is not reproducible")]
    AbsolutePath(String),
    #[error("expected measurements: {0}")]
    Measurements(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |err| BuildError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The workspace this binary was built from (the default `--src`).
pub fn default_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Compile the guest ELF; returns its path.
pub fn compile_guest(opts: &BuildOptions) -> Result<PathBuf, BuildError> {
    if !opts.src.join("guest/Cargo.toml").is_file() {
        return Err(BuildError::NotSource(opts.src.clone()));
    }
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| opts.src.join("target"));
    let mut features = vec!["firmware".to_string()];
    features.extend(opts.features.iter().cloned());
    let mut cmd = Command::new("cargo"); // the rustup proxy: it honours rust-toolchain.toml in `src`
    cmd.current_dir(&opts.src)
        .args([
            "build",
            "--locked",
            "-p",
            "pupa-guest",
            "--bin",
            "pupa-guest",
        ])
        .args(["--features", &features.join(",")])
        .args(["--target", TARGET_SPEC, "--profile", PROFILE])
        .args([
            "-Zjson-target-spec",
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
            "-Ztrim-paths",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_FIRMWARE_TRIM_PATHS", "all")
        .env("PUPA_ROM_SIZE", format!("{ROM_SIZE:#x}"))
        // Whatever the caller's environment says, the image is built from the sources alone.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        // A cargo/rustc from an outer `cargo run`/`cargo test` would bypass rust-toolchain.toml.
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR");
    if let Some(home) = &opts.cargo_home {
        cmd.env("CARGO_HOME", home);
    }
    let status = cmd.status().map_err(BuildError::Spawn)?;
    if !status.success() {
        return Err(BuildError::Cargo(status));
    }
    Ok(target_dir
        .join("x86_64-pupa")
        .join(PROFILE)
        .join("pupa-guest"))
}

/// Substrings that betray an absolute build path.
// ("/rustc/<commit>/library/..." is the toolchain's canonical remapped prefix: no machine path.)
const PATH_MARKERS: [&str; 6] = [
    "/root/",
    "/home/",
    "/work/",
    "/tmp/",
    "/.cargo/",
    "/.rustup/",
];

/// Assemble the image from the guest ELF and run every check; returns (image, parsed, sections).
pub fn assemble(
    elf_bytes: &[u8],
) -> Result<(Vec<u8>, Firmware, Vec<elf::AllocSection>), BuildError> {
    let image = elf::flatten(elf_bytes, ROM_SIZE)?;
    let fw = Firmware::parse(&image)?;
    let sections = elf::alloc_sections(elf_bytes)?;
    let problems = layout::check(&sections, &fw);
    if !problems.is_empty() {
        return Err(BuildError::Layout(problems));
    }
    for m in PATH_MARKERS {
        if image.windows(m.len()).any(|w| w == m.as_bytes()) {
            return Err(BuildError::AbsolutePath(m.to_string()));
        }
    }
    Ok((image, fw, sections))
}

fn toolchain(src: &Path) -> serde_json::Value {
    let pinned = std::fs::read_to_string(src.join("rust-toolchain.toml"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.trim_start().starts_with("channel"))
                .map(|l| l.split('"').nth(1).unwrap_or("").to_string())
        })
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .current_dir(src)
        .env_remove("RUSTUP_TOOLCHAIN")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({ "channel": pinned, "rustc": rustc, "target": TARGET_SPEC, "profile": PROFILE })
}

/// Build `pupa.fd` and `manifest.json` into `opts.out`.
pub fn build(opts: &BuildOptions) -> Result<BuildOutput, BuildError> {
    let elf_path = compile_guest(opts)?;
    let elf_bytes = std::fs::read(&elf_path).map_err(io(&elf_path))?;
    let (image, fw, sections) = assemble(&elf_bytes)?;
    let sha384 = hexfmt::encode(&Sha384::digest(&image));

    let measurements = if opts.skip_measurements {
        serde_json::Value::Null
    } else {
        let m = pupa_measurements::manifest::expected_measurements(&fw)
            .map_err(|e| BuildError::Measurements(e.to_string()))?;
        serde_json::to_value(m).map_err(|e| BuildError::Measurements(e.to_string()))?
    };
    let manifest = serde_json::json!({
        "format": "pupa-manifest/v1",
        "image": {
            "file": "pupa.fd",
            "sha384": sha384,
            "size": image.len(),
            "load_gpa": format!("{:#x}", fw.load_gpa()),
            "features": opts.features,
        },
        "version": env!("CARGO_PKG_VERSION"),
        "toolchain": toolchain(&opts.src),
        "layout": {
            "sections": sections.iter().map(|s| serde_json::json!({
                "name": s.name, "vma": format!("{:#x}", s.vma), "lma": format!("{:#x}", s.lma),
                "size": format!("{:#x}", s.size), "nobits": s.nobits,
            })).collect::<Vec<_>>(),
            "sev": fw.sev_sections().unwrap_or_default().iter().map(|s| serde_json::json!({
                "type": s.kind.name(), "gpa": format!("{:#x}", s.gpa), "size": format!("{:#x}", s.size),
            })).collect::<Vec<_>>(),
            "sev_es_reset_eip": fw.sev_es_reset_eip().map(|e| format!("{e:#x}")),
            "tdvf": fw.tdvf_sections().unwrap_or_default().iter().map(|s| serde_json::json!({
                "type": s.kind.name(), "gpa": format!("{:#x}", s.gpa), "mem_size": format!("{:#x}", s.mem_size),
                "data_offset": format!("{:#x}", s.data_offset), "raw_size": format!("{:#x}", s.raw_size),
                "mr_extend": s.mr_extend(), "page_aug": s.page_aug(),
            })).collect::<Vec<_>>(),
        },
        "measurements": measurements,
    });
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let image_path = opts.out.join("pupa.fd");
    std::fs::write(&image_path, &image).map_err(io(&image_path))?;
    let manifest_path = opts.out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| BuildError::Measurements(e.to_string()))?
        + "\n";
    std::fs::write(&manifest_path, text).map_err(io(&manifest_path))?;
    Ok(BuildOutput {
        image: image_path,
        manifest: manifest_path,
        sha384,
        size: image.len() as u64,
    })
}
