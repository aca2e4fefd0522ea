//! The GPU part of the Linux payload (`pupa-image build --payload linux` without `--no-gpu`):
//! NVIDIA's open kernel modules of the 535 branch, built against the pinned kernel, and their
//! GSP firmware, all from Debian packages pinned in `image/nvidia.lock`.
//!
//! Debian bookworm ships the open modules in `contrib` (`nvidia-open-kernel-source`, source
//! package `nvidia-open-gpu-kernel-modules`; the RM core comes as `nv-kernel.o_binary`, built by
//! Debian from NVIDIA's open source) and the firmware in `non-free-firmware`
//! (`firmware-nvidia-gsp`). [`SOURCES_FILE`] is the apt source the build writes so that
//! `apt-get download` finds them. Every `.deb` is checked against the lock's SHA-256 before
//! use. The kernel headers (`linux-headers-RELEASE`, `-common`, `linux-kbuild-`) are unpacked
//! with `dpkg-deb -x` into one tree in the cache (their symlinks are relative; the flavour's
//! one-line Makefile includes the common tree by absolute path, so the build is run with
//! `SYSSRC=<common> SYSOUT=<flavour>` and never reads that file): nothing is installed.
//!
//! The modules are compiled with the compiler of the kernel's `CONFIG_CC_VERSION_TEXT`
//! (`x86_64-linux-gnu-gcc-12`, which NVIDIA's Makefile picks itself), with fixed
//! `KBUILD_BUILD_*`, the build paths mapped away (`-ffile-prefix-map`), `strip --strip-debug`
//! and `xz --check=crc32 --lzma2=dict=1MiB` (what Kbuild's `CONFIG_MODULE_COMPRESS_XZ` runs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::deb::{self, DebError, LinuxLock, Pin};
use crate::modules;

/// The lock file, relative to the source root.
pub const LOCK_FILE: &str = "image/nvidia.lock";

/// The apt source (deb822) the build writes when apt does not know the pinned packages.
pub const SOURCES_FILE: &str = "/etc/apt/sources.list.d/pupa-nonfree.sources";

/// Its contents: bookworm, bookworm-updates, bookworm-backports and bookworm-security with
/// the components that hold the NVIDIA packages.
pub const SOURCES: &str = "# written by pupa-image build --payload linux (the NVIDIA packages)\n\
Types: deb\n\
URIs: http://deb.debian.org/debian\n\
Suites: bookworm bookworm-updates bookworm-backports\n\
Components: contrib non-free non-free-firmware\n\
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
\n\
Types: deb\n\
URIs: http://deb.debian.org/debian-security\n\
Suites: bookworm-security\n\
Components: contrib non-free non-free-firmware\n\
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// Source edits for the pinned kernel, each `(file, old, new)`: `old` must occur exactly once.
///
/// Linux 6.12.107 has the stable backport that gave `pci_resize_resource` a fourth argument,
/// `exclude_bars` (0: the old behaviour); 535.261.03 calls it with three.
pub const PATCHES: [(&str, &str, &str); 1] = [(
    "nvidia/nv-pci.c",
    "r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size);",
    "r = pci_resize_resource(pci_dev, NV_GPU_BAR1, requested_size, 0);",
)];

/// The source tree inside the source package's tarball.
const SOURCE_DIR: &str = "modules/nvidia-open-kernel";

/// The `xz` options of Kbuild's `CONFIG_MODULE_COMPRESS_XZ`.
pub const XZ_ARGS: [&str; 4] = ["--check=crc32", "--lzma2=dict=1MiB", "-T1", "-c"];

/// Bumped when the build recipe changes, so a cached build is not reused.
const RECIPE: &str = "pupa-nvidia-1";

/// `image/nvidia.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaLock {
    /// The branch (`535`): every package's upstream version starts with it.
    pub branch: String,
    /// `nvidia-open-kernel-source`.
    pub source: Pin,
    /// `firmware-nvidia-gsp`.
    pub firmware: Pin,
    /// `linux-headers-RELEASE`, `linux-headers-…-common`, `linux-kbuild-…`.
    pub headers: [Pin; 3],
    /// The modules to build, load order not implied (`nvidia`, `nvidia-uvm`).
    pub modules: Vec<String>,
    /// The firmware files (under `lib/firmware/nvidia/<upstream version>/`).
    pub firmware_files: Vec<String>,
}

