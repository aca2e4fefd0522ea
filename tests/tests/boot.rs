//! Boot the real image under QEMU and check what it says on the serial console.

use std::time::Duration;

use pupa_measurements::hexfmt::encode as hex;
use pupa_tests::{accel, boot, debug_exit_status, fault_test_image, image};
use sha2::{Digest, Sha384};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn banner_reports_the_image_and_ends_in_ready() {
    let img = image();
    let b = boot(&img.image, accel(), &[], TIMEOUT);
    println!("{}", b.serial);
    let lines: Vec<&str> = b
        .serial
        .lines()
        .filter(|l| l.starts_with("pupa: "))
        .collect();
    assert_eq!(
        lines.first().copied(),
        Some(concat!(
            "pupa: pupa guest ",
            env!("CARGO_PKG_VERSION"),
            " (x86_64, firmware boot)"
        ))
    );
    assert_eq!(
        lines.last().copied(),
        Some("pupa: ready"),
        "banner must end in ready:\n{}",
        b.serial
    );

    // the hash the guest computed over its own ROM = the file's SHA-384 = the manifest's
    let file_hash = hex(&Sha384::digest(std::fs::read(&img.image).unwrap()));
    assert_eq!(file_hash, img.sha384);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&img.manifest).unwrap()).unwrap();
    assert_eq!(manifest["image"]["sha384"], file_hash);
    assert!(
        b.serial.contains(&format!(
            "pupa: image sha384 {file_hash} ({} KiB, read back from ROM)",
            pupa_image::ROM_SIZE / 1024
        )),
        "{}",
        b.serial
    );

    assert!(b
        .serial
        .contains("pupa: tee none (plain VM, insecure dev evidence)"));
    assert!(b.serial.contains("pupa: entry 16-bit reset vector"));
    // QEMU -m 256 describes all 256 MiB as one E820 RAM entry (the legacy hole is the
    // firmware's business)
    assert!(
        b.serial
            .contains("pupa: memory 256 MiB ram, 0 MiB unaccepted (from fw_cfg etc/e820)"),
        "{}",
        b.serial
    );
    assert!(
        b.serial.contains("pupa: entropy rdrand (health-tested)")
            || b.serial.contains("pupa: entropy rdseed (health-tested)")
    );
    let tsc_line = lines
        .iter()
        .find(|l| l.starts_with("pupa: tsc "))
        .expect("tsc line");
    let mhz: f64 = tsc_line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        (100.0..20_000.0).contains(&mhz),
        "implausible TSC frequency {mhz} MHz"
    );
    // a clean exit: ACPI S5 power-off, QEMU status 0
    assert_eq!(b.status, Some(0), "clean power-off expected");
}

#[test]
fn invalid_opcode_is_reported_not_triple_faulted() {
    let b = boot(
        &fault_test_image().image,
        accel(),
        &[("opt/pupa/fault", "ud")],
        TIMEOUT,
    );
    println!("{}", b.serial);
    let line = b
        .serial
        .lines()
        .find(|l| l.starts_with("pupa: EXCEPTION"))
        .expect("exception report");
    assert!(
        line.starts_with("pupa: EXCEPTION vector 6 (#UD invalid opcode) error none rip 0x"),
        "{line}"
    );
    // RIP points into the RAM copy of .text (linked at 1 MiB and up)
    let rip = u64::from_str_radix(
        line.split("rip 0x")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap(),
        16,
    )
    .unwrap();
    assert!((0x100000..0x500000).contains(&rip), "rip {rip:#x}");
    assert_eq!(
        b.status,
        Some(debug_exit_status(pupa_guest_exit::EXCEPTION))
    );
}

#[test]
fn page_fault_reports_address_and_error_code() {
    let b = boot(
        &fault_test_image().image,
        accel(),
        &[("opt/pupa/fault", "pf")],
        TIMEOUT,
    );
    println!("{}", b.serial);
    let line = b
        .serial
        .lines()
        .find(|l| l.starts_with("pupa: EXCEPTION"))
        .expect("exception report");
    // not-present read in ring 0: error code 0 (SDM Vol. 3A §4.7); CR2 = the address read
    assert!(
        line.starts_with("pupa: EXCEPTION vector 14 (#PF page fault) error 0x0 rip 0x"),
        "{line}"
    );
    assert!(line.ends_with("cr2 0x0000004000000000"), "{line}");
    assert_eq!(
        b.status,
        Some(debug_exit_status(pupa_guest_exit::EXCEPTION))
    );
}

/// The #VC/#VE entry stub (guest/src/arch/trap.rs) restores the frame's registers and the
/// interrupted code's SIMD state: exercised with a software `int 20` (a plain VM cannot raise a
/// real #VE/#VC).
#[test]
fn trap_stub_round_trip() {
    let b = boot(
        &fault_test_image().image,
        accel(),
        &[("opt/pupa/fault", "trap")],
        TIMEOUT,
    );
    assert!(
        b.serial.contains("pupa: fault-test: trap stub ok (rax 0xfedcba9876543210 r12 42 xmm7 0x5a5a5a5a0f0f0f0f)"),
        "{}",
        b.serial
    );
    assert!(b.serial.contains("pupa: ready"), "{}", b.serial);
}

#[test]
fn fault_test_image_without_request_boots_normally() {
    let b = boot(&fault_test_image().image, accel(), &[], TIMEOUT);
    assert!(b.serial.contains("pupa: ready"), "{}", b.serial);
    assert_eq!(b.status, Some(0));
}

/// The guest's exit codes (guest/src/lib.rs `exit_code`), restated: the test checks the
/// contract, not the constant.
mod pupa_guest_exit {
    pub const EXCEPTION: u32 = 0x12;
}
