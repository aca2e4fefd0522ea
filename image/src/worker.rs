//! The static `pupa-worker` (`/init` of the Linux payload), built reproducibly.
//!
//! Toolchain [`TOOLCHAIN`] through rustup (`cargo +1.95.0`: the firmware's pinned nightly has
//! no musl standard library), target [`TARGET`], `--locked --release` (the workspace's release
//! profile: one codegen unit). The binary does not depend on where the source, `CARGO_HOME` or
//! the toolchain lie: `--remap-path-prefix` maps each to a fixed name, the linker writes no
//! build id, and every other rustflag of the caller's environment is dropped. The finished
//! binary is scanned for those absolute paths and refused if one is found.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The toolchain the worker is built with (tests/bootstrap.sh installs it with the target).
pub const TOOLCHAIN: &str = "1.95.0";
/// A static Linux executable without a C library dependency.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The GPU payload's worker: glibc, because NVIDIA's libcuda and NVML are glibc libraries it
/// loads at run time (`--features cuda,nvml`); linked against the build machine's glibc (Debian
/// bookworm's 2.36, the version `image/gpu-userspace.lock` ships) by its `cc`.
pub const GPU_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The features of the GPU payload's worker.
pub const GPU_FEATURES: &str = "cuda,nvml";

/// Environment variables removed from the worker build, by prefix.
const CLEARED_PREFIXES: [&str; 6] = [
    "CARGO_PROFILE_",
    "CARGO_BUILD_",
    "CARGO_TARGET_",
    "CARGO_UNSTABLE_",
    "CARGO_ENCODED_",
    "CARGO_INCREMENTAL",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The workspace root.
    pub src: PathBuf,
    /// Cargo target directory (default for the CLI: `<src>/target/musl`).
    pub target_dir: PathBuf,
    /// `CARGO_HOME` for the build (`None`: the caller's, else `~/.cargo`).
    pub cargo_home: Option<PathBuf>,
    /// The GPU payload's worker ([`GPU_TARGET`], [`GPU_FEATURES`]) instead of the static one.
    pub gpu: bool,
}

/// The built worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The executable.
    pub path: PathBuf,
    /// How long cargo ran.
    pub build_time: Duration,
}

/// Why the worker cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "Rust {TOOLCHAIN} is not usable through rustup ({0}); the static pupa-worker needs it: \
         rustup toolchain install {TOOLCHAIN} --target {TARGET} (tests/bootstrap.sh does this)"
    )]
    Toolchain(String),
    #[error(
        "Rust {TOOLCHAIN} has no {0} standard library: rustup target add --toolchain \
         {TOOLCHAIN} {0}"
    )]
    NoTarget(&'static str),
    #[error("could not run cargo: {0}")]
    Spawn(std::io::Error),
    #[error("building the static pupa-worker failed (cargo +{TOOLCHAIN}: {0})")]
    Cargo(std::process::ExitStatus),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("the static pupa-worker contains the build path {0:?}: not reproducible")]
    AbsolutePath(String),
}

