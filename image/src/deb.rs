//! The pinned Debian kernel package: `image/linux.lock`, `apt-get download` into a cache
//! directory, the SHA-256 check against the lock (before anything reads the archive), and
//! `dpkg-deb -x`.
//!
//! Host tools: `apt-get` (only when the `.deb` is not in the cache yet), `apt-cache` (only to
//! say which versions the archive offers when the download fails) and `dpkg-deb`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pupa_measurements::hexfmt;
use sha2::{Digest, Sha256};

/// The lock file, relative to the source root.
pub const LOCK_FILE: &str = "image/linux.lock";

/// `image/linux.lock`: one `key = value` per line, `#` comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxLock {
    /// Debian package name.
    pub package: String,
    /// Debian package version.
    pub version: String,
    /// The `.deb` file name `apt-get download` writes.
    pub deb: String,
    /// SHA-256 of the `.deb`, lowercase hex.
    pub sha256: String,
    /// The bzImage inside the package (`boot/vmlinuz-RELEASE`).
    pub vmlinuz: String,
}

/// Why the kernel package cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{LOCK_FILE}: {0}")]
    Lock(String),
    #[error(
        "could not run {tool} ({err}): the Linux payload's kernel is a Debian package; {why} \
         (Debian/Ubuntu hosts have it; package {pkg})"
    )]
    MissingTool {
        tool: &'static str,
        pkg: &'static str,
        why: &'static str,
        err: std::io::Error,
    },
    #[error("apt-get download {spec} failed: {stderr}; {offered}")]
    Download {
        spec: String,
        stderr: String,
        offered: String,
    },
    #[error(
        "{path}: SHA-256 {got} does not match {lock} ({want}); not using it \
         (delete it to download again)"
    )]
    Mismatch {
        lock: &'static str,
        path: PathBuf,
        got: String,
        want: String,
    },
    #[error("dpkg-deb -x {deb} failed: {stderr}")]
    Unpack { deb: PathBuf, stderr: String },
    #[error("{deb} holds no {file}")]
    NoKernel { deb: String, file: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DebError + '_ {
    move |err| DebError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The `key = value` lines of a lock file (`image/linux.lock`, `image/nvidia.lock`); blank
/// lines and `#` comments are skipped.
pub struct LockEntries<'a>(BTreeMap<&'a str, &'a str>);

impl<'a> LockEntries<'a> {
    pub fn parse(text: &'a str) -> Self {
        LockEntries(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect(),
        )
    }

    /// The non-empty value of `key`, or the line that says it is missing.
    pub fn get(&self, key: &str) -> Result<String, String> {
        self.0
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string())
            .ok_or_else(|| format!("no `{key} = …` line"))
    }
}

impl LinuxLock {
    /// Parses the lock file's text.
    pub fn parse(text: &str) -> Result<LinuxLock, DebError> {
        let entries = LockEntries::parse(text);
        let get = |k: &str| entries.get(k).map_err(DebError::Lock);
        let lock = LinuxLock {
            package: get("package")?,
            version: get("version")?,
            deb: get("deb")?,
            sha256: get("sha256")?.to_ascii_lowercase(),
            vmlinuz: get("vmlinuz")?,
        };
        if lock.sha256.len() != 64 || !lock.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DebError::Lock("sha256 is not 64 hex digits".into()));
        }
        if lock.deb.contains('/') || !lock.vmlinuz.starts_with("boot/vmlinuz-") {
            return Err(DebError::Lock(
                "deb must be a file name, vmlinuz boot/vmlinuz-RELEASE".into(),
            ));
        }
        Ok(lock)
    }

    /// Reads `<src>/image/linux.lock`.
    pub fn read(src: &Path) -> Result<LinuxLock, DebError> {
        let path = src.join(LOCK_FILE);
        LinuxLock::parse(&std::fs::read_to_string(&path).map_err(io(&path))?)
    }

    /// The kernel release (`uname -r`): the vmlinuz name after `boot/vmlinuz-`.
    pub fn release(&self) -> &str {
        self.vmlinuz.trim_start_matches("boot/vmlinuz-")
    }
}

/// One pinned package of another lock (`image/nvidia.lock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Debian package name.
    pub package: String,
    /// Debian package version.
    pub version: String,
    /// The `.deb` file name `apt-get download` writes.
    pub deb: String,
    /// SHA-256 of the `.deb`, lowercase hex.
    pub sha256: String,
}

impl Pin {
    /// Why the pin is malformed, if it is.
    pub fn check(&self) -> Result<(), String> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sha256 is not 64 hex digits".into());
        }
        if self.deb.contains('/') || !self.deb.ends_with(".deb") {
            return Err("deb must be a file name ending in .deb".into());
        }
        Ok(())
    }
}

/// The pinned `.deb` in `cache` (downloaded if absent), its SHA-256 checked against the pin
/// before anything reads it.
pub fn fetch_checked(pin: &Pin, cache: &Path) -> Result<PathBuf, DebError> {
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let deb = cache.join(&pin.deb);
    if !deb.is_file() {
        download(&pin.package, &pin.version, cache)?;
    }
    let got = sha256_hex(&std::fs::read(&deb).map_err(io(&deb))?);
    if got != pin.sha256 {
        return Err(DebError::Mismatch {
            lock: crate::nvidia::LOCK_FILE,
            path: deb,
            got,
            want: pin.sha256.clone(),
        });
    }
    Ok(deb)
}

/// The package, checked and unpacked.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The `.deb` in the cache.
    pub deb: PathBuf,
    /// Where `dpkg-deb -x` put its files.
    pub root: PathBuf,
}

impl Unpacked {
    /// `lib/modules/RELEASE` of the package.
    pub fn module_dir(&self, lock: &LinuxLock) -> PathBuf {
        self.root.join("lib/modules").join(lock.release())
    }
}

