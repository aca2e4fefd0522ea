//! VM launch profiles: the exact command lines that boot the pupa image as VM firmware.
//!
//! One source of truth for `pupa-host run`, the tests and the scripts in `qemu/` (which are
//! generated from here by `pupa-host profiles --write qemu/`). The plain profile runs on this
//! development machine (KVM when it actually works, else TCG); the SNP and TDX profiles need
//! hardware and a host kernel with the matching support, and were NOT executed here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which TEE the VM is launched as: the one kind the guest, the protocol and the verifier
/// share (`dev` is a plain VM whose guest serves insecure development evidence).
pub use pupa_measurements::tee_arg::TeeKind;

/// Which VMM launches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Vmm {
    Qemu,
    CloudHypervisor,
}

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// Guest networking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// No network device.
    None,
    /// QEMU user networking with the guest's service port forwarded from 127.0.0.1:`host_port`
    /// (development profile).
    UserForward { host_port: u16, guest_port: u16 },
    /// A TAP device set up by the operator (production; see qemu/README.md).
    Tap { ifname: String },
}

/// A Linux kernel the firmware boots instead of its own runtime. QEMU hands the three to the
/// firmware over fw_cfg (`-kernel`, `-initrd`, `-append`); under SNP it also puts their hashes
/// into the launch measurement (`kernel-hashes=on`, checked by the firmware against the SEV hash
/// table); under TDX QEMU adds nothing: the firmware measures them into the RTMRs itself
/// (kernel RTMR[1], initrd and command line RTMR[2]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxPayload {
    /// The kernel (bzImage).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio; its `/init` is pupa-worker).
    pub initrd: PathBuf,
    /// The kernel command line (`pupa.ip=`, `pupa.listen=`, `pupa.tee=`, ...).
    pub append: String,
}

/// Everything a launch needs.
#[derive(Clone, Debug)]
pub struct LaunchConfig<'a> {
    pub tee: TeeKind,
    pub vmm: Vmm,
    pub image: &'a Path,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub accel: Accel,
    pub network: Network,
    /// Add QEMU's isa-debug-exit device (tests: failure codes become exit statuses).
    pub debug_exit: bool,
    /// Extra `-fw_cfg name=...,string=...` items (tests).
    pub fw_cfg: Vec<(String, String)>,
    /// A Linux kernel for the firmware to boot; `None`: the firmware runs its own runtime.
    pub payload: Option<LinuxPayload>,
}

/// A generated command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    /// Whether this profile has been executed on a machine like the development one.
    pub executed_here: bool,
}

impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            if a.contains([' ', '"', '{', '}']) {
                write!(f, " \\\n    '{a}'")?;
            } else if a.starts_with('-') {
                write!(f, " \\\n    {a}")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// The SNP C-bit position and the physical-address reduction of current EPYC parts (Milan,
/// Genoa, Turin: CPUID Fn8000_001F EBX[5:0] = 51, EBX[11:6] = 1).
const SNP_CBITPOS: u32 = 51;
const SNP_REDUCED_PHYS_BITS: u32 = 1;

/// Why cloud-hypervisor cannot launch a TDX guest on any upstream host.
pub const CLOUD_HYPERVISOR_TDX_UNSUPPORTED: &str = "cloud-hypervisor's TDX support targets the \
    out-of-tree KVM TDX interface, not the one upstream Linux (>= 6.16) merged, so it runs on no \
    upstream TDX host; use the QEMU profile (QEMU >= 10.1). No MRTD is published for it";

/// Guest memory for the Linux payload when none is asked for, in MiB.
pub const LINUX_DEFAULT_MEMORY_MIB: u32 = 1024;
/// Least guest memory the Linux payload boots with, in MiB (kernel, initramfs unpacked in
/// RAM, the worker and one 64 MiB job frame).
pub const LINUX_MIN_MEMORY_MIB: u32 = 512;

/// Why cloud-hypervisor cannot boot a Linux payload through the pupa firmware.
pub const CLOUD_HYPERVISOR_LINUX_PAYLOAD_UNSUPPORTED: &str = "cloud-hypervisor cannot hand a \
    kernel to firmware: its --kernel/--initramfs/--cmdline replace the firmware, and its fw_cfg \
    device is a build feature (`fw_cfg`) that release binaries do not enable; use --vmm qemu";

/// Why `vmm` cannot boot a Linux payload through the firmware, or `None` if it can.
pub fn unsupported_payload(vmm: Vmm) -> Option<&'static str> {
    match vmm {
        Vmm::Qemu => None,
        Vmm::CloudHypervisor => Some(CLOUD_HYPERVISOR_LINUX_PAYLOAD_UNSUPPORTED),
    }
}