/// The sysroot of [`TOOLCHAIN`] (`rustc +1.95.0 --print sysroot`).
fn sysroot() -> Result<PathBuf, WorkerError> {
    let out = Command::new("rustc")
        .arg(format!("+{TOOLCHAIN}"))
        .args(["--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .output()
        .map_err(|e| WorkerError::Toolchain(format!("rustc: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(WorkerError::Toolchain(
            err.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// `CARGO_HOME` as cargo will see it.
fn cargo_home(opts: &WorkerOptions) -> Option<PathBuf> {
    opts.cargo_home
        .clone()
        .or_else(|| std::env::var_os("CARGO_HOME").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
}

/// The `--remap-path-prefix` pairs, later ones taking precedence (rustc applies the last
/// matching one): the source root, the target directory, `CARGO_HOME` and the sysroot, each
/// also in its canonical form when that differs (a symlinked toolchain or checkout).
pub fn remaps(
    src: &Path,
    target_dir: &Path,
    home: Option<&Path>,
    sysroot: &Path,
) -> Vec<(PathBuf, &'static str)> {
    let mut v = Vec::new();
    let pairs = [
        (Some(src), "/pupa"),
        (Some(target_dir), "/pupa-target"),
        (home, "/cargo-home"),
        (Some(sysroot), "/rust-sysroot"),
    ];
    for (p, to) in pairs.into_iter().filter_map(|(p, to)| Some((p?, to))) {
        v.push((p.to_path_buf(), to));
        if let Ok(c) = p.canonicalize() {
            if c != p {
                v.push((c, to));
            }
        }
    }
    v
}

/// `CARGO_ENCODED_RUSTFLAGS` (0x1f-separated): the remaps and no build id.
fn rustflags(remaps: &[(PathBuf, &str)]) -> String {
    let mut flags: Vec<String> = remaps
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect();
    flags.push("-Clink-arg=-Wl,--build-id=none".into());
    flags.join("\x1f")
}

/// Builds `pupa-worker` for [`TARGET`] (or the GPU payload's, [`GPU_TARGET`]) with
/// [`TOOLCHAIN`]; returns its path.
pub fn build(opts: &WorkerOptions) -> Result<Worker, WorkerError> {
    let target = if opts.gpu { GPU_TARGET } else { TARGET };
    let sysroot = sysroot()?;
    if !sysroot.join("lib/rustlib").join(target).is_dir() {
        return Err(WorkerError::NoTarget(target));
    }
    let home = cargo_home(opts);
    let maps = remaps(&opts.src, &opts.target_dir, home.as_deref(), &sysroot);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&opts.src)
        .arg(format!("+{TOOLCHAIN}"))
        .args(["build", "--locked", "--release", "-p", "pupa-worker"])
        .args(["--bin", "pupa-worker", "--target", target, "--target-dir"])
        .arg(&opts.target_dir);
    if opts.gpu {
        cmd.args(["--features", GPU_FEATURES]);
    }
    for v in [
        "RUSTFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOCFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(v);
    }
    // Profile, build, target and unstable settings of the caller's environment (an outer
    // `cargo test` sets some) would change the binary: only the source and Cargo.lock decide.
    for (k, _) in std::env::vars_os() {
        if CLEARED_PREFIXES
            .iter()
            .any(|p| k.to_string_lossy().starts_with(p))
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags(&maps));
    if let Some(h) = &opts.cargo_home {
        cmd.env("CARGO_HOME", h);
    }
    let t0 = Instant::now();
    let status = cmd.status().map_err(WorkerError::Spawn)?;
    if !status.success() {
        return Err(WorkerError::Cargo(status));
    }
    let build_time = t0.elapsed();
    let path = opts.target_dir.join(target).join("release/pupa-worker");
    let bytes = std::fs::read(&path).map_err(|err| WorkerError::Io {
        path: path.clone(),
        err,
    })?;
    for (from, _) in &maps {
        let s = from.to_string_lossy();
        if s.len() > 1 && bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
            return Err(WorkerError::AbsolutePath(s.into_owned()));
        }
    }
    Ok(Worker { path, build_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_in_precedence_order() {
        let m = remaps(
            Path::new("/nonexistent/src"),
            Path::new("/nonexistent/src/target/musl"),
            Some(Path::new("/nonexistent/home/.cargo")),
            Path::new("/nonexistent/sysroot"),
        );
        let to: Vec<&str> = m.iter().map(|x| x.1).collect();
        assert_eq!(
            to,
            ["/pupa", "/pupa-target", "/cargo-home", "/rust-sysroot"]
        );
        let f = rustflags(&m);
        assert!(f.starts_with("--remap-path-prefix=/nonexistent/src=/pupa\x1f"));
        assert!(f.ends_with("\x1f-Clink-arg=-Wl,--build-id=none"));
        assert_eq!(f.split('\x1f').count(), 5);
    }
}
