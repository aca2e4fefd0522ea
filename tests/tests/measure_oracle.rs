//! pupa's own image against `sev-snp-measure` (PyPI): the SNP launch digest for 26 launch
//! configurations, 16 more with measured direct boot (kernel hashes), and every entry of the
//! manifest, recomputed.
//!
//! Installs sev-snp-measure 0.0.13 in a venv under the cargo target dir. If that fails the
//! test FAILS, unless `PUPA_OFFLINE=1` (then the oracle part is skipped with a message).

use std::path::{Path, PathBuf};
use std::process::Command;

use pupa_measurements::snp::{self, KernelHashes, SnpConfig, VmmType};
use pupa_measurements::{hexfmt, manifest, Firmware};
use pupa_tests::image;

const SSM_VERSION: &str = "0.0.13";

fn sev_snp_measure() -> Result<PathBuf, String> {
    let venv =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sev-snp-measure-{SSM_VERSION}"));
    let bin = venv.join("bin/sev-snp-measure");
    // Tests (and test binaries) run in parallel: one installs, the others wait on the lock.
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).map_err(|e| e.to_string())?;
    let lock = std::fs::File::create(venv.with_extension("lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", venv.display()))?;
    if bin.exists() {
        return Ok(bin);
    }
    let _ = std::fs::remove_dir_all(&venv); // a half-made venv from an interrupted run
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("sev-snp-measure=={SSM_VERSION}"),
    ]))?;
    Ok(bin)
}

/// sev-snp-measure, or `None` (with a message) when it cannot be installed and `PUPA_OFFLINE=1`
/// says that is expected; any other installation failure fails the test.
fn oracle() -> Option<PathBuf> {
    match sev_snp_measure() {
        Ok(p) => Some(p),
        Err(e) if std::env::var("PUPA_OFFLINE").is_ok_and(|v| v == "1") => {
            eprintln!("PUPA_OFFLINE=1: skipping the sev-snp-measure oracle ({e})");
            None
        }
        Err(e) => panic!("cannot install sev-snp-measure (set PUPA_OFFLINE=1 to skip): {e}"),
    }
}

#[test]
fn manifest_measurements_recompute() {
    let img = image();
    let text = std::fs::read_to_string(&img.manifest).unwrap();
    let report = manifest::check(&text, &std::fs::read(&img.image).unwrap()).unwrap();
    println!("{report}");
    assert!(report.all_match());
    // the default profiles: 12 SNP + 2 TDX + image hash and size
    assert_eq!(report.rows.len(), 16, "{report}");
}

#[test]
fn sev_snp_measure_agrees_on_pupa_image() {
    let Some(ssm) = oracle() else { return };
    let path = &image().image;
    let fw = Firmware::parse(&std::fs::read(path).unwrap()).unwrap();
    // (vcpus, sev-snp-measure --vcpu-type or None, vmm, guest features)
    let mut configs: Vec<(u32, Option<&str>, VmmType, u64)> = Vec::new();
    for t in ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"] {
        for n in [1, 2, 4, 8] {
            configs.push((n, Some(t), VmmType::Qemu, 0x1));
        }
    }
    configs.extend([
        (1, Some("EPYC-Turin"), VmmType::Qemu, 0x21),
        (3, Some("EPYC-Turin"), VmmType::Qemu, 0x1),
    ]);
    configs.extend([
        (2, Some("EPYC-Rome"), VmmType::Qemu, 0x5),
        (16, Some("EPYC"), VmmType::Qemu, 0x21),
    ]);
    for n in [1, 2, 4] {
        configs.extend([
            (n, Some("EPYC-v4"), VmmType::Ec2, 0x1),
            (n, Some("EPYC-v4"), VmmType::Ec2, 0x21),
        ]);
        configs.push((n, None, VmmType::Gce, 0x1));
    }
    assert!(configs.len() >= 24);
    for (vcpus, cpu, vmm, features) in configs {
        let theirs = theirs(&ssm, path, vcpus, cpu, vmm, features, None);
        let cfg = SnpConfig {
            vcpus,
            vcpu_sig: cpu.map(|t| u64::from(t.parse::<snp::CpuType>().unwrap().sig())),
            vmm,
            guest_features: features,
            kernel_hashes: None,
            ovmf_hash: None,
        };
        let ours = hexfmt::encode(&snp::launch_digest(&fw, &cfg).unwrap());
        assert_eq!(ours, theirs, "{vcpus} vCPUs {cpu:?} {vmm} {features:#x}");
    }
}

/// Direct boot: `-kernel/-initrd/-append`.
type Payload<'a> = (&'a Path, Option<&'a Path>, Option<&'a str>);