/// Why `cfg` cannot be launched (a TEE, VMM or payload combination no profile offers), or
/// `None` if it can. [`command`] builds a command line only for launches this accepts
/// (`vm::Guest::start` refuses the others).
pub fn unsupported_launch(cfg: &LaunchConfig) -> Option<&'static str> {
    unsupported(cfg.tee, cfg.vmm).or_else(|| {
        cfg.payload
            .as_ref()
            .and_then(|_| unsupported_payload(cfg.vmm))
    })
}

/// Why the `tee` × `vmm` combination is not offered (no script, `pupa-host run` refuses it), or
/// `None` if it is.
pub fn unsupported(tee: TeeKind, vmm: Vmm) -> Option<&'static str> {
    match (tee, vmm) {
        (TeeKind::Tdx, Vmm::CloudHypervisor) => Some(CLOUD_HYPERVISOR_TDX_UNSUPPORTED),
        _ => None,
    }
}

/// Build the command line for a profile (one that [`unsupported_launch`] accepts: for
/// cloud-hypervisor the Linux payload is not on the command line, see
/// [`CLOUD_HYPERVISOR_LINUX_PAYLOAD_UNSUPPORTED`]).
pub fn command(cfg: &LaunchConfig) -> Launch {
    match cfg.vmm {
        Vmm::Qemu => qemu(cfg),
        Vmm::CloudHypervisor => cloud_hypervisor(cfg),
    }
}

fn qemu(cfg: &LaunchConfig) -> Launch {
    let mut a = qemu_machine(cfg);
    a.push("-smp".into());
    a.push(cfg.vcpus.to_string());
    a.push("-bios".into());
    a.push(cfg.image.display().to_string());
    for s in [
        "-nographic",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        "stdio",
        "-monitor",
        "none",
    ] {
        a.push(s.into());
    }
    a.extend(qemu_network(&cfg.network));
    if cfg.debug_exit {
        a.push("-device".into());
        a.push("isa-debug-exit,iobase=0xf4,iosize=0x04".into());
    }
    for (name, value) in &cfg.fw_cfg {
        a.push("-fw_cfg".into());
        a.push(format!("name={name},string={value}"));
    }
    if let Some(p) = &cfg.payload {
        a.push("-kernel".into());
        a.push(p.kernel.display().to_string());
        a.push("-initrd".into());
        a.push(p.initrd.display().to_string());
        a.push("-append".into());
        a.push(p.append.clone());
    }
    Launch {
        program: "qemu-system-x86_64".into(),
        args: a,
        executed_here: cfg.tee == TeeKind::Dev,
    }
}