/// Why the GPU part cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaError {
    #[error("{LOCK_FILE}: {0}")]
    Lock(String),
    #[error("NVIDIA package: {0}")]
    Deb(#[from] DebError),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("could not run {tool} ({err}): needed for the NVIDIA modules (package {pkg})")]
    MissingTool {
        tool: String,
        pkg: &'static str,
        err: std::io::Error,
    },
    #[error("{tool} failed (log {log}): {tail}")]
    Failed {
        tool: String,
        log: PathBuf,
        tail: String,
    },
    #[error("patch {file}: `{old}` occurs {count} times, not once")]
    Patch {
        file: String,
        old: String,
        count: usize,
    },
    #[error("NVIDIA modules: {0}")]
    Modules(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NvidiaError + '_ {
    move |err| NvidiaError::Io {
        path: path.to_path_buf(),
        err,
    }
}

impl NvidiaLock {
    /// Parses the lock's text: `key = value` lines, `ROLE.package|version|deb|sha256` for the
    /// roles `source`, `firmware`, `headers`, `headers_common`, `kbuild`.
    pub fn parse(text: &str) -> Result<NvidiaLock, NvidiaError> {
        let entries = deb::LockEntries::parse(text);
        let get = |k: &str| entries.get(k).map_err(NvidiaError::Lock);
        let pin = |role: &str| -> Result<Pin, NvidiaError> {
            let p = Pin {
                package: get(&format!("{role}.package"))?,
                version: get(&format!("{role}.version"))?,
                deb: get(&format!("{role}.deb"))?,
                sha256: get(&format!("{role}.sha256"))?.to_ascii_lowercase(),
            };
            p.check()
                .map_err(|why| NvidiaError::Lock(format!("{role}: {why}")))?;
            Ok(p)
        };
        let words = |k: &str| -> Result<Vec<String>, NvidiaError> {
            Ok(get(k)?.split_whitespace().map(str::to_string).collect())
        };
        let lock = NvidiaLock {
            branch: get("branch")?,
            source: pin("source")?,
            firmware: pin("firmware")?,
            headers: [pin("headers")?, pin("headers_common")?, pin("kbuild")?],
            modules: words("modules")?,
            firmware_files: words("firmware_files")?,
        };
        for p in [&lock.source, &lock.firmware] {
            if !p.version.starts_with(&format!("{}.", lock.branch)) {
                return Err(NvidiaError::Lock(format!(
                    "{} {} is not of branch {}",
                    p.package, p.version, lock.branch
                )));
            }
        }
        if lock.upstream(&lock.source) != lock.upstream(&lock.firmware) {
            return Err(NvidiaError::Lock(format!(
                "{} {} and {} {}: the driver loads only the GSP firmware of its own version",
                lock.source.package,
                lock.source.version,
                lock.firmware.package,
                lock.firmware.version
            )));
        }
        let bad = |s: &String| s.is_empty() || s.contains('/') || s.starts_with('.');
        if lock.modules.is_empty() || lock.modules.iter().chain(&lock.firmware_files).any(bad) {
            return Err(NvidiaError::Lock(
                "modules and firmware_files: one or more plain names".into(),
            ));
        }
        Ok(lock)
    }

    /// Reads `<src>/image/nvidia.lock`.
    pub fn read(src: &Path) -> Result<(NvidiaLock, String), NvidiaError> {
        let path = src.join(LOCK_FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Ok((NvidiaLock::parse(&text)?, text))
    }

    /// The upstream version of a package (`535.261.03` of `535.261.03-1`).
    pub fn upstream<'a>(&self, p: &'a Pin) -> &'a str {
        p.version
            .split(['-', '+', '~'])
            .next()
            .unwrap_or(&p.version)
    }

    /// The firmware directory inside the package and the initramfs.
    pub fn firmware_dir(&self) -> String {
        format!("lib/firmware/nvidia/{}", self.upstream(&self.firmware))
    }

    /// Checks that the headers are those of the kernel `linux` pins.
    pub fn check_kernel(&self, linux: &LinuxLock) -> Result<(), NvidiaError> {
        let want = format!("linux-headers-{}", linux.release());
        let h = &self.headers;
        if h[0].package != want || h.iter().any(|p| p.version != linux.version) {
            return Err(NvidiaError::Lock(format!(
                "the headers must be {want} (and its -common, linux-kbuild) version {} of \
                 {}; the lock has {} {}",
                linux.version,
                deb::LOCK_FILE,
                h[0].package,
                h[0].version
            )));
        }
        Ok(())
    }

    /// All pinned packages.
    pub fn pins(&self) -> Vec<&Pin> {
        let mut v = vec![&self.source, &self.firmware];
        v.extend(self.headers.iter());
        v
    }
}

