//! The TDX measurement of a Linux payload, two ways: what the firmware extends into RTMR[1]
//! and RTMR[2] (`pupa_guest::linux`, run here on the host over the setup and kernel items QEMU
//! would serve, with its loader patches) and what `pupa-measure` recomputes from the files
//! (`pupa_measurements::linux`, written separately from the documented format). They must
//! agree on the pinned kernel, and differ when any byte that reaches Linux differs.

use pupa_guest::linux::tdx_measure::{measure_payload, PayloadSha384};
use pupa_guest::linux::{loader_neutral_setup, PartDigests};
use pupa_guest::tdx::rtmr::EventLog;
use pupa_measurements::linux::tdx_payload_rtmrs;
use pupa_tests::{linux_lock, pinned_linux_package};

/// What the firmware measures, given the setup item as QEMU serves it under TDX.
fn firmware_rtmrs(
    setup: &[u8],
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> ([u8; 48], [u8; 48]) {
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    let p = PayloadSha384 {
        kernel: PartDigests::of(&[&loader_neutral_setup(setup), kernel]).sha384,
        initrd: PartDigests::of(&[initrd]).sha384,
        cmdline: PartDigests::of(&[&c]).sha384,
    };
    let mut log = EventLog::new();
    measure_payload(&mut log, &p, &mut |_, _| 0).unwrap();
    (log.expected_rtmr(1).unwrap(), log.expected_rtmr(2).unwrap())
}

/// QEMU's `x86_load_linux` patches (TDX, plain VMs): loader type, heap, command line and
/// initrd addresses.
fn qemu_patched(setup: &[u8]) -> Vec<u8> {
    let mut s = setup.to_vec();
    s[0x210] = 0xB0;
    s[0x211] |= 0x80;
    s[0x218..0x21C].copy_from_slice(&0x3f00_0000u32.to_le_bytes());
    s[0x21C..0x220].copy_from_slice(&0x0012_3456u32.to_le_bytes());
    s[0x224..0x226].copy_from_slice(&0xfe00u16.to_le_bytes());
    s[0x228..0x22C].copy_from_slice(&0x0002_0000u32.to_le_bytes());
    s
}

#[test]
fn firmware_and_pupa_measure_agree_on_the_payload_rtmrs() {
    let bz = std::fs::read(pinned_linux_package().root.join(linux_lock().vmlinuz)).unwrap();
    let sects = match bz[0x1F1] {
        0 => 4,
        n => n as usize,
    };
    let (setup, kernel) = bz.split_at((sects + 1) * 512);
    let initrd = b"an initramfs".to_vec();
    let cmdline = "console=ttyS0 pupa.ip=10.0.2.15/24 pupa.tee=tdx";

    let ours = tdx_payload_rtmrs(&bz, Some(&initrd), Some(cmdline));
    let fw = firmware_rtmrs(&qemu_patched(setup), kernel, &initrd, cmdline);
    assert_eq!(
        (ours.rtmr1, ours.rtmr2),
        fw,
        "pupa-measure and the firmware"
    );
    // the unpatched header (as under SEV) measures the same
    assert_eq!(firmware_rtmrs(setup, kernel, &initrd, cmdline), fw);

    // any other byte of the kernel, the initrd or the command line changes them
    let mut other = bz.clone();
    other[0x260] ^= 1; // init_size
    assert_ne!(
        tdx_payload_rtmrs(&other, Some(&initrd), Some(cmdline)).rtmr1,
        ours.rtmr1
    );
    let last = other.len() - 1;
    other[0x260] ^= 1;
    other[last] ^= 1;
    assert_ne!(
        tdx_payload_rtmrs(&other, Some(&initrd), Some(cmdline)).rtmr1,
        ours.rtmr1
    );
    let r = tdx_payload_rtmrs(&bz, Some(b"another"), Some(cmdline));
    assert_eq!(r.rtmr1, ours.rtmr1);
    assert_ne!(r.rtmr2, ours.rtmr2);
    assert_ne!(
        tdx_payload_rtmrs(&bz, None, Some(cmdline)).rtmr2,
        ours.rtmr2
    );
    assert_ne!(
        tdx_payload_rtmrs(&bz, Some(&initrd), Some("console=ttyS0")).rtmr2,
        ours.rtmr2
    );
    // no initrd and no command line: the empty string's and "\0"'s digests
    let bare = tdx_payload_rtmrs(&bz, None, None);
    assert_eq!(
        (bare.rtmr1, bare.rtmr2),
        firmware_rtmrs(setup, kernel, b"", "")
    );
}