/// QEMU's machine, accelerator, CPU and memory arguments for `cfg`'s TEE.
fn qemu_machine(cfg: &LaunchConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &str| a.push(s.to_string());
    let mem = format!("{}M", cfg.memory_mib);
    match cfg.tee {
        TeeKind::Dev => {
            push("-machine");
            push("q35");
            push("-accel");
            // TCG: one host thread per vCPU (multi-threaded TCG), so that the guest's vCPUs
            // run in parallel as they would under KVM.
            push(if cfg.accel == Accel::Kvm {
                "kvm"
            } else {
                "tcg,thread=multi"
            });
            push("-cpu");
            // TCG: `max` has RDRAND and AVX2/AVX-512; the vendor makes guests trust RDRAND.
            push(if cfg.accel == Accel::Kvm {
                "host"
            } else {
                "max,vendor=GenuineIntel"
            });
            push("-m");
            push(&mem);
        }
        TeeKind::Snp => {
            // QEMU >= 9.1 with a host kernel that has SNP support (upstream KVM 6.11+).
            push("-machine");
            push("q35,confidential-guest-support=sev0,memory-backend=ram0");
            push("-accel");
            push("kvm");
            push("-cpu");
            push("EPYC-v4");
            push("-object");
            a.push(format!(
                "memory-backend-memfd,id=ram0,size={mem},share=true,prealloc=false"
            ));
            a.push("-object".into());
            // kernel-hashes=on (QEMU >= 9.1 on sev-snp-guest): QEMU writes the SHA-256 of the
            // kernel, initrd and command line into the firmware's SEV hash table page, which
            // the launch digest covers.
            let hashes = if cfg.payload.is_some() {
                ",kernel-hashes=on"
            } else {
                ""
            };
            a.push(format!("sev-snp-guest,id=sev0,cbitpos={SNP_CBITPOS},reduced-phys-bits={SNP_REDUCED_PHYS_BITS}{hashes}"));
            a.push("-m".into());
            a.push(mem.clone());
        }
        TeeKind::Tdx => {
            // QEMU >= 10.1 with a host kernel that has TDX support (upstream KVM 6.16+); the
            // quote service (QGS) listens on vsock port 4050 of the host.
            push("-machine");
            push("q35,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram0");
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host");
            push("-object");
            a.push(format!("memory-backend-memfd,id=ram0,size={mem}"));
            a.push("-object".into());
            a.push(r#"{"qom-type":"tdx-guest","id":"tdx0","quote-generation-socket":{"type":"vsock","cid":"2","port":"4050"}}"#.into());
            a.push("-m".into());
            a.push(mem.clone());
        }
    }
    a
}

/// QEMU's network arguments.
fn qemu_network(network: &Network) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    match network {
        Network::None => {
            a.push("-nic".into());
            a.push("none".into());
        }
        Network::UserForward {
            host_port,
            guest_port,
        } => {
            a.push("-netdev".into());
            a.push(format!(
                "user,id=net0,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"
            ));
            a.push("-device".into());
            a.push("virtio-net-pci,netdev=net0,disable-legacy=on,romfile=".into());
        }
        Network::Tap { ifname } => {
            a.push("-netdev".into());
            a.push(format!(
                "tap,id=net0,ifname={ifname},script=no,downscript=no"
            ));
            a.push("-device".into());
            a.push("virtio-net-pci,netdev=net0,disable-legacy=on,romfile=".into());
        }
    }
    a
}

fn cloud_hypervisor(cfg: &LaunchConfig) -> Launch {
    let mut a = vec![
        "--firmware".to_string(),
        cfg.image.display().to_string(),
        "--cpus".into(),
        format!("boot={}", cfg.vcpus),
        "--memory".into(),
        format!("size={}M", cfg.memory_mib),
        "--serial".into(),
        "tty".into(),
        "--console".into(),
        "off".into(),
    ];
    match cfg.tee {
        TeeKind::Dev => {}
        TeeKind::Tdx => {
            a.push("--platform".into());
            a.push("tdx=on".into());
        }
        TeeKind::Snp => {
            // cloud-hypervisor supports SEV-SNP on the MSHV hypervisor only.
            a.push("--platform".into());
            a.push("sev_snp=on".into());
        }
    }
    match &cfg.network {
        Network::None => {}
        Network::Tap { ifname } => {
            a.push("--net".into());
            a.push(format!("tap={ifname}"));
        }
        Network::UserForward { .. } => {
            // cloud-hypervisor has no user-mode networking: use a TAP device.
            a.push("--net".into());
            a.push("tap=pupa0".into());
        }
    }
    Launch {
        program: "cloud-hypervisor".into(),
        args: a,
        executed_here: false,
    }
}

/// Whether KVM actually runs this image here: `/dev/kvm` opens and a KVM boot of `image`
/// reaches `pupa: ready` within `timeout` (nested setups can fail at the first SSE
/// instruction, which only a real boot shows).
pub fn kvm_works(image: &Path, timeout: Duration) -> bool {
    kvm_works_or_stop(image, timeout, None)
}

