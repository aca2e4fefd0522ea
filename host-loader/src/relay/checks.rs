//! What `pupa-host run` checks before it boots anything, so that an operator's mistake gets a
//! specific error at once instead of a VMM failure (or a 45 s wait) later:
//!
//! - the flags: memory at least [`MIN_MEMORY_MIB`] (the guest's early memory, its 4 MiB
//!   shared window, the heap and one 64 MiB job frame), vCPUs 1..=[`MAX_VCPUS`], every timeout
//!   and count above zero;
//! - `--image`: a regular file that parses as an OVMF-format firmware (the GUID table footer at
//!   end − 0x30, via `pupa_measurements::ovmf`), with the SEV or TDX metadata the chosen TEE
//!   needs;
//! - `--manifest`: the image's SHA-384 (and size) equal the manifest's `image` entry;
//! - `--payload linux`: the kernel and initramfs are regular, non-empty files, and the command
//!   line gives pupa-worker what it needs to be reached: `pupa.tee=` the `--tee`, a
//!   `pupa.ip=` (user networking forwards to 10.0.2.15 only), `pupa.listen` on `--guest-port`.

use std::path::{Path, PathBuf};

use pupa_measurements::{Firmware, OvmfError};
use sha2::{Digest, Sha384};

use super::{Payload, RunArgs};
use crate::profile::{LinuxPayload, TeeKind, LINUX_MIN_MEMORY_MIB};