/// One built module.
#[derive(Debug, Clone)]
pub struct BuiltModule {
    /// The module name (`nvidia_uvm`).
    pub name: String,
    /// The initramfs file name (`nvidia-uvm.ko.xz`).
    pub file: String,
    /// The `depends=` of its `.modinfo`.
    pub depends: Vec<String>,
    /// The stripped, uncompressed module's SHA-256.
    pub ko_sha256: String,
    /// Its size, uncompressed.
    pub ko_size: usize,
    /// The xz-compressed bytes that go into the initramfs.
    pub xz: Vec<u8>,
}

/// The GPU part.
#[derive(Debug, Clone)]
pub struct Gpu {
    pub lock: NvidiaLock,
    /// In load order.
    pub modules: Vec<BuiltModule>,
    /// `(path in the initramfs, bytes)`.
    pub firmware: Vec<(String, Vec<u8>)>,
    /// How long the module build took (zero when it came from the cache).
    pub build_time: Duration,
    /// Whether the modules came from an earlier build in the cache.
    pub cached: bool,
}

/// `order` of the GPU modules: each after what it depends on; a dependency outside the set must
/// be one of `base` (the payload's modules and the kernel's built-ins).
pub fn load_order(
    mods: &[(String, Vec<String>)],
    base: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    let names: BTreeSet<&str> = mods.iter().map(|(n, _)| n.as_str()).collect();
    let mut out: Vec<String> = Vec::new();
    let mut left: Vec<&(String, Vec<String>)> = mods.iter().collect();
    while !left.is_empty() {
        let before = left.len();
        let mut i = 0;
        while i < left.len() {
            let (name, deps) = left[i];
            for d in deps {
                if !names.contains(d.as_str()) && !base.contains(d) {
                    return Err(format!(
                        "{name} depends on {d}, which is neither built nor in the payload"
                    ));
                }
            }
            if deps
                .iter()
                .all(|d| !names.contains(d.as_str()) || out.contains(d))
            {
                out.push(name.clone());
                left.remove(i);
            } else {
                i += 1;
            }
        }
        if left.len() == before {
            let rest: Vec<&str> = left.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!("dependency cycle among {}", rest.join(", ")));
        }
    }
    Ok(out)
}

/// Applies [`PATCHES`] under `dir`.
pub fn apply_patches(dir: &Path) -> Result<(), NvidiaError> {
    for (file, old, new) in PATCHES {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let count = text.matches(old).count();
        if count != 1 {
            return Err(NvidiaError::Patch {
                file: file.into(),
                old: old.into(),
                count,
            });
        }
        std::fs::write(&p, text.replace(old, new)).map_err(io(&p))?;
    }
    Ok(())
}

/// Makes sure apt knows the pinned packages: writes [`SOURCES_FILE`] and runs `apt-get
/// update` when `apt-cache show PACKAGE=VERSION` does not find one.
fn ensure_apt_source(lock: &NvidiaLock, cache: &Path) -> Result<(), NvidiaError> {
    ensure_apt_knows(&lock.pins(), cache)
}

/// [`ensure_apt_source`] for any pins not in `cache` yet (the GPU user space's too).
pub(crate) fn ensure_apt_knows(pins: &[&Pin], cache: &Path) -> Result<(), NvidiaError> {
    let missing = pins
        .iter()
        .filter(|p| !cache.join(&p.deb).is_file())
        .any(|p| {
            !Command::new("apt-cache")
                .args(["show", &format!("{}={}", p.package, p.version)])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    if !missing {
        return Ok(());
    }
    let path = Path::new(SOURCES_FILE);
    if std::fs::read_to_string(path).ok().as_deref() != Some(SOURCES) {
        std::fs::write(path, SOURCES).map_err(io(path))?;
    }
    run(
        Command::new("apt-get").arg("update"),
        "apt-get update",
        "apt",
        &cache.join("apt-get-update.log"),
    )
}

/// Runs `cmd`, its output into `log`; an error quotes the log's last lines.
pub(crate) fn run(
    cmd: &mut Command,
    tool: &str,
    pkg: &'static str,
    log: &Path,
) -> Result<(), NvidiaError> {
    let out = cmd.output().map_err(|err| NvidiaError::MissingTool {
        tool: tool.into(),
        pkg,
        err,
    })?;
    let text = [out.stdout, out.stderr].concat();
    std::fs::write(log, &text).map_err(io(log))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("; ");
    Err(NvidiaError::Failed {
        tool: tool.into(),
        log: log.to_path_buf(),
        tail,
    })
}

pub(crate) fn dpkg_x(deb: &Path, dir: &Path, log: &Path) -> Result<(), NvidiaError> {
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir),
        "dpkg-deb -x",
        "dpkg",
        log,
    )
}