/// sev-snp-measure's digest (hex) of one launch configuration.
fn theirs(
    ssm: &Path,
    firmware: &Path,
    vcpus: u32,
    cpu: Option<&str>,
    vmm: VmmType,
    features: u64,
    payload: Option<Payload<'_>>,
) -> String {
    let mut cmd = Command::new(ssm);
    cmd.args(["--mode", "snp", "--output-format", "hex", "--ovmf"])
        .arg(firmware);
    cmd.args([
        "--vcpus",
        &vcpus.to_string(),
        "--vmm-type",
        &vmm.to_string(),
        "--guest-features",
        &format!("{features:#x}"),
    ]);
    if let Some(t) = cpu {
        cmd.args(["--vcpu-type", t]);
    }
    if let Some((kernel, initrd, append)) = payload {
        cmd.arg("--kernel").arg(kernel);
        if let Some(i) = initrd {
            cmd.arg("--initrd").arg(i);
        }
        if let Some(a) = append {
            cmd.args(["--append", a]);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Measured direct boot (issue 14): with `kernel-hashes=on` QEMU writes the SHA-256 table of
/// the kernel, initrd and command line into the firmware's SNP_KERNEL_HASHES page, measured
/// as a NORMAL page. pupa-measure's digest must equal sev-snp-measure's `--kernel --initrd
/// --append` for several vCPU types and counts, with and without an initrd and a command line.
/// The blobs are opaque to both tools (hashed as files), so synthetic ones serve; a changed
/// byte in any of them must change the digest.
#[test]
fn sev_snp_measure_agrees_with_kernel_hashes() {
    let Some(ssm) = oracle() else { return };
    let path = &image().image;
    let fw = Firmware::parse(&std::fs::read(path).unwrap()).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-hashes-oracle");
    std::fs::create_dir_all(&dir).unwrap();
    let blob = |name: &str, len: usize, seed: u8| {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        let p = dir.join(name);
        std::fs::write(&p, &bytes).unwrap();
        (p, bytes)
    };
    let (kernel, kernel_bytes) = blob("vmlinuz", 3 << 20, 1);
    let (initrd, initrd_bytes) = blob("initrd", 1 << 20, 2);
    let append = "console=ttyS0 pupa.ip=10.0.2.15/24 pupa.listen=0.0.0.0:7000";
    let mut seen = std::collections::HashSet::new();
    let cases: [(Option<&Path>, Option<&str>); 4] = [
        (Some(&initrd), Some(append)),
        (None, Some(append)),
        (Some(&initrd), None),
        (None, Some("")),
    ];
    for (t, n) in [
        ("EPYC-v4", 1),
        ("EPYC-Milan", 2),
        ("EPYC-Genoa", 4),
        ("EPYC-Turin", 3),
    ] {
        for (rd, cmdline) in cases {
            let theirs = theirs(
                &ssm,
                path,
                n,
                Some(t),
                VmmType::Qemu,
                0x1,
                Some((&kernel, rd, cmdline)),
            );
            let cfg = SnpConfig {
                vcpus: n,
                vcpu_sig: Some(u64::from(t.parse::<snp::CpuType>().unwrap().sig())),
                vmm: VmmType::Qemu,
                guest_features: 0x1,
                kernel_hashes: Some(KernelHashes::new(
                    &kernel_bytes,
                    rd.map(|_| initrd_bytes.as_slice()),
                    cmdline,
                )),
                ovmf_hash: None,
            };
            let ours = hexfmt::encode(&snp::launch_digest(&fw, &cfg).unwrap());
            assert_eq!(
                ours, theirs,
                "{n} vCPUs {t} initrd {rd:?} append {cmdline:?}"
            );
            seen.insert(ours);
        }
    }
    // every configuration measured differently (the payload is in the digest)
    assert_eq!(seen.len(), 16);
    let plain = SnpConfig {
        vcpus: 1,
        vcpu_sig: Some(u64::from("EPYC-v4".parse::<snp::CpuType>().unwrap().sig())),
        vmm: VmmType::Qemu,
        guest_features: 0x1,
        kernel_hashes: None,
        ovmf_hash: None,
    };
    let without = hexfmt::encode(&snp::launch_digest(&fw, &plain).unwrap());
    assert!(!seen.contains(&without), "no kernel measures like a kernel");
}

/// The manifest of `pupa-image build --payload linux --no-gpu`: every SNP digest it lists for
/// the payload (kernel hashes on) equals sev-snp-measure's `--kernel --initrd --append` over
/// the files the build wrote, and the payload's TDX RTMRs equal pupa-measure's from the same
/// files (the CLI, as a verifier would run it).
#[test]
fn the_payload_manifest_agrees_with_sev_snp_measure_and_pupa_measure() {
    let Some(ssm) = oracle() else { return };
    let p = pupa_tests::linux_payload();
    let fw = &image().image;
    let append = std::fs::read_to_string(&p.cmdline).unwrap();
    let list = p.manifest["measurements"]["snp_with_kernel_hashes"]
        .as_array()
        .expect("SNP digests with kernel hashes in the manifest");
    assert!(list.len() >= 12, "{list:?}");
    for m in list {
        let vmm: VmmType = m["vmm_type"].as_str().unwrap().parse().unwrap();
        let vcpus = m["vcpus"].as_u64().unwrap() as u32;
        let theirs = theirs(
            &ssm,
            fw,
            vcpus,
            m["vcpu_type"].as_str(),
            vmm,
            m["guest_features"].as_u64().unwrap(),
            Some((&p.kernel, Some(&p.initrd), Some(&append))),
        );
        assert_eq!(m["digest"].as_str().unwrap(), theirs, "{m}");
    }
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "-q",
            "-p",
            "pupa-measurements",
            "--bin",
            "pupa-measure",
            "--",
        ])
        .arg(fw)
        .args(["--tee", "tdx", "--json", "--kernel"])
        .arg(&p.kernel)
        .arg("--initrd")
        .arg(&p.initrd)
        .args(["--append", &append])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["payload_rtmrs"], p.manifest["measurements"]["tdx"],
        "pupa-measure --tee tdx --kernel/--initrd/--append vs the manifest"
    );
    println!(
        "payload: {} SNP digests with kernel hashes equal sev-snp-measure's; TDX RTMR1/2 equal pupa-measure's",
        list.len()
    );
}
