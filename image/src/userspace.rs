//! The GPU payload's user space: what the glibc `pupa-worker` (`--features cuda,nvml`, `/init`
//! of the GPU payload) needs at run time, from the Debian packages pinned in
//! `image/gpu-userspace.lock`, and the CUDA kernels built ahead of time for the 535 driver.
//!
//! | initramfs path | from |
//! |---|---|
//! | `lib64/ld-linux-x86-64.so.2` | libc6 (the worker's `PT_INTERP`) |
//! | `lib/x86_64-linux-gnu/{ld-linux-x86-64.so.2, libc.so.6, libm.so.6, libdl.so.2, libpthread.so.0, librt.so.1}` | libc6 |
//! | `lib/x86_64-linux-gnu/libgcc_s.so.1` | libgcc-s1 (Rust's unwinder) |
//! | `usr/lib/x86_64-linux-gnu/{libcrypto.so.3, libssl.so.3}` | libssl3 |
//! | `usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1` | libnvidia-ml1 (GPU evidence, CC ready state) |
//! | `usr/lib/x86_64-linux-gnu/libcuda.so.1` | libcuda1 |
//! | `usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.V` | libnvidia-pkcs11-openssl3 (libcuda's crypto in CC mode) |
//! | `lib/pupa/cuda/{gemm_bf16_sm90a,attention_fwd_sm90a}.cubin` | `kernels/cuda/check.sh` (CUDA 12.9 NVRTC + ptxas, sm_90a) |
//!
//! Files go in under their sonames (copies, no symlinks: the loader finds them by those names
//! in its built-in search path, `/lib/x86_64-linux-gnu` and `/usr/lib/x86_64-linux-gnu` on
//! Debian's glibc; there is no `ld.so.cache`). `libnvidia-ptxjitcompiler` is left out: the
//! kernels are cubins, so the driver never JIT-compiles PTX.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::deb::{self, DebError, LockEntries, Pin};
use crate::nvidia;

/// The lock, relative to the workspace root.
pub const LOCK_FILE: &str = "image/gpu-userspace.lock";

/// The roles of the lock, in the order their files are listed.
const ROLES: [&str; 6] = ["libc", "libgcc", "ssl", "nvml", "cuda", "pkcs11"];