/// [`kvm_works`] that gives up (false) as soon as `stop` is set.
pub fn kvm_works_or_stop(
    image: &Path,
    timeout: Duration,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image,
        memory_mib: 128,
        vcpus: 1,
        accel: Accel::Kvm,
        network: Network::None,
        debug_exit: true,
        fw_cfg: vec![],
        payload: None,
    };
    let Ok(mut guest) = crate::vm::Guest::start_quiet(&cfg) else {
        return false;
    };
    guest
        .wait_for_or_stop("pupa: ready", timeout, stop, |l| l == "pupa: ready", |_| {})
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tee: TeeKind, vmm: Vmm) -> LaunchConfig<'static> {
        LaunchConfig {
            tee,
            vmm,
            image: Path::new("pupa.fd"),
            memory_mib: 256,
            vcpus: 2,
            accel: Accel::Tcg,
            network: Network::UserForward {
                host_port: 7000,
                guest_port: 7000,
            },
            debug_exit: false,
            fw_cfg: vec![],
            payload: None,
        }
    }

    fn linux(tee: TeeKind, vmm: Vmm) -> LaunchConfig<'static> {
        LaunchConfig {
            payload: Some(LinuxPayload {
                kernel: "vmlinuz".into(),
                initrd: "initramfs.cpio".into(),
                append: "console=ttyS0 pupa.ip=10.0.2.15/24 pupa.tee=snp".into(),
            }),
            memory_mib: 1024,
            ..cfg(tee, vmm)
        }
    }

    /// The value after `flag` in `l`'s arguments.
    fn after<'l>(l: &'l Launch, flag: &str) -> Option<&'l str> {
        let i = l.args.iter().position(|a| a == flag)?;
        l.args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn the_linux_payload_goes_to_the_firmware_over_fw_cfg() {
        for tee in [TeeKind::Dev, TeeKind::Snp, TeeKind::Tdx] {
            let l = command(&linux(tee, Vmm::Qemu));
            assert_eq!(
                after(&l, "-bios"),
                Some("pupa.fd"),
                "{tee}: still firmware boot"
            );
            assert_eq!(after(&l, "-kernel"), Some("vmlinuz"), "{tee}");
            assert_eq!(after(&l, "-initrd"), Some("initramfs.cpio"), "{tee}");
            assert_eq!(
                after(&l, "-append"),
                Some("console=ttyS0 pupa.ip=10.0.2.15/24 pupa.tee=snp"),
                "{tee}: the command line is one argument"
            );
            assert!(l.args.iter().any(|a| a.contains("1024M")), "{tee}");
        }
        // Without a payload: none of the three.
        let plain = command(&cfg(TeeKind::Dev, Vmm::Qemu));
        for f in ["-kernel", "-initrd", "-append"] {
            assert!(!plain.args.iter().any(|a| a == f), "{f}");
        }
    }

    #[test]
    fn snp_measures_the_payload_with_kernel_hashes_and_tdx_adds_nothing() {
        let snp = command(&linux(TeeKind::Snp, Vmm::Qemu));
        let obj = snp
            .args
            .iter()
            .find(|a| a.starts_with("sev-snp-guest,"))
            .expect("the sev-snp-guest object");
        assert!(obj.ends_with(",kernel-hashes=on"), "{obj}");
        let snp_unikernel = command(&cfg(TeeKind::Snp, Vmm::Qemu));
        assert!(!snp_unikernel.args.join(" ").contains("kernel-hashes"));
        let tdx = command(&linux(TeeKind::Tdx, Vmm::Qemu));
        let tdx_unikernel = command(&cfg(TeeKind::Tdx, Vmm::Qemu));
        assert!(!tdx.args.join(" ").contains("kernel-hashes"));
        // TDX: exactly the unikernel's arguments (memory aside) plus the payload's six.
        let strip = |l: &Launch| -> Vec<String> {
            l.args
                .iter()
                .filter(|a| !a.contains("size=") && !a.ends_with('M'))
                .cloned()
                .collect()
        };
        let (with, without) = (strip(&tdx), strip(&tdx_unikernel));
        assert_eq!(with.len(), without.len() + 6);
        assert_eq!(with[..without.len()], without[..]);
        assert_eq!(unsupported_launch(&linux(TeeKind::Tdx, Vmm::Qemu)), None);
        assert_eq!(unsupported_launch(&linux(TeeKind::Snp, Vmm::Qemu)), None);
    }

    #[test]
    fn cloud_hypervisor_refuses_the_linux_payload() {
        for tee in [TeeKind::Dev, TeeKind::Snp] {
            let why = unsupported_launch(&linux(tee, Vmm::CloudHypervisor))
                .expect("refused with a reason");
            assert!(
                why.contains("fw_cfg") && why.contains("--vmm qemu"),
                "{why}"
            );
            assert!(!why.contains('\n'), "one line: {why}");
            // The unikernel is still offered.
            assert_eq!(unsupported_launch(&cfg(tee, Vmm::CloudHypervisor)), None);
        }
        assert_eq!(unsupported_payload(Vmm::Qemu), None);
    }

    #[test]
    fn plain_is_firmware_boot_with_forward() {
        let l = command(&cfg(TeeKind::Dev, Vmm::Qemu));
        let s = l.args.join(" ");
        assert!(s.contains("-bios pupa.fd"));
        assert!(s.contains("hostfwd=tcp:127.0.0.1:7000-:7000"));
        assert!(s.contains("-accel tcg,thread=multi"));
        assert!(l.executed_here);
    }

    #[test]
    fn tee_profiles_name_their_objects_and_are_marked_unexecuted() {
        let snp = command(&cfg(TeeKind::Snp, Vmm::Qemu));
        assert!(snp
            .args
            .iter()
            .any(|a| a.starts_with("sev-snp-guest,id=sev0,cbitpos=51")));
        assert!(!snp.executed_here);
        let tdx = command(&cfg(TeeKind::Tdx, Vmm::Qemu));
        assert!(tdx
            .args
            .iter()
            .any(|a| a.contains("\"qom-type\":\"tdx-guest\"")));
        assert!(tdx.args.iter().any(|a| a.contains("kernel-irqchip=split")));
        let ch = command(&cfg(TeeKind::Tdx, Vmm::CloudHypervisor));
        assert_eq!(
            &ch.args[..2],
            &["--firmware".to_string(), "pupa.fd".to_string()]
        );
        assert!(ch.args.contains(&"tdx=on".to_string()));
    }
}

