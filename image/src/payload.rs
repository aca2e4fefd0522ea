//! `pupa-image build --payload linux --no-gpu`: the Linux payload beside `pupa.fd`.
//!
//! `<out>/linux/vmlinuz` (the bzImage of the kernel pinned in `image/linux.lock`, from its
//! SHA-256-checked Debian package), `<out>/linux/initramfs.cpio` ([`initramfs::payload`]: a
//! static pupa-worker as `/init` and the modules of [`modules::ROOTS`] in load order) and
//! `<out>/linux/cmdline` (one line, no newline), and a `"payload"` object in `manifest.json`:
//! the package, each part's size, SHA-256 and SHA-384, the modules, and the SNP launch digests
//! with the kernel hashes for the profiles the firmware's own digests cover.
//!
//! Without `--no-gpu` ([`PayloadOptions::gpu`]) the initramfs also holds NVIDIA's open kernel
//! modules of the 535 branch, built against the pinned kernel, after the others in
//! `pupa.order`, and their GSP firmware under `lib/firmware/nvidia/VERSION/` ([`nvidia`]); the
//! manifest's payload then has `"gpu": true` and an `"nvidia"` object.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pupa_measurements::hexfmt;
use pupa_measurements::manifest::SnpMeasurement;
use pupa_measurements::ovmf::Firmware;
use pupa_measurements::snp::{KernelHashes, SnpError};
use pupa_protocol::boot_digests::BootDigests;
use sha2::{Digest, Sha256, Sha384};

use crate::deb::{self, DebError, LinuxLock};
use crate::initramfs;
use crate::modules::{self, ModuleError, ModuleSet};
use crate::nvidia::{self, NvidiaError};
use crate::worker::{self, WorkerError, WorkerOptions};

/// The default kernel command line. pupa-worker's init reads the `pupa.*` words
/// (worker/src/init/cmdline.rs); `pupa.tee=auto` takes the guest kernel's configfs-tsm provider
/// (SNP, TDX) and serves the insecure dev report only where there is none (a plain VM), so the
/// one measured payload serves every platform.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1 pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 \
                                   pupa.listen=0.0.0.0:7000 pupa.tee=auto";

/// The files, relative to the output directory.
pub const KERNEL_FILE: &str = "linux/vmlinuz";
pub const INITRD_FILE: &str = "linux/initramfs.cpio";
pub const CMDLINE_FILE: &str = "linux/cmdline";

/// What to build.
#[derive(Debug, Clone)]
pub struct PayloadOptions {
    /// The workspace root.
    pub src: PathBuf,
    /// The directory holding `pupa.fd` and `manifest.json`.
    pub out: PathBuf,
    /// Where the `.deb` is downloaded and unpacked (default `<src>/target/linux-deb`).
    pub deb_cache: PathBuf,
    /// Cargo target directory of the static worker (default `<src>/target/musl`).
    pub worker_target_dir: PathBuf,
    /// `CARGO_HOME` for the worker build (`None`: the caller's).
    pub cargo_home: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// Do not compute the SNP launch digests.
    pub skip_measurements: bool,
    /// Add the NVIDIA modules, GSP firmware and the GPU user space, with the glibc worker
    /// (`pupa-image build` without `--no-gpu`).
    pub gpu: bool,
}

