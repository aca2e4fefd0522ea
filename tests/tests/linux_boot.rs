//! Direct Linux boot: the production image, given the pinned Debian kernel (image/linux.lock)
//! and a tiny initramfs through QEMU's `-kernel/-initrd/-append`, loads the kernel, builds its
//! zero page and enters startup_64; the initramfs's /init (tests/linux/init.c, built here)
//! prints a marker and /proc/cmdline and exits QEMU through isa-debug-exit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pupa_host::profile::{self, Accel, LaunchConfig, Network, TeeKind, Vmm};
use pupa_image::initramfs::{Initramfs, Kind};
use pupa_measurements::hexfmt::encode as hex;
use pupa_tests::{accel, image, linux_lock, pinned_linux_package, workspace};
use sha2::{Digest, Sha256, Sha384};

/// What /init writes to isa-debug-exit: QEMU exits with (0x31 << 1) | 1.
const INIT_EXIT_STATUS: i32 = 99;
const CMDLINE: &str = "console=ttyS0 panic=-1 pupa.test=direct-boot-1";
const TIMEOUT: Duration = Duration::from_secs(600);

fn cache() -> PathBuf {
    let d = workspace().join("target").join("linux-boot");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pinned kernel's bzImage (`pupa_image::deb`: the .deb SHA-256-checked against
/// image/linux.lock, unpacked with dpkg-deb).
fn kernel() -> PathBuf {
    pinned_linux_package().root.join(linux_lock().vmlinuz)
}

/// The initramfs (`pupa_image::initramfs`): /dev/console (so that /init has a console),
/// /proc, and /init compiled from tests/linux/init.c (static, no libc).
fn initramfs() -> PathBuf {
    let dir = cache();
    let init = dir.join("init");
    run(Command::new("gcc")
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-O2",
            "-o",
        ])
        .arg(&init)
        .arg(workspace().join("tests/linux/init.c")));
    let mut a = Initramfs::new();
    a.add("dev/console", 0o600, Kind::CharDev(5, 1)).unwrap();
    a.add("proc", 0o755, Kind::Dir).unwrap();
    a.add("init", 0o755, Kind::File(std::fs::read(&init).unwrap()))
        .unwrap();
    let path = dir.join("initramfs.cpio");
    std::fs::write(&path, a.to_bytes()).unwrap();
    path
}

fn boot(fw: &Path, kernel: &Path, initrd: &Path, accel: Accel) -> (String, Option<i32>, Duration) {
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image: fw,
        memory_mib: 512,
        vcpus: 1,
        accel,
        network: Network::None,
        debug_exit: true,
        fw_cfg: vec![],
        payload: None,
    };
    let launch = profile::command(&cfg);
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .arg(&launch.program)
        .args(&launch.args)
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", CMDLINE])
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (serial, out.status.code(), start.elapsed())
}

#[test]
fn boots_the_pinned_kernel_with_initrd_and_cmdline() {
    let kernel = kernel();
    let initrd = initramfs();
    let img = image();
    let (serial, status, wall) = boot(&img.image, &kernel, &initrd, accel());
    println!("{serial}");
    println!("linux_boot: QEMU exited with {status:?} after {wall:?}");

    // the firmware's banner names the payload: initrd and command line as given (the command
    // line with the NUL QEMU adds, as QEMU's SEV hashes table has it); the kernel item is the
    // bzImage with the setup header QEMU patched, so only its presence is checked here
    let rd = std::fs::read(&initrd).unwrap();
    let cl = [CMDLINE.as_bytes(), b"\0"].concat();
    for (what, bytes) in [("initrd", &rd), ("cmdline", &cl)] {
        for line in [
            format!("pupa: linux {what} sha256 {}", hex(&Sha256::digest(bytes))),
            format!("pupa: linux {what} sha384 {}", hex(&Sha384::digest(bytes))),
        ] {
            assert!(serial.contains(&line), "missing {line:?}");
        }
    }
    assert!(serial.contains("pupa: linux kernel sha384 "));
    assert!(serial.contains(&format!("pupa: linux cmdline \"{CMDLINE}\"")));
    assert!(serial.contains("pupa: linux entering startup_64 at 0x"));
    // Linux ran /init from the initramfs, with our command line
    assert!(
        serial.contains("PUPA_LINUX_INIT_OK"),
        "no marker from /init"
    );
    assert!(
        serial.contains(&format!("pupa-linux-test: cmdline: {CMDLINE}")),
        "/proc/cmdline differs"
    );
    assert!(
        !serial.contains("pupa: ready"),
        "the runtime must not start"
    );
    assert_eq!(status, Some(INIT_EXIT_STATUS), "/init's isa-debug-exit");
}