fn spawn_err(
    tool: &'static str,
    pkg: &'static str,
    why: &'static str,
) -> impl FnOnce(std::io::Error) -> DebError {
    move |err| DebError::MissingTool {
        tool,
        pkg,
        why,
        err,
    }
}

/// What `apt-cache madison PACKAGE` lists (for the error message).
fn offered(package: &str) -> String {
    let out = match Command::new("apt-cache")
        .args(["madison", package])
        .output()
    {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => return "apt-cache is not available to say what the archive offers".into(),
    };
    let versions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .collect();
    if versions.is_empty() {
        format!(
            "apt knows no version of {package} (is the suite in sources.list, apt-get update run?)"
        )
    } else {
        format!("apt offers {package} version {} now", versions.join(", "))
    }
}

/// `apt-get download PACKAGE=VERSION` into `cache`.
fn download(package: &str, version: &str, cache: &Path) -> Result<(), DebError> {
    let spec = format!("{package}={version}");
    let out = Command::new("apt-get")
        .current_dir(cache)
        .args(["download", &spec])
        .output()
        .map_err(spawn_err(
            "apt-get",
            "apt",
            "it is downloaded with apt-get download",
        ))?;
    if !out.status.success() {
        return Err(DebError::Download {
            spec,
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
            offered: offered(package),
        });
    }
    Ok(())
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hexfmt::encode(&Sha256::digest(bytes))
}

/// The pinned package in `cache` (downloaded if absent), its SHA-256 checked against the lock,
/// unpacked into `cache/<deb name without .deb>/` (once: a finished unpack is renamed into
/// place, so an interrupted one is redone).
pub fn fetch(lock: &LinuxLock, cache: &Path) -> Result<Unpacked, DebError> {
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let deb = cache.join(&lock.deb);
    if !deb.is_file() {
        download(&lock.package, &lock.version, cache)?;
    }
    let got = sha256_hex(&std::fs::read(&deb).map_err(io(&deb))?);
    if got != lock.sha256 {
        return Err(DebError::Mismatch {
            lock: LOCK_FILE,
            path: deb,
            got,
            want: lock.sha256.clone(),
        });
    }
    let stem = lock.deb.trim_end_matches(".deb");
    let root = cache.join(stem);
    if !root.join(&lock.vmlinuz).is_file() {
        let partial = cache.join(format!("{stem}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&partial)
            .output()
            .map_err(spawn_err(
                "dpkg-deb",
                "dpkg",
                "it is unpacked with dpkg-deb -x",
            ))?;
        if !out.status.success() {
            return Err(DebError::Unpack {
                deb,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        if !partial.join(&lock.vmlinuz).is_file() {
            return Err(DebError::NoKernel {
                deb: lock.deb.clone(),
                file: lock.vmlinuz.clone(),
            });
        }
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io(&root))?;
        }
        std::fs::rename(&partial, &root).map_err(io(&root))?;
    }
    Ok(Unpacked { deb, root })
}

/// Kernel options the payload needs, each `y` or `m`.
pub const REQUIRED_CONFIG: [&str; 6] = [
    "CONFIG_TSM_REPORTS",
    "CONFIG_SEV_GUEST",
    "CONFIG_TDX_GUEST_DRIVER",
    "CONFIG_AMD_MEM_ENCRYPT",
    "CONFIG_INTEL_TDX_GUEST",
    "CONFIG_VIRTIO_NET",
];

/// The value (`y`/`m`) of each [`REQUIRED_CONFIG`] option in a kernel `.config` text; an
/// error names those that are off or absent.
pub fn required_config(config: &str) -> Result<BTreeMap<String, String>, String> {
    let mut found = BTreeMap::new();
    for line in config.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if REQUIRED_CONFIG.contains(&k) && (v == "y" || v == "m") {
                found.insert(k.to_string(), v.to_string());
            }
        }
    }
    let missing: Vec<&str> = REQUIRED_CONFIG
        .iter()
        .copied()
        .filter(|k| !found.contains_key(*k))
        .collect();
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(format!("not enabled (y or m): {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "# comment\npackage = linux-image-x\nversion = 1.2-3\n\
                        deb = linux-image-x_1.2-3_amd64.deb\n\
                        sha256 = 752D15DBE0817B35EC227F352E226122EC6567BD47E7240C90E01E61A179BAAD\n\
                        vmlinuz = boot/vmlinuz-6.12.107+deb12-cloud-amd64\n";

    #[test]
    fn parses_the_lock() {
        let l = LinuxLock::parse(LOCK).unwrap();
        assert_eq!(l.package, "linux-image-x");
        assert_eq!(l.version, "1.2-3");
        assert!(l.sha256.starts_with("752d15"));
        assert_eq!(l.release(), "6.12.107+deb12-cloud-amd64");
        assert!(LinuxLock::parse(&LOCK.replace("version", "#version")).is_err());
        assert!(LinuxLock::parse(&LOCK.replace("752D", "XYZW")).is_err());
        assert!(LinuxLock::parse(&LOCK.replace("deb = ", "deb = a/")).is_err());
    }

    #[test]
    fn the_committed_lock_parses() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        LinuxLock::read(src).unwrap();
    }

    #[test]
    fn config_check() {
        let all = REQUIRED_CONFIG.map(|k| format!("{k}=m")).join("\n");
        assert_eq!(required_config(&all).unwrap().len(), 6);
        let off = all.replace("CONFIG_SEV_GUEST=m", "# CONFIG_SEV_GUEST is not set");
        assert_eq!(
            required_config(&off).unwrap_err(),
            "not enabled (y or m): CONFIG_SEV_GUEST"
        );
    }
}