impl PayloadOptions {
    /// The defaults for a source tree and output directory.
    pub fn new(src: &Path, out: &Path) -> PayloadOptions {
        PayloadOptions {
            src: src.to_path_buf(),
            out: out.to_path_buf(),
            deb_cache: src.join("target/linux-deb"),
            worker_target_dir: src.join("target/musl"),
            cargo_home: None,
            cmdline: DEFAULT_CMDLINE.to_string(),
            skip_measurements: false,
            gpu: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct PayloadOutput {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: PathBuf,
    pub kernel_size: usize,
    pub initrd_size: usize,
    pub worker_size: usize,
    pub worker_build_time: Duration,
    pub modules: ModuleSet,
    /// Why the SNP digests with kernel hashes are absent, if they are.
    pub snp_note: Option<String>,
    /// The manifest's `"payload"` object.
    pub manifest: serde_json::Value,
    /// The GPU part, when built.
    pub gpu: Option<GpuSummary>,
}

/// What the GPU part added.
#[derive(Debug, Clone)]
pub struct GpuSummary {
    /// `(file, compressed size, stripped .ko size)` in load order.
    pub modules: Vec<(String, usize, usize)>,
    /// `(path, size)`.
    pub firmware: Vec<(String, usize)>,
    /// The initramfs without the NVIDIA modules, firmware and user space (with the same
    /// worker).
    pub initrd_size_without_gpu: usize,
    /// Bytes of the user space's files (libraries, cubins).
    pub userspace_bytes: usize,
    /// The module build's time (zero: taken from the cache).
    pub build_time: Duration,
    pub cached: bool,
    pub driver_version: String,
}

/// Why the payload cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("kernel package: {0}")]
    Deb(#[from] DebError),
    #[error("kernel modules: {0}")]
    Modules(#[from] ModuleError),
    #[error(transparent)]
    Nvidia(#[from] NvidiaError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Userspace(#[from] crate::userspace::UserspaceError),
    #[error("initramfs: {0}")]
    Initramfs(#[from] initramfs::Error),
    #[error("kernel config {path}: {why}")]
    KernelConfig { path: PathBuf, why: String },
    #[error("--cmdline: {0}")]
    Cmdline(&'static str),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("manifest.json: {0}")]
    Manifest(String),
    #[error("SNP launch digest with kernel hashes: {0}")]
    Snp(SnpError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PayloadError + '_ {
    move |err| PayloadError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Size, SHA-256 and SHA-384 of one part.
fn part(file: &str, size: usize, hashed: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "file": file,
        "size": size,
        "sha256": hexfmt::encode(&Sha256::digest(hashed)),
        "sha384": hexfmt::encode(&Sha384::digest(hashed)),
    })
}

/// The SNP launch digests of `fw` with the kernel hashes, for the firmware manifest's
/// profiles (the CPU types × vCPU counts of `pupa_measurements::manifest`, QEMU, features 0x1).
pub fn snp_digests(fw: &Firmware, hashes: &KernelHashes) -> Result<Vec<SnpMeasurement>, SnpError> {
    pupa_measurements::manifest::snp_profiles(fw, Some(hashes))
}

/// The inputs of the manifest's `"payload"` object.
pub struct PayloadFacts<'a> {
    pub lock: &'a LinuxLock,
    pub config: &'a std::collections::BTreeMap<String, String>,
    pub kernel: &'a [u8],
    pub initrd: &'a [u8],
    pub cmdline: &'a str,
    pub worker: &'a [u8],
    pub modules: &'a ModuleSet,
    /// `Ok(digests)`, or why there are none.
    pub snp: Result<Vec<SnpMeasurement>, String>,
    /// SHA-384 of `pupa.fd` (for the dev measurement), if it was read.
    pub firmware_sha384: Option<[u8; 48]>,
}

/// The `image_sha384` pupa-worker's dev evidence names when pupa's firmware (`firmware`)
/// booted this payload: what the firmware hands it in its boot-digests setup_data node
/// (`pupa_protocol::boot_digests`), hashed.
pub fn dev_measurement(
    firmware: &[u8; 48],
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> [u8; 48] {
    BootDigests {
        magic: BootDigests::MAGIC,
        firmware: *firmware,
        kernel: pupa_measurements::linux::kernel_sha384(kernel),
        initrd: Sha384::digest(initrd).into(),
        cmdline: Sha384::digest([cmdline.as_bytes(), b"\0"].concat()).into(),
    }
    .dev_measurement()
}

/// The manifest's `"payload"` object.
pub fn payload_object(f: &PayloadFacts<'_>) -> serde_json::Value {
    let with_nul = [f.cmdline.as_bytes(), b"\0"].concat();
    let mut cmdline = part(CMDLINE_FILE, f.cmdline.len(), &with_nul);
    cmdline["text"] = f.cmdline.into();
    cmdline["hashed"] =
        "the file's bytes and one NUL (size + 1 bytes): QEMU's -append as the SEV hashes table \
         and the firmware hash it"
            .into();
    // what the firmware extends under TDX (the kernel with its boot-loader fields zeroed)
    let tdx =
        pupa_measurements::linux::tdx_payload_rtmrs(f.kernel, Some(f.initrd), Some(f.cmdline));
    let (snp, snp_missing) = match &f.snp {
        Ok(d) => (serde_json::to_value(d).unwrap_or_default(), None),
        Err(why) => (serde_json::json!([]), Some(why.clone())),
    };
    serde_json::json!({
        "kind": "linux",
        "gpu": false,
        "kernel_package": {
            "package": f.lock.package,
            "version": f.lock.version,
            "deb": f.lock.deb,
            "deb_sha256": f.lock.sha256,
            "release": f.lock.release(),
            "config": f.config,
        },
        "worker": {
            "toolchain": worker::TOOLCHAIN,
            "target": worker::TARGET,
            "size": f.worker.len(),
            "sha256": hexfmt::encode(&Sha256::digest(f.worker)),
        },
        "kernel": part(KERNEL_FILE, f.kernel.len(), f.kernel),
        "initrd": part(INITRD_FILE, f.initrd.len(), f.initrd),
        "cmdline": cmdline,
        "modules": f.modules.load.iter().map(|m| serde_json::json!({
            "name": m.name, "file": m.file_name(), "path": m.path,
        })).collect::<Vec<_>>(),
        "modules_builtin": f.modules.builtin,
        "measurements": {
            "snp_with_kernel_hashes": snp,
            "snp_missing": snp_missing,
            "dev": f.firmware_sha384.map(|fw| hexfmt::encode(&dev_measurement(&fw, f.kernel, f.initrd, f.cmdline))),
            "tdx": { "rtmr1": hexfmt::encode(&tdx.rtmr1), "rtmr2": hexfmt::encode(&tdx.rtmr2) },
        },
    })
}

fn check_cmdline(c: &str) -> Result<(), PayloadError> {
    if c.trim().is_empty() {
        return Err(PayloadError::Cmdline("empty"));
    }
    if c.contains(['\n', '\r', '\0']) {
        return Err(PayloadError::Cmdline("must be one line without NUL"));
    }
    Ok(())
}

/// The kernel package's files the payload uses: (lock, config values, kernel, modules).
type Kernel = (
    LinuxLock,
    std::collections::BTreeMap<String, String>,
    Vec<u8>,
    ModuleSet,
    Vec<(String, Vec<u8>)>,
);

/// Fetches the pinned package, checks its config, resolves and reads the modules.
fn kernel(opts: &PayloadOptions) -> Result<Kernel, PayloadError> {
    let lock = LinuxLock::read(&opts.src)?;
    let pkg = deb::fetch(&lock, &opts.deb_cache)?;
    let config_path = pkg.root.join(format!("boot/config-{}", lock.release()));
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config = deb::required_config(&text).map_err(|why| PayloadError::KernelConfig {
        path: config_path.clone(),
        why,
    })?;
    let moddir = pkg.module_dir(&lock);
    let set = modules::resolve(&moddir)?;
    let mut files = Vec::new();
    for m in &set.load {
        let p = moddir.join(&m.path);
        files.push((
            m.file_name().to_string(),
            std::fs::read(&p).map_err(io(&p))?,
        ));
    }
    let vmlinuz = pkg.root.join(&lock.vmlinuz);
    let kernel = std::fs::read(&vmlinuz).map_err(io(&vmlinuz))?;
    Ok((lock, config, kernel, set, files))
}

/// Builds the payload into `opts.out/linux/` and adds `"payload"` to `opts.out/manifest.json`.
pub fn build(opts: &PayloadOptions) -> Result<PayloadOutput, PayloadError> {
    check_cmdline(&opts.cmdline)?;
    let (lock, config, kernel, set, files) = kernel(opts)?;
    let w = worker::build(&WorkerOptions {
        src: opts.src.clone(),
        target_dir: opts.worker_target_dir.clone(),
        cargo_home: opts.cargo_home.clone(),
        gpu: opts.gpu,
    })?;
    let init = std::fs::read(&w.path).map_err(io(&w.path))?;
    let (initrd, gpu) = if opts.gpu {
        let base = set
            .load
            .iter()
            .map(|m| m.name.clone())
            .chain(set.builtin.iter().cloned())
            .collect();
        let g = nvidia::build(&opts.src, &opts.deb_cache, &lock, &base)?;
        let driver = g.lock.upstream(&g.lock.source).to_string();
        let u = crate::userspace::assemble(&opts.src, &opts.deb_cache, &driver)?;
        let without = initramfs::payload(&init, &files)?.len();
        let mut all = files.clone();
        all.extend(g.modules.iter().map(|m| (m.file.clone(), m.xz.clone())));
        let mut extra = g.firmware.clone();
        extra.extend(u.files.iter().cloned());
        let initrd = initramfs::payload_with_files(&init, &all, &extra)?;
        (initrd, Some((g, u, without)))
    } else {
        (initramfs::payload(&init, &files)?, None)
    };
    let fw_path = opts.out.join("pupa.fd");
    let firmware_sha384 = std::fs::read(&fw_path)
        .ok()
        .map(|b| Sha384::digest(&b).into());
    let snp = if opts.skip_measurements {
        Err("not computed (--no-measurements)".to_string())
    } else {
        let bytes = std::fs::read(&fw_path).map_err(io(&fw_path))?;
        let fw = Firmware::parse(&bytes).map_err(|e| PayloadError::Manifest(e.to_string()))?;
        let hashes = KernelHashes::new(&kernel, Some(&initrd), Some(&opts.cmdline));
        match snp_digests(&fw, &hashes) {
            Err(e @ SnpError::NoKernelHashesSection) => Err(e.to_string()),
            r => Ok(r.map_err(PayloadError::Snp)?),
        }
    };
    let mut payload = payload_object(&PayloadFacts {
        lock: &lock,
        config: &config,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &opts.cmdline,
        worker: &init,
        modules: &set,
        snp: snp.clone(),
        firmware_sha384,
    });
    if let Some((g, u, without)) = &gpu {
        payload["gpu"] = true.into();
        payload["nvidia"] = nvidia::manifest(g, *without);
        payload["userspace"] = crate::userspace::manifest(u);
        payload["worker"]["target"] = worker::GPU_TARGET.into();
        payload["worker"]["features"] = worker::GPU_FEATURES.into();
    }
    let gpu = gpu.map(|(g, u, without)| GpuSummary {
        userspace_bytes: u.files.iter().map(|(_, b)| b.len()).sum(),
        modules: g
            .modules
            .iter()
            .map(|m| (m.file.clone(), m.xz.len(), m.ko_size))
            .collect(),
        firmware: g
            .firmware
            .iter()
            .map(|(p, b)| (p.clone(), b.len()))
            .collect(),
        initrd_size_without_gpu: without,
        build_time: g.build_time,
        cached: g.cached,
        driver_version: g.lock.upstream(&g.lock.source).to_string(),
    });
    let dir = opts.out.join("linux");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let write = |rel: &str, bytes: &[u8]| {
        let p = opts.out.join(rel);
        std::fs::write(&p, bytes).map_err(io(&p)).map(|()| p)
    };
    let out = PayloadOutput {
        kernel: write(KERNEL_FILE, &kernel)?,
        initrd: write(INITRD_FILE, &initrd)?,
        cmdline: write(CMDLINE_FILE, opts.cmdline.as_bytes())?,
        kernel_size: kernel.len(),
        initrd_size: initrd.len(),
        worker_size: init.len(),
        worker_build_time: w.build_time,
        modules: set,
        snp_note: snp.err(),
        manifest: payload,
        gpu,
    };
    add_to_manifest(&opts.out.join("manifest.json"), &out.manifest)?;
    Ok(out)
}

/// Adds (or replaces) the `"payload"` key of the manifest file.
fn add_to_manifest(path: &Path, payload: &serde_json::Value) -> Result<(), PayloadError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| PayloadError::Manifest(e.to_string()))?;
    let obj = m
        .as_object_mut()
        .ok_or_else(|| PayloadError::Manifest("not a JSON object".into()))?;
    obj.insert("payload".into(), payload.clone());
    let text =
        serde_json::to_string_pretty(&m).map_err(|e| PayloadError::Manifest(e.to_string()))? + "\n";
    std::fs::write(path, text).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::Module;
    use pupa_measurements::snp::VmmType;

    fn facts_json(snp: Result<Vec<SnpMeasurement>, String>) -> serde_json::Value {
        let lock = LinuxLock::parse(
            "package = linux-image-x\nversion = 1-2\ndeb = x.deb\nsha256 = \
             752d15dbe0817b35ec227f352e226122ec6567bd47e7240c90e01e61a179baad\n\
             vmlinuz = boot/vmlinuz-6.12-cloud\n",
        )
        .unwrap();
        let config = [("CONFIG_TSM_REPORTS".to_string(), "m".to_string())].into();
        let set = ModuleSet {
            load: vec![Module {
                name: "sev_guest".into(),
                path: "kernel/drivers/virt/coco/sev-guest/sev-guest.ko.xz".into(),
            }],
            builtin: vec!["virtio".into()],
        };
        payload_object(&PayloadFacts {
            lock: &lock,
            config: &config,
            kernel: b"kernel",
            initrd: b"initrd!",
            cmdline: "console=ttyS0",
            worker: b"worker",
            modules: &set,
            snp,
            firmware_sha384: Some([9; 48]),
        })
    }

    #[test]
    fn the_payload_object() {
        let v = facts_json(Err("no section".into()));
        assert_eq!(v["kind"], "linux");
        assert_eq!(v["gpu"], false);
        assert_eq!(v["kernel_package"]["version"], "1-2");
        assert_eq!(v["kernel_package"]["release"], "6.12-cloud");
        assert_eq!(v["kernel_package"]["config"]["CONFIG_TSM_REPORTS"], "m");
        assert_eq!(v["kernel"]["size"], 6);
        assert_eq!(
            v["kernel"]["sha256"],
            hexfmt::encode(&Sha256::digest(b"kernel"))
        );
        assert_eq!(
            v["measurements"]["dev"],
            hexfmt::encode(&dev_measurement(
                &[9; 48],
                b"kernel",
                b"initrd!",
                "console=ttyS0"
            ))
        );
        assert_eq!(v["initrd"]["file"], INITRD_FILE);
        assert_eq!(
            v["initrd"]["sha384"],
            hexfmt::encode(&Sha384::digest(b"initrd!"))
        );
        // the command line: its size without, its hashes with the trailing NUL
        assert_eq!(v["cmdline"]["size"], 13);
        assert_eq!(v["cmdline"]["text"], "console=ttyS0");
        assert_eq!(
            v["cmdline"]["sha256"],
            hexfmt::encode(&Sha256::digest(b"console=ttyS0\0"))
        );
        assert_eq!(
            v["cmdline"]["sha384"],
            hexfmt::encode(&Sha384::digest(b"console=ttyS0\0"))
        );
        let hashes = KernelHashes::new(b"kernel", Some(b"initrd!"), Some("console=ttyS0"));
        assert_eq!(v["cmdline"]["sha256"], hexfmt::encode(&hashes.cmdline));
        assert_eq!(v["modules"][0]["file"], "sev-guest.ko.xz");
        assert_eq!(v["modules"][0]["name"], "sev_guest");
        assert_eq!(v["modules_builtin"][0], "virtio");
        assert_eq!(
            v["measurements"]["snp_with_kernel_hashes"],
            serde_json::json!([])
        );
        assert_eq!(v["measurements"]["snp_missing"], "no section");
        let tdx = pupa_measurements::linux::tdx_payload_rtmrs(
            b"kernel",
            Some(b"initrd!"),
            Some("console=ttyS0"),
        );
        assert_eq!(
            v["measurements"]["tdx"]["rtmr1"],
            hexfmt::encode(&tdx.rtmr1)
        );
        assert_eq!(
            v["measurements"]["tdx"]["rtmr2"],
            hexfmt::encode(&tdx.rtmr2)
        );
        let m = SnpMeasurement {
            vcpus: 1,
            vcpu_type: Some("EPYC-v4".into()),
            vcpu_sig: 1,
            vmm_type: VmmType::Qemu,
            guest_features: 1,
            digest: "ab".into(),
        };
        let v = facts_json(Ok(vec![m]));
        assert_eq!(
            v["measurements"]["snp_with_kernel_hashes"][0]["digest"],
            "ab"
        );
        assert!(v["measurements"]["snp_missing"].is_null());
        assert_eq!(facts_json(Err("x".into())), facts_json(Err("x".into())));
    }

    #[test]
    fn bad_command_lines() {
        assert!(check_cmdline("").is_err());
        assert!(check_cmdline("a\nb").is_err());
        assert!(check_cmdline("a\0").is_err());
        assert!(check_cmdline(DEFAULT_CMDLINE).is_ok());
        assert!(!DEFAULT_CMDLINE.contains("  "));
    }
}