/// The launch scripts kept in `qemu/` (file name, contents), generated from [`command`] so that
/// they cannot drift from what `pupa-host run` does. A test checks the committed copies.
///
/// The `*-linux.sh` variants boot the Linux payload through the firmware (`pupa-host run
/// --payload linux`): their second argument is the payload directory `pupa-image build
/// --payload linux` writes (`vmlinuz`, `initramfs.cpio`, `cmdline`); `KERNEL`, `INITRD` and
/// `APPEND` in the environment override its files.
pub fn scripts() -> Vec<(String, String)> {
    let image = Path::new("$IMAGE");
    let base = |tee, vmm| LaunchConfig {
        tee,
        vmm,
        image,
        memory_mib: 256,
        vcpus: 1,
        accel: Accel::Kvm,
        network: Network::UserForward {
            host_port: 7000,
            guest_port: 7000,
        },
        debug_exit: false,
        fw_cfg: vec![],
        payload: None,
    };
    let linux = |tee, accel| LaunchConfig {
        accel,
        memory_mib: LINUX_DEFAULT_MEMORY_MIB,
        payload: Some(LinuxPayload {
            kernel: "$KERNEL".into(),
            initrd: "$INITRD".into(),
            append: "$APPEND".into(),
        }),
        ..base(tee, Vmm::Qemu)
    };
    let mut plain_tcg = base(TeeKind::Dev, Vmm::Qemu);
    plain_tcg.accel = Accel::Tcg;
    let mut ch = base(TeeKind::Dev, Vmm::CloudHypervisor);
    ch.network = Network::Tap {
        ifname: "pupa0".into(),
    };
    // No cloud-hypervisor TDX script: see [`unsupported`]; no cloud-hypervisor Linux script:
    // see [`unsupported_payload`].
    let profiles = [
        ("qemu-plain-kvm.sh", base(TeeKind::Dev, Vmm::Qemu), "Plain VM under KVM (development). Executed on the development machine only where KVM works."),
        ("qemu-plain-tcg.sh", plain_tcg, "Plain VM under TCG (development; no KVM needed). Executed by the tests on the development machine."),
        ("qemu-snp.sh", base(TeeKind::Snp, Vmm::Qemu), "AMD SEV-SNP guest. NOT EXECUTED on the development machines: needs an SNP host (EPYC Milan or later, SNP-enabled firmware and kernel, QEMU >= 9.1)."),
        ("qemu-tdx.sh", base(TeeKind::Tdx, Vmm::Qemu), "Intel TDX guest. NOT EXECUTED on the development machines: needs a TDX host (TDX module, Linux >= 6.16 KVM with TDX, QEMU >= 10.1, a QGS for quotes)."),
        ("cloud-hypervisor.sh", ch, "Plain VM under cloud-hypervisor with a TAP device. NOT EXECUTED on the development machines (cloud-hypervisor is not installed there)."),
        ("qemu-plain-kvm-linux.sh", linux(TeeKind::Dev, Accel::Kvm), "Plain VM under KVM booting the Linux payload (pupa-worker as /init) through the firmware (development). Executed on the development machine only where KVM works."),
        ("qemu-plain-tcg-linux.sh", linux(TeeKind::Dev, Accel::Tcg), "Plain VM under TCG booting the Linux payload through the firmware (development; no KVM needed). The tests run the same command line through `pupa-host run --payload linux`."),
        ("qemu-snp-linux.sh", linux(TeeKind::Snp, Accel::Kvm), "AMD SEV-SNP guest booting the Linux payload; kernel-hashes=on puts the kernel, initrd and command line into the launch digest (APPEND must say pupa.tee=snp). NOT EXECUTED on the development machines: needs an SNP host (QEMU >= 9.1)."),
        ("qemu-tdx-linux.sh", linux(TeeKind::Tdx, Accel::Kvm), "Intel TDX guest booting the Linux payload: no QEMU property, the firmware measures the payload into the RTMRs (kernel RTMR[1], initrd and command line RTMR[2]; APPEND must say pupa.tee=tdx). NOT EXECUTED on the development machines: needs a TDX host (QEMU >= 10.1)."),
    ];
    profiles
        .into_iter()
        .map(|(name, cfg, what)| {
            let l = command(&cfg);
            let mut body = l.to_string().replace("'$IMAGE'", "\"$IMAGE\"").replace(" $IMAGE", " \"$IMAGE\"");
            let (usage, payload) = if cfg.payload.is_some() {
                for v in ["KERNEL", "INITRD", "APPEND"] {
                    body = body.replace(&format!(" ${v}"), &format!(" \"${v}\""));
                }
                (
                    format!("{name} [IMAGE [PAYLOAD_DIR]]   (defaults target/pupa/pupa.fd, target/pupa/linux;\n#   KERNEL, INITRD, APPEND override PAYLOAD_DIR's vmlinuz, initramfs.cpio, cmdline)"),
                    "PAYLOAD=\"${2:-target/pupa/linux}\"\nKERNEL=\"${KERNEL:-$PAYLOAD/vmlinuz}\"\nINITRD=\"${INITRD:-$PAYLOAD/initramfs.cpio}\"\nAPPEND=\"${APPEND:-$(cat \"$PAYLOAD/cmdline\")}\"\n",
                )
            } else {
                (format!("{name} [IMAGE]   (default target/pupa/pupa.fd)"), "")
            };
            (
                name.to_string(),
                format!(
                    "#!/bin/sh\n# {what}\n# Generated by `pupa-host profiles --write qemu/` from host-loader/src/profile.rs; do not edit.\n# Usage: {usage}\nset -eu\nIMAGE=\"${{1:-target/pupa/pupa.fd}}\"\n{payload}exec {body}\n"
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod script_tests {
    /// The committed scripts in qemu/ are what the code generates.
    #[test]
    fn committed_scripts_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu");
        for (name, body) in super::scripts() {
            let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| {
                panic!("qemu/{name}: {e}; run `pupa-host profiles --write qemu/`")
            });
            assert_eq!(
                committed, body,
                "qemu/{name} is stale; run `pupa-host profiles --write qemu/`"
            );
        }
    }

    /// T8: cloud-hypervisor TDX runs on no upstream TDX host: no script is generated or kept
    /// for it, and the combination is named unsupported (so `pupa-host run` refuses it).
    #[test]
    fn cloud_hypervisor_tdx_is_not_offered() {
        use super::{unsupported, TeeKind, Vmm};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu");
        assert!(super::scripts()
            .iter()
            .all(|(name, body)| name != "cloud-hypervisor-tdx.sh" && !body.contains("tdx=on")));
        assert!(!dir.join("cloud-hypervisor-tdx.sh").exists());
        assert!(unsupported(TeeKind::Tdx, Vmm::CloudHypervisor)
            .is_some_and(|why| why.contains("out-of-tree KVM TDX interface")));
        for tee in [TeeKind::Dev, TeeKind::Snp, TeeKind::Tdx] {
            assert_eq!(unsupported(tee, Vmm::Qemu), None);
        }
    }
}
