//! QEMU's ACPI tables reach a Linux payload: the firmware runs QEMU's table-loader script,
//! places the ICH9 ACPI PM block first (so QEMU's FADT has it), and hands Linux the RSDP; Linux
//! enables its ACPI interpreter on them. The test build also adds a CCEL table through the
//! same path the TDX hand-over uses (extended RSDT/XSDT, repointed RSDP), and Linux must find
//! it. No initrd: the kernel parses ACPI long before it looks for a root file system, then
//! panics and (panic=-1, -no-reboot) QEMU exits.

use std::process::Command;
use std::time::Duration;

use pupa_host::profile::{self, LaunchConfig, Network, TeeKind, Vmm};
use pupa_tests::{accel, fault_test_image, linux_lock, pinned_linux_package};

#[test]
fn linux_gets_qemus_acpi_tables_and_an_added_ccel() {
    let kernel = pinned_linux_package().root.join(linux_lock().vmlinuz);
    let fw = &fault_test_image().image;
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image: fw,
        memory_mib: 512,
        vcpus: 1,
        accel: accel(),
        network: Network::None,
        debug_exit: true,
        fw_cfg: vec![("opt/pupa/linux-ccel".into(), "1".into())],
        payload: None,
    };
    let launch = profile::command(&cfg);
    let timeout = Duration::from_secs(300);
    let out = Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .arg(&launch.program)
        .args(&launch.args)
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let has = |s: &str| serial.lines().any(|l| l.contains(s));
    let show = || {
        serial
            .lines()
            .filter(|l| l.contains("ACPI"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(has("pupa: linux ACPI tables: "), "{serial}");
    assert!(has("pupa: fault-test: CCEL table added"), "{serial}");
    // Linux's table scan lists the added table with pupa's OEM id, and reserves it
    assert!(
        serial
            .lines()
            .any(|l| l.contains("ACPI: CCEL 0x") && l.contains("PUPA")),
        "{}",
        show()
    );
    assert!(has("ACPI: Reserving CCEL table memory"), "{}", show());
    // QEMU's own tables are all still there after the root tables were replaced
    for t in ["ACPI: FACP 0x", "ACPI: DSDT 0x", "ACPI: APIC 0x"] {
        assert!(has(t), "{t} missing:\n{}", show());
    }
    // the PM block the firmware placed, and no checksum complaint
    assert!(has("ACPI: PM-Timer IO Port: 0x608"), "{}", show());
    assert!(has("ACPI: Interpreter enabled"), "{}", show());
    println!("{}", show());
    assert!(
        !serial.contains("Incorrect checksum") && !serial.contains("A valid RSDP was not found"),
        "{}",
        show()
    );
}