/// A stable key of what the build depends on.
fn build_key(lock_text: &str) -> String {
    let patches: Vec<String> = PATCHES
        .iter()
        .map(|(f, o, n)| format!("{f}\0{o}\0{n}"))
        .collect();
    let all = format!(
        "{RECIPE}\0{lock_text}\0{}\0{}",
        patches.join("\0"),
        XZ_ARGS.join(" ")
    );
    deb::sha256_hex(all.as_bytes())[..16].to_string()
}

/// Fetches (SHA-256-checked), builds (or takes from the cache) the modules and reads the
/// firmware. `base`: the payload's other modules and the kernel's built-ins.
pub fn build(
    src: &Path,
    cache: &Path,
    linux: &LinuxLock,
    base: &BTreeSet<String>,
) -> Result<Gpu, NvidiaError> {
    let (lock, text) = NvidiaLock::read(src)?;
    lock.check_kernel(linux)?;
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    ensure_apt_source(&lock, cache)?;
    let mut debs = BTreeMap::new();
    for p in lock.pins() {
        debs.insert(p.package.clone(), deb::fetch_checked(p, cache)?);
    }
    let work = cache.join(format!("nvidia-{}", build_key(&text)));
    let out = work.join("out");
    let started = Instant::now();
    let cached = out.join("done").is_file();
    if !cached {
        compile(&lock, &debs, &work)?;
    }
    let build_time = if cached {
        Duration::ZERO
    } else {
        started.elapsed()
    };
    let mut built = Vec::new();
    for m in &lock.modules {
        let ko = out.join(format!("{m}.ko"));
        let bytes = std::fs::read(&ko).map_err(io(&ko))?;
        let xz = out.join(format!("{m}.ko.xz"));
        let name = m.replace('-', "_");
        let depends = modules::modinfo_depends(&bytes)
            .map_err(|e| NvidiaError::Modules(format!("{}: {e}", ko.display())))?;
        built.push(BuiltModule {
            name,
            file: format!("{m}.ko.xz"),
            depends,
            ko_sha256: deb::sha256_hex(&bytes),
            ko_size: bytes.len(),
            xz: std::fs::read(&xz).map_err(io(&xz))?,
        });
    }
    let pairs: Vec<(String, Vec<String>)> = built
        .iter()
        .map(|m| (m.name.clone(), m.depends.clone()))
        .collect();
    let order = load_order(&pairs, base).map_err(NvidiaError::Modules)?;
    let mut modules = Vec::new();
    for n in order {
        if let Some(i) = built.iter().position(|m| m.name == n) {
            modules.push(built.remove(i));
        }
    }
    // the firmware, byte for byte from the package
    let fw_root = cache.join(format!("firmware-{}", lock.upstream(&lock.firmware)));
    let dir = lock.firmware_dir();
    if !lock
        .firmware_files
        .iter()
        .all(|f| fw_root.join(&dir).join(f).is_file())
    {
        if fw_root.exists() {
            std::fs::remove_dir_all(&fw_root).map_err(io(&fw_root))?;
        }
        let deb = &debs[&lock.firmware.package];
        dpkg_x(deb, &fw_root, &cache.join("dpkg-deb-firmware.log"))?;
    }
    let mut firmware = Vec::new();
    for f in &lock.firmware_files {
        let p = fw_root.join(&dir).join(f);
        firmware.push((format!("{dir}/{f}"), std::fs::read(&p).map_err(io(&p))?));
    }
    Ok(Gpu {
        lock,
        modules,
        firmware,
        build_time,
        cached,
    })
}