/// `(role, path in the package, path in the initramfs)`; `{V}` is the NVIDIA driver version.
const FILES: [(&str, &str, &str); 15] = [
    (
        "libc",
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "lib64/ld-linux-x86-64.so.2",
    ),
    (
        "libc",
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ),
    (
        "libc",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libc.so.6",
    ),
    (
        "libc",
        "lib/x86_64-linux-gnu/libm.so.6",
        "lib/x86_64-linux-gnu/libm.so.6",
    ),
    (
        "libc",
        "lib/x86_64-linux-gnu/libdl.so.2",
        "lib/x86_64-linux-gnu/libdl.so.2",
    ),
    (
        "libc",
        "lib/x86_64-linux-gnu/libpthread.so.0",
        "lib/x86_64-linux-gnu/libpthread.so.0",
    ),
    (
        "libc",
        "lib/x86_64-linux-gnu/librt.so.1",
        "lib/x86_64-linux-gnu/librt.so.1",
    ),
    (
        "libgcc",
        "lib/x86_64-linux-gnu/libgcc_s.so.1",
        "lib/x86_64-linux-gnu/libgcc_s.so.1",
    ),
    (
        "ssl",
        "usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        "usr/lib/x86_64-linux-gnu/libcrypto.so.3",
    ),
    (
        "ssl",
        "usr/lib/x86_64-linux-gnu/libssl.so.3",
        "usr/lib/x86_64-linux-gnu/libssl.so.3",
    ),
    (
        "nvml",
        "usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.{V}",
        "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    ),
    (
        "cuda",
        "usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.{V}",
        "usr/lib/x86_64-linux-gnu/libcuda.so.1",
    ),
    (
        "pkcs11",
        "usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.{V}",
        "usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.{V}",
    ),
    (
        "cubin",
        "gemm_bf16_sm90a.cubin",
        "lib/pupa/cuda/gemm_bf16_sm90a.cubin",
    ),
    (
        "cubin",
        "attention_fwd_sm90a.cubin",
        "lib/pupa/cuda/attention_fwd_sm90a.cubin",
    ),
];

/// Why the user space cannot be assembled.
#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    #[error("{LOCK_FILE}: {0}")]
    Lock(String),
    #[error("GPU user space package: {0}")]
    Deb(#[from] DebError),
    #[error("GPU user space: {0}")]
    Tool(#[from] nvidia::NvidiaError),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UserspaceError + '_ {
    move |err| UserspaceError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The pins of `image/gpu-userspace.lock`, by role in [`ROLES`] order.
pub fn parse_lock(text: &str) -> Result<Vec<(&'static str, Pin)>, UserspaceError> {
    let entries = LockEntries::parse(text);
    ROLES
        .iter()
        .map(|&role| {
            let get = |k: &str| {
                entries
                    .get(&format!("{role}.{k}"))
                    .map_err(UserspaceError::Lock)
            };
            let p = Pin {
                package: get("package")?,
                version: get("version")?,
                deb: get("deb")?,
                sha256: get("sha256")?.to_ascii_lowercase(),
            };
            p.check()
                .map_err(|why| UserspaceError::Lock(format!("{role}: {why}")))?;
            Ok((role, p))
        })
        .collect()
}

/// Checks that the NVIDIA packages are of `driver` (the kernel modules' upstream version):
/// libcuda and NVML refuse a kernel module of another version.
pub fn check_driver(pins: &[(&str, Pin)], driver: &str) -> Result<(), UserspaceError> {
    for (role, p) in pins
        .iter()
        .filter(|(r, _)| ["nvml", "cuda", "pkcs11"].contains(r))
    {
        if !p.version.starts_with(&format!("{driver}-")) {
            return Err(UserspaceError::Lock(format!(
                "{role}: {} {} is not of the kernel modules' version {driver}",
                p.package, p.version
            )));
        }
    }
    Ok(())
}

/// The user space: `(initramfs path, bytes)`, sorted by path.
pub struct Userspace {
    pub files: Vec<(String, Vec<u8>)>,
    /// The packages, for the manifest.
    pub pins: Vec<(&'static str, Pin)>,
}

/// Fetches (SHA-256-checked) and unpacks the pinned packages into `cache/gpu-userspace/`,
/// builds the cubins with `kernels/cuda/check.sh` (its pinned CUDA 12.9 wheels; needs python3
/// and PyPI once) and collects the files of [`FILES`] for driver version `driver`.
pub fn assemble(src: &Path, cache: &Path, driver: &str) -> Result<Userspace, UserspaceError> {
    let path = src.join(LOCK_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let pins = parse_lock(&text)?;
    check_driver(&pins, driver)?;
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    nvidia::ensure_apt_knows(&pins.iter().map(|(_, p)| p).collect::<Vec<_>>(), cache)?;
    let root = cache.join("gpu-userspace");
    let mut roots = Vec::new();
    for (role, pin) in &pins {
        let deb = deb::fetch_checked(pin, cache)?;
        let dir = root.join(&pin.sha256[..16]);
        if !dir.join(".unpacked").is_file() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            nvidia::dpkg_x(&deb, &dir, &root.join("dpkg-deb.log"))?;
            std::fs::write(dir.join(".unpacked"), b"").map_err(io(&dir))?;
        }
        roots.push((*role, dir));
    }
    let gates = cache.join("cuda-gates");
    nvidia::run(
        Command::new("bash")
            .arg(src.join("kernels/cuda/check.sh"))
            .env("PUPA_CUDA_OUT", &gates),
        "kernels/cuda/check.sh (the CUDA kernels as cubins)",
        "python3-venv",
        &cache.join("cuda-cubins.log"),
    )?;
    roots.push(("cubin", gates.join("cu12")));
    let mut files = Vec::new();
    for (role, from, to) in FILES {
        let dir = &roots
            .iter()
            .find(|(r, _)| *r == role)
            .expect("every role unpacked")
            .1;
        let p = dir.join(from.replace("{V}", driver));
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        files.push((to.replace("{V}", driver), bytes));
    }
    files.sort();
    Ok(Userspace { files, pins })
}

/// The manifest's `"userspace"` object: each package and each file with its SHA-256.
pub fn manifest(u: &Userspace) -> serde_json::Value {
    serde_json::json!({
        "packages": u.pins.iter().map(|(role, p)| serde_json::json!({
            "role": role, "package": p.package, "version": p.version,
            "deb": p.deb, "deb_sha256": p.sha256,
        })).collect::<Vec<_>>(),
        "files": u.files.iter().map(|(path, b)| serde_json::json!({
            "path": path, "size": b.len(), "sha256": deb::sha256_hex(b),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_in_the_repository() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("gpu-userspace.lock"),
        )
        .unwrap();
        let pins = parse_lock(&text).unwrap();
        assert_eq!(pins.len(), ROLES.len());
        // the same driver as the kernel modules
        let nv = crate::nvidia::NvidiaLock::parse(
            &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("nvidia.lock"))
                .unwrap(),
        )
        .unwrap();
        check_driver(&pins, nv.upstream(&nv.source)).unwrap();
        assert!(check_driver(&pins, "550.54.14").is_err());
        // every role has files, every file's role is pinned or built
        for role in ROLES {
            assert!(FILES.iter().any(|f| f.0 == role), "{role}");
        }
        assert!(FILES.iter().all(|f| f.0 == "cubin" || ROLES.contains(&f.0)));
        let bad = text.replace("libcuda1_535.261.03-1_amd64.deb", "x/y.deb");
        assert!(parse_lock(&bad).is_err());
    }
}
