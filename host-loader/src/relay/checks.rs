//! What `pupa-host run` checks before it boots anything, so that an operator's mistake gets a
//! specific error at once instead of a VMM failure (or a 45 s wait) later:
//!
//! - the flags: memory at least [`MIN_MEMORY_MIB`] (the guest's early memory, its 4 MiB
//!   shared window, the heap and one 64 MiB job frame), vCPUs 1..=[`MAX_VCPUS`], every timeout
//!   and count above zero;
//! - `--image`: a regular file that parses as an OVMF-format firmware (the GUID table footer at
//!   end − 0x30, via `pupa_measurements::ovmf`), with the SEV or TDX metadata the chosen TEE
//!   needs;
//! - `--manifest`: the image's SHA-384 (and size) equal the manifest's `image` entry.

use std::path::{Path, PathBuf};

use pupa_measurements::{Firmware, OvmfError};
use sha2::{Digest, Sha384};

use super::RunArgs;
use crate::profile::TeeKind;

/// Least guest memory `run` accepts, in MiB.
pub const MIN_MEMORY_MIB: u32 = 128;
/// Most guest memory `run` accepts, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u32 = 1 << 20;
/// Most vCPUs.
pub const MAX_VCPUS: u32 = 512;
/// Largest image read (a pupa image is 512 KiB; OVMF builds are a few MiB).
const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// A mistake found before boot.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A flag out of range.
    #[error("--{flag} {value}: {why}")]
    Flag {
        /// The flag (without dashes).
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The image cannot be read.
    #[error("--image {}: cannot read it: {err}", path.display())]
    ImageRead {
        /// The path.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// Not a regular file.
    #[error("--image {}: is a {what}, not a firmware file", path.display())]
    ImageNotFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// Too large to be a firmware.
    #[error("--image {}: {size} bytes is too large for a firmware image (at most {MAX_IMAGE_BYTES})", path.display())]
    ImageTooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not an OVMF-format firmware.
    #[error("--image {}: not an OVMF-format firmware: {err}", path.display())]
    NotFirmware {
        /// The path.
        path: PathBuf,
        /// What the parser found.
        err: OvmfError,
    },
    /// The TEE needs metadata the image lacks.
    #[error("--image {}: has no {what} metadata, so it cannot boot with --tee {tee}", path.display())]
    NoTeeMetadata {
        /// The path.
        path: PathBuf,
        /// `SEV` or `TDVF`.
        what: &'static str,
        /// The TEE.
        tee: TeeKind,
    },
    /// The manifest cannot be read or lacks the image hash.
    #[error("--manifest {}: {why}", path.display())]
    Manifest {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The image is not the one the manifest describes.
    #[error("--image {} does not match --manifest {}: its {what} is {actual}, the manifest says {expected}", image.display(), manifest.display())]
    ManifestMismatch {
        /// The image.
        image: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// `SHA-384` or `size`.
        what: &'static str,
        /// Found.
        actual: String,
        /// Expected.
        expected: String,
    },
}

fn flag(flag: &'static str, value: impl ToString, why: impl Into<String>) -> CheckError {
    CheckError::Flag {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

/// Checks the numeric flags of `run`.
pub fn check_flags(a: &RunArgs) -> Result<(), CheckError> {
    if a.memory_mib < MIN_MEMORY_MIB || a.memory_mib > MAX_MEMORY_MIB {
        return Err(flag(
            "memory-mib",
            a.memory_mib,
            format!("the guest needs {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB"),
        ));
    }
    if let Some(why) = crate::profile::unsupported(a.tee, a.vmm) {
        let vmm = clap::ValueEnum::to_possible_value(&a.vmm)
            .map_or_else(|| format!("{:?}", a.vmm), |v| v.get_name().to_string());
        return Err(flag("vmm", vmm, why));
    }
    if a.vcpus == 0 || a.vcpus > MAX_VCPUS {
        return Err(flag("vcpus", a.vcpus, format!("want 1..={MAX_VCPUS}")));
    }
    for (name, v) in [
        ("ready-timeout-s", a.ready_timeout_s),
        ("health-timeout-s", a.health_timeout_s),
        ("health-failures", u64::from(a.health_failures)),
        ("max-connections", a.max_connections as u64),
    ] {
        if v == 0 {
            return Err(flag(name, v, "must be above 0"));
        }
    }
    if a.forward_port == 0 || a.guest_port == 0 {
        return Err(flag(
            "forward-port",
            a.forward_port,
            "ports must be above 0",
        ));
    }
    Ok(())
}

/// Reads `path` and checks that it is an OVMF-format firmware fit for `tee`; returns its bytes.
pub fn check_image(path: &Path, tee: TeeKind) -> Result<Vec<u8>, CheckError> {
    let read_err = |err| CheckError::ImageRead {
        path: path.to_path_buf(),
        err,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "directory"
        } else {
            "special file"
        };
        return Err(CheckError::ImageNotFile {
            path: path.to_path_buf(),
            what,
        });
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(CheckError::ImageTooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let fw = Firmware::parse(&bytes).map_err(|err| CheckError::NotFirmware {
        path: path.to_path_buf(),
        err,
    })?;
    let missing = match tee {
        TeeKind::Snp if fw.sev_sections().is_none() => Some("SEV"),
        TeeKind::Tdx if fw.tdvf_sections().is_none() => Some("TDVF"),
        _ => None,
    };
    if let Some(what) = missing {
        return Err(CheckError::NoTeeMetadata {
            path: path.to_path_buf(),
            what,
            tee,
        });
    }
    Ok(bytes)
}

/// Checks `image` (its bytes) against the `image` entry of `manifest.json`.
pub fn check_manifest(manifest: &Path, image: &Path, bytes: &[u8]) -> Result<(), CheckError> {
    let bad = |why: String| CheckError::Manifest {
        path: manifest.to_path_buf(),
        why,
    };
    let text =
        std::fs::read_to_string(manifest).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let want = v
        .pointer("/image/sha384")
        .and_then(|s| s.as_str())
        .ok_or_else(|| bad("no image.sha384 (is it a pupa manifest.json?)".into()))?
        .to_ascii_lowercase();
    let mismatch = |what, actual: String, expected: String| CheckError::ManifestMismatch {
        image: image.to_path_buf(),
        manifest: manifest.to_path_buf(),
        what,
        actual,
        expected,
    };
    if let Some(size) = v.pointer("/image/size").and_then(|s| s.as_u64()) {
        if size != bytes.len() as u64 {
            return Err(mismatch("size", bytes.len().to_string(), size.to_string()));
        }
    }
    let sha: String = Sha384::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if sha != want {
        return Err(mismatch("SHA-384", sha, want));
    }
    Ok(())
}