/// The guest address QEMU user networking forwards `hostfwd` ports to.
pub const USER_NET_GUEST_IP: &str = "10.0.2.15";

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
    /// A Linux payload flag without `--payload linux`.
    #[error("--{0} needs --payload linux")]
    NeedsLinuxPayload(&'static str),
    /// A Linux payload file is missing or unusable.
    #[error("--{flag} {}: {why}", path.display())]
    PayloadFile {
        /// `kernel`, `initrd` or `payload-dir`.
        flag: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The Linux payload's command line would not let the worker serve through this host.
    #[error("--append {append:?}: {why}")]
    Cmdline {
        /// The command line.
        append: String,
        /// What is wrong.
        why: String,
    },
    /// SNP with a Linux payload: the image declares no SEV hash table.
    #[error("--image {}: declares no SEV hash table (SEV_HASH_TABLE_RV), which QEMU's kernel-hashes=on needs for --payload linux under --tee snp", path.display())]
    NoSevHashTable {
        /// The path.
        path: PathBuf,
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
    let memory = a.memory();
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory) {
        return Err(flag(
            "memory-mib",
            memory,
            format!("the guest needs {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB"),
        ));
    }
    if a.payload == Payload::Linux && memory < LINUX_MIN_MEMORY_MIB {
        return Err(flag(
            "memory-mib",
            memory,
            format!("the Linux payload needs at least {LINUX_MIN_MEMORY_MIB} MiB"),
        ));
    }
    if let Some(why) = crate::profile::unsupported(a.tee, a.vmm) {
        let vmm = clap::ValueEnum::to_possible_value(&a.vmm)
            .map_or_else(|| format!("{:?}", a.vmm), |v| v.get_name().to_string());
        return Err(flag("vmm", vmm, why));
    }
    if a.tee != TeeKind::Dev && a.accel == Some(crate::profile::Accel::Tcg) {
        return Err(flag(
            "accel",
            "tcg",
            format!("--tee {} runs under KVM only", a.tee),
        ));
    }
    if a.vcpus == 0 || a.vcpus > MAX_VCPUS {
        return Err(flag("vcpus", a.vcpus, format!("want 1..={MAX_VCPUS}")));
    }
    for (name, v) in [
        ("ready-timeout-s", a.ready_timeout_s()),
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

/// Resolves and checks the Linux payload of `--payload linux` (`None` for the unikernel,
/// which must not be given payload flags).
pub fn check_payload(a: &RunArgs) -> Result<Option<LinuxPayload>, CheckError> {
    if a.payload == Payload::Unikernel {
        let given = [
            ("payload-dir", a.payload_dir.is_some()),
            ("kernel", a.kernel.is_some()),
            ("initrd", a.initrd.is_some()),
            ("append", a.append.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(_, g)| *g) {
            return Err(CheckError::NeedsLinuxPayload(name));
        }
        return Ok(None);
    }
    if a.image.is_none() {
        return Err(flag(
            "payload",
            "linux",
            "needs --image (the firmware that boots the kernel)",
        ));
    }
    if let Some(why) = crate::profile::unsupported_payload(a.vmm) {
        return Err(flag("payload", "linux", why));
    }
    let from_dir = |name: &str| a.payload_dir.as_ref().map(|d| d.join(name));
    let missing = |what: &'static str| {
        flag(
            "payload",
            "linux",
            format!("needs --{what} (or --payload-dir)"),
        )
    };
    let kernel = a
        .kernel
        .clone()
        .or_else(|| from_dir("vmlinuz"))
        .ok_or_else(|| missing("kernel"))?;
    let initrd = a
        .initrd
        .clone()
        .or_else(|| from_dir("initramfs.cpio"))
        .ok_or_else(|| missing("initrd"))?;
    check_payload_file("kernel", &kernel)?;
    check_payload_file("initrd", &initrd)?;
    let append = match (&a.append, &a.payload_dir) {
        (Some(s), _) => s.clone(),
        (None, Some(dir)) => {
            let path = dir.join("cmdline");
            std::fs::read_to_string(&path)
                .map_err(|e| CheckError::PayloadFile {
                    flag: "payload-dir",
                    path,
                    why: format!("cannot read cmdline: {e}"),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        }
        (None, None) => return Err(missing("append")),
    };
    check_cmdline(&append, a.tee, a.tap.is_none(), a.guest_port).map_err(|why| {
        CheckError::Cmdline {
            append: append.clone(),
            why,
        }
    })?;
    Ok(Some(LinuxPayload {
        kernel,
        initrd,
        append,
    }))
}

fn check_payload_file(flag: &'static str, path: &Path) -> Result<(), CheckError> {
    let bad = |why: String| CheckError::PayloadFile {
        flag,
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(bad("is empty".into()));
    }
    std::fs::File::open(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    Ok(())
}

/// Checks that the kernel command line lets pupa-worker (as /init) serve where this host
/// relays to: `pupa.tee=` names `tee` or is `auto` (the worker then takes what the guest
/// kernel's configfs-tsm provider says), `pupa.ip=` is there (under user networking: the
/// address QEMU forwards to, [`USER_NET_GUEST_IP`]), `pupa.listen` (default port 7000) is on
/// `guest_port`. The worker parses and checks the rest itself.
pub fn check_cmdline(
    append: &str,
    tee: TeeKind,
    user_net: bool,
    guest_port: u16,
) -> Result<(), String> {
    if append.contains(['\n', '\r', '\0']) {
        return Err("must be one line".into());
    }
    let arg = |key: &str| {
        append
            .split_ascii_whitespace()
            .rev()
            .find_map(|w| w.strip_prefix(key))
    };
    match arg("pupa.tee=") {
        None => {
            return Err(format!(
                "no pupa.tee= (want pupa.tee={tee}, as --tee, or auto)"
            ))
        }
        Some("auto") => {}
        Some(t) if t.parse::<TeeKind>() != Ok(tee) => {
            return Err(format!("pupa.tee={t}, but --tee is {tee}"))
        }
        Some(_) => {}
    }
    let ip = arg("pupa.ip=").ok_or(
        "no pupa.ip=ADDRESS/PREFIX or pupa.ip=dhcp: the worker cannot configure its NIC and \
         powers off",
    )?;
    let addr = ip.split('/').next().unwrap_or(ip);
    // dhcp: user networking's DHCP server leases USER_NET_GUEST_IP to the first client, and the
    // worker is the only one
    if user_net && addr != USER_NET_GUEST_IP && ip != "dhcp" {
        return Err(format!(
            "pupa.ip={ip}: user networking forwards the guest port to {USER_NET_GUEST_IP} \
             (use pupa.ip={USER_NET_GUEST_IP}/24 pupa.gw=10.0.2.2, or --tap)"
        ));
    }
    let port = match arg("pupa.listen=") {
        None => 7000,
        Some(l) => l
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .ok_or_else(|| format!("pupa.listen={l}: not ADDRESS:PORT"))?,
    };
    if port != guest_port {
        return Err(format!(
            "the worker listens on port {port} (pupa.listen), but --guest-port is {guest_port}"
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

/// Checks that the image (`bytes`, already through [`check_image`]) can boot a Linux payload
/// under `tee`: under SNP, QEMU's `kernel-hashes=on` needs the SEV hash table the firmware
/// declares (`SEV_HASH_TABLE_RV` in the GUID table), or QEMU refuses to start.
pub fn check_image_for_payload(path: &Path, bytes: &[u8], tee: TeeKind) -> Result<(), CheckError> {
    if tee != TeeKind::Snp {
        return Ok(());
    }
    let fw = Firmware::parse(bytes).map_err(|err| CheckError::NotFirmware {
        path: path.to_path_buf(),
        err,
    })?;
    if fw.sev_hash_table().is_none() {
        return Err(CheckError::NoSevHashTable {
            path: path.to_path_buf(),
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "console=ttyS0 panic=-1 pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 \
                        pupa.listen=0.0.0.0:7000 pupa.tee=dev";

    /// An OVMF-format image with an empty GUID table (no SEV hash table).
    fn bare_image() -> Vec<u8> {
        let n = 64 * 1024;
        let mut b = vec![0u8; n];
        b[n - 0x32..n - 0x30].copy_from_slice(&18u16.to_le_bytes());
        b[n - 0x30..n - 0x20].copy_from_slice(&pupa_measurements::guid::OVMF_TABLE_FOOTER.0);
        b
    }

    #[test]
    fn snp_with_a_payload_needs_the_sev_hash_table() {
        let p = Path::new("pupa.fd");
        let b = bare_image();
        let e = check_image_for_payload(p, &b, TeeKind::Snp).unwrap_err();
        assert!(matches!(e, CheckError::NoSevHashTable { .. }), "{e}");
        assert!(e.to_string().contains("kernel-hashes=on"), "{e}");
        // TDX and plain: nothing asked of the image for the payload.
        for tee in [TeeKind::Dev, TeeKind::Tdx] {
            assert!(check_image_for_payload(p, &b, tee).is_ok(), "{tee}");
        }
    }

    #[test]
    fn the_test_command_line_fits_user_networking() {
        assert_eq!(check_cmdline(GOOD, TeeKind::Dev, true, 7000), Ok(()));
        // pupa.listen defaults to port 7000
        let no_listen = GOOD.replace(" pupa.listen=0.0.0.0:7000", "");
        assert_eq!(check_cmdline(&no_listen, TeeKind::Dev, true, 7000), Ok(()));
        // TAP: any address
        let tap = GOOD.replace("10.0.2.15/24", "192.168.7.2/24");
        assert_eq!(check_cmdline(&tap, TeeKind::Dev, false, 7000), Ok(()));
        // DHCP: user networking leases 10.0.2.15 first; on a TAP, whatever the host's server says
        let dhcp = GOOD.replace("pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2", "pupa.ip=dhcp");
        assert_ne!(dhcp, GOOD);
        assert_eq!(check_cmdline(&dhcp, TeeKind::Dev, true, 7000), Ok(()));
        assert_eq!(check_cmdline(&dhcp, TeeKind::Dev, false, 7000), Ok(()));
        // pupa.tee=auto serves under every --tee (the worker asks the guest kernel)
        let auto = GOOD.replace("pupa.tee=dev", "pupa.tee=auto");
        for tee in [TeeKind::Dev, TeeKind::Snp, TeeKind::Tdx] {
            assert_eq!(check_cmdline(&auto, tee, true, 7000), Ok(()), "{tee}");
        }
    }

    #[test]
    fn command_lines_the_worker_cannot_serve_through_are_named() {
        let cases = [
            (
                GOOD.replace(" pupa.tee=dev", ""),
                TeeKind::Dev,
                7000,
                "no pupa.tee=",
            ),
            (
                GOOD.to_string(),
                TeeKind::Snp,
                7000,
                "pupa.tee=dev, but --tee is snp",
            ),
            (
                GOOD.replace("pupa.ip=10.0.2.15/24 ", ""),
                TeeKind::Dev,
                7000,
                "no pupa.ip=",
            ),
            (
                GOOD.replace("10.0.2.15/24", "10.0.2.16/24"),
                TeeKind::Dev,
                7000,
                "forwards the guest port to 10.0.2.15",
            ),
            (GOOD.to_string(), TeeKind::Dev, 7001, "--guest-port is 7001"),
            (
                GOOD.replace("0.0.0.0:7000", "0.0.0.0"),
                TeeKind::Dev,
                7000,
                "not ADDRESS:PORT",
            ),
            (format!("{GOOD}\nx"), TeeKind::Dev, 7000, "one line"),
        ];
        for (line, tee, port, want) in cases {
            let e = check_cmdline(&line, tee, true, port).expect_err(&line);
            assert!(e.contains(want), "{line:?}: {e}");
        }
    }
}