/// Unpacks the headers and the source into `work`, patches, compiles, strips and compresses
/// into `work/out` (and `work/out/done` last).
fn compile(
    lock: &NvidiaLock,
    debs: &BTreeMap<String, PathBuf>,
    work: &Path,
) -> Result<(), NvidiaError> {
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(io(work))?;
    }
    let root = work.join("root");
    let out = work.join("out");
    let logs = work.join("logs");
    for d in [&root, &out, &logs] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    for p in lock.headers.iter().chain([&lock.source]) {
        dpkg_x(
            &debs[&p.package],
            &root,
            &logs.join(format!("dpkg-deb-{}.log", p.package)),
        )?;
    }
    let tarball = root.join("usr/src/nvidia-open-kernel.tar.xz");
    let srcdir = work.join("src");
    std::fs::create_dir_all(&srcdir).map_err(io(&srcdir))?;
    run(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&srcdir),
        "tar -xJf",
        "tar, xz-utils",
        &logs.join("tar.log"),
    )?;
    let tree = srcdir.join(SOURCE_DIR);
    apply_patches(&tree)?;
    let usr_src = root.join("usr/src");
    let common = usr_src.join(&lock.headers[1].package);
    let flavour = usr_src.join(&lock.headers[0].package);
    let exclude: Vec<&str> = [
        "nvidia",
        "nvidia-uvm",
        "nvidia-modeset",
        "nvidia-drm",
        "nvidia-peermem",
    ]
    .into_iter()
    .filter(|m| !lock.modules.iter().any(|x| x == m))
    .collect();
    let kcflags = format!(
        "-ffile-prefix-map={}=/pupa-nvidia -ffile-prefix-map={}=/",
        tree.display(),
        root.display()
    );
    let mut make = Command::new("make");
    make.current_dir(&tree)
        .arg("-j2")
        .arg(format!("SYSSRC={}", common.display()))
        .arg(format!("SYSOUT={}", flavour.display()))
        .arg(format!("NV_EXCLUDE_KERNEL_MODULES={}", exclude.join(" ")))
        .arg(format!("KCFLAGS={kcflags}"))
        .arg("modules")
        .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01")
        .env("KBUILD_BUILD_USER", "pupa")
        .env("KBUILD_BUILD_HOST", "pupa")
        .env("LC_ALL", "C")
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("CC")
        .env_remove("CFLAGS");
    run(
        &mut make,
        "make (NVIDIA modules)",
        "make, gcc-12",
        &logs.join("make.log"),
    )?;
    for m in &lock.modules {
        let ko = tree.join(format!("{m}.ko"));
        let dst = out.join(format!("{m}.ko"));
        run(
            Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&dst)
                .arg(&ko),
            "strip --strip-debug",
            "binutils",
            &logs.join(format!("strip-{m}.log")),
        )?;
        let xz = Command::new("xz")
            .args(XZ_ARGS)
            .arg(&dst)
            .output()
            .map_err(|err| NvidiaError::MissingTool {
                tool: "xz".into(),
                pkg: "xz-utils",
                err,
            })?;
        if !xz.status.success() {
            return Err(NvidiaError::Failed {
                tool: "xz".into(),
                log: dst.clone(),
                tail: String::from_utf8_lossy(&xz.stderr).trim().to_string(),
            });
        }
        let p = out.join(format!("{m}.ko.xz"));
        std::fs::write(&p, xz.stdout).map_err(io(&p))?;
    }
    let done = out.join("done");
    std::fs::write(&done, b"").map_err(io(&done))
}

/// The manifest's `"nvidia"` object.
pub fn manifest(g: &Gpu, initrd_without_gpu: usize) -> serde_json::Value {
    let pkgs: Vec<serde_json::Value> = g
        .lock
        .pins()
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "package": p.package, "version": p.version, "deb": p.deb, "deb_sha256": p.sha256,
            })
        })
        .collect();
    serde_json::json!({
        "branch": g.lock.branch,
        "driver_version": g.lock.upstream(&g.lock.source),
        "packages": pkgs,
        "patches": PATCHES.iter().map(|(f, o, n)| serde_json::json!({
            "file": f, "old": o, "new": n,
        })).collect::<Vec<_>>(),
        "modules": g.modules.iter().map(|m| serde_json::json!({
            "name": m.name, "file": m.file, "depends": m.depends,
            "ko_size": m.ko_size, "ko_sha256": m.ko_sha256,
            "size": m.xz.len(), "sha256": deb::sha256_hex(&m.xz),
        })).collect::<Vec<_>>(),
        "firmware": g.firmware.iter().map(|(p, b)| serde_json::json!({
            "path": p, "size": b.len(), "sha256": deb::sha256_hex(b),
        })).collect::<Vec<_>>(),
        "initrd_size_without_gpu": initrd_without_gpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(role: &str, pkg: &str, ver: &str) -> String {
        format!(
            "{role}.package = {pkg}\n{role}.version = {ver}\n{role}.deb = {pkg}_{ver}_amd64.deb\n\
             {role}.sha256 = {}\n",
            "ab".repeat(32)
        )
    }

    fn lock_text() -> String {
        [
            "# c\nbranch = 535\nmodules = nvidia nvidia-uvm\nfirmware_files = gsp_ga10x.bin\n"
                .to_string(),
            pin("source", "nvidia-open-kernel-source", "535.261.03-1"),
            pin("firmware", "firmware-nvidia-gsp", "535.261.03-1"),
            pin("headers", "linux-headers-6.12-cloud", "6.12-1"),
            pin("headers_common", "linux-headers-6.12-common", "6.12-1"),
            pin("kbuild", "linux-kbuild-6.12", "6.12-1"),
        ]
        .concat()
    }

    #[test]
    fn parses_the_lock() {
        let l = NvidiaLock::parse(&lock_text()).unwrap();
        assert_eq!(l.branch, "535");
        assert_eq!(l.modules, ["nvidia", "nvidia-uvm"]);
        assert_eq!(l.upstream(&l.firmware), "535.261.03");
        assert_eq!(l.firmware_dir(), "lib/firmware/nvidia/535.261.03");
        assert_eq!(l.pins().len(), 5);
        let t = lock_text();
        // a firmware of another version than the driver
        let other = t.replace("firmware-nvidia-gsp_535.261.03-1", "x").replace(
            "firmware.version = 535.261.03-1",
            "firmware.version = 535.309.01-1",
        );
        assert!(NvidiaLock::parse(&other).is_err());
        assert!(NvidiaLock::parse(&t.replace("branch = 535", "branch = 550")).is_err());
        assert!(NvidiaLock::parse(&t.replace("kbuild.sha256", "#")).is_err());
        assert!(NvidiaLock::parse(&t.replace("gsp_ga10x.bin", "../x")).is_err());
        let linux = LinuxLock::parse(
            "package = p\nversion = 6.12-1\ndeb = p.deb\nsha256 = \
             752d15dbe0817b35ec227f352e226122ec6567bd47e7240c90e01e61a179baad\n\
             vmlinuz = boot/vmlinuz-6.12-cloud\n",
        )
        .unwrap();
        l.check_kernel(&linux).unwrap();
        let mut l2 = l.clone();
        l2.headers[2].version = "6.11-1".into();
        assert!(l2.check_kernel(&linux).is_err());
    }

    #[test]
    fn the_committed_lock_matches_the_kernel() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let (l, _) = NvidiaLock::read(src).unwrap();
        l.check_kernel(&LinuxLock::read(src).unwrap()).unwrap();
        assert_eq!(l.branch, "535");
    }

    #[test]
    fn module_order() {
        let base: BTreeSet<String> = ["virtio_net".to_string()].into();
        let m = |n: &str, d: &[&str]| (n.to_string(), d.iter().map(|s| s.to_string()).collect());
        let got = load_order(&[m("nvidia_uvm", &["nvidia"]), m("nvidia", &[])], &base).unwrap();
        assert_eq!(got, ["nvidia", "nvidia_uvm"]);
        let got = load_order(
            &[m("nvidia", &["virtio_net"]), m("nvidia_uvm", &["nvidia"])],
            &base,
        )
        .unwrap();
        assert_eq!(got, ["nvidia", "nvidia_uvm"]);
        assert!(load_order(&[m("nvidia", &["drm"])], &base).is_err());
        assert!(load_order(&[m("a", &["b"]), m("b", &["a"])], &base).is_err());
    }

    #[test]
    fn patches_apply_once() {
        let d = std::env::temp_dir().join(format!("pupa-nv-patch-{}", std::process::id()));
        let f = d.join(PATCHES[0].0);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, format!("a\n    {}\nb\n", PATCHES[0].1)).unwrap();
        apply_patches(&d).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains(PATCHES[0].2));
        // a second time: the old text is gone
        assert!(apply_patches(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_sources_file_names_the_components() {
        assert!(SOURCES.contains("Components: contrib non-free non-free-firmware"));
        assert!(SOURCES.contains("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"));
    }
}
