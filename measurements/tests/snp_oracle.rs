//! Oracle test: our SNP launch digest against `sev-snp-measure` (PyPI) on real firmware.
//!
//! Installs sev-snp-measure 0.0.13 into a venv under the cargo target dir (reused between
//! runs), then runs both tools, as command-line programs, on every firmware for a matrix of
//! 26 configurations (vCPU counts, CPU types and raw signatures, VMM types, guest features,
//! plus direct-boot hashes where the firmware supports them). All digests must be equal.
//!
//! Firmware: `PUPA_ORACLE_FIRMWARE` (':'-separated paths) if set, otherwise the edk2 fixtures
//! in testdata/, Debian's OVMF builds when installed, and a synthetic pupa-like image.
//! If the venv or pip fails the test FAILS, unless `PUPA_OFFLINE=1` (then it is skipped with a
//! message).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const SSM_VERSION: &str = "0.0.13";

fn offline() -> bool {
    std::env::var("PUPA_OFFLINE").is_ok_and(|v| v == "1")
}

/// Path to the installed `sev-snp-measure`, installing it if needed.
fn oracle() -> Result<PathBuf, String> {
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
        if !out.status.success() {
            return Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("sev-snp-measure=={SSM_VERSION}"),
    ]))?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err("pip succeeded but sev-snp-measure is missing".into())
    }
}

fn firmware_list(tmp: &Path) -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("PUPA_ORACLE_FIRMWARE") {
        return list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let mut v: Vec<PathBuf> = ["ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin"]
        .iter()
        .map(|f| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(f)
        })
        .collect();
    for p in ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE.fd"] {
        if Path::new(p).exists() {
            v.push(p.into());
        } else {
            eprintln!("note: {p} not installed, not used as oracle input");
        }
    }
    let synth = tmp.join("pupa_like.fd");
    std::fs::write(&synth, common::pupa_like(256 * 1024).build()).unwrap();
    v.push(synth);
    v
}

/// The configurations: flags shared by both tools (sev-snp-measure's names).
fn matrix(with_kernel: Option<(&Path, &Path)>) -> Vec<Vec<String>> {
    let mut m: Vec<Vec<String>> = Vec::new();
    let mut add = |args: &[&str]| m.push(args.iter().map(|s| s.to_string()).collect());
    for t in ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"] {
        for n in ["1", "2", "4", "8"] {
            add(&["--vcpus", n, "--vcpu-type", t, "--guest-features", "0x1"]);
        }
    }
    add(&[
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Turin",
        "--guest-features",
        "0x21",
    ]);
    add(&[
        "--vcpus",
        "3",
        "--vcpu-type",
        "EPYC-Turin",
        "--guest-features",
        "0x1",
    ]);
    add(&[
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Rome",
        "--guest-features",
        "0x5",
    ]);
    add(&[
        "--vcpus",
        "16",
        "--vcpu-type",
        "EPYC",
        "--guest-features",
        "0x21",
    ]);
    add(&[
        "--vcpus",
        "2",
        "--vcpu-sig",
        "0xA00F11",
        "--guest-features",
        "0x1",
    ]);
    for n in ["1", "2", "4"] {
        for f in ["0x1", "0x21"] {
            add(&[
                "--vcpus",
                n,
                "--vcpu-type",
                "EPYC-v4",
                "--vmm-type",
                "ec2",
                "--guest-features",
                f,
            ]);
        }
    }
    for n in ["1", "2", "4"] {
        add(&["--vcpus", n, "--vmm-type", "gce", "--guest-features", "0x1"]);
    }
    if let Some((k, i)) = with_kernel {
        let (k, i) = (k.to_str().unwrap(), i.to_str().unwrap());
        add(&[
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Milan",
            "--kernel",
            k,
            "--initrd",
            i,
            "--append",
            "console=ttyS0 quiet",
        ]);
        add(&["--vcpus", "1", "--vcpu-type", "EPYC-Genoa", "--kernel", k]);
    }
    m
}

fn stdout_of(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn sev_snp_measure_agrees_on_every_configuration() {
    let ssm = match oracle() {
        Ok(p) => p,
        Err(e) if offline() => {
            eprintln!("PUPA_OFFLINE=1: skipping the sev-snp-measure oracle ({e})");
            return;
        }
        Err(e) => {
            panic!("cannot install sev-snp-measure {SSM_VERSION} (set PUPA_OFFLINE=1 to skip): {e}")
        }
    };
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snp_oracle");
    std::fs::create_dir_all(&tmp).unwrap();
    let (kernel, initrd) = (tmp.join("kernel"), tmp.join("initrd"));
    std::fs::write(&kernel, b"\x7fELF not really a kernel").unwrap();
    std::fs::write(&initrd, vec![0x42u8; 10_000]).unwrap();

    let ours = env!("CARGO_BIN_EXE_pupa-measure");
    let mut compared = 0;
    for fw in firmware_list(&tmp) {
        let parsed = pupa_measurements::Firmware::parse(&std::fs::read(&fw).unwrap()).unwrap();
        let kernel_ok = parsed.sev_sections().is_some_and(|s| {
            s.iter()
                .any(|x| x.kind == pupa_measurements::ovmf::SevSectionType::KernelHashes)
        });
        let configs = matrix(kernel_ok.then_some((kernel.as_path(), initrd.as_path())));
        assert!(configs.len() >= 24);
        // Two workers: the oracle is a Python start-up per configuration.
        let results: Vec<(Vec<String>, String, String)> = std::thread::scope(|s| {
            let chunks: Vec<_> = configs.chunks(configs.len().div_ceil(2)).collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let (fw, ssm) = (&fw, &ssm);
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|args| {
                                let theirs = stdout_of(
                                    Command::new(ssm)
                                        .args(["--mode", "snp", "--output-format", "hex", "--ovmf"])
                                        .arg(fw)
                                        .args(args),
                                )
                                .unwrap_or_else(|e| panic!("sev-snp-measure failed: {e}"));
                                let mine = stdout_of(
                                    Command::new(ours)
                                        .arg(fw)
                                        .args(["--tee", "snp", "--output-format", "hex"])
                                        .args(args),
                                )
                                .unwrap_or_else(|e| panic!("pupa-measure failed: {e}"));
                                (args.clone(), theirs, mine)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        for (args, theirs, mine) in &results {
            assert_eq!(theirs.len(), 96, "oracle output {theirs:?}");
            assert_eq!(mine, theirs, "{} {}", fw.display(), args.join(" "));
        }
        eprintln!("{}: {} configurations equal", fw.display(), results.len());
        compared += results.len();
    }
    eprintln!("sev-snp-measure {SSM_VERSION} and pupa-measure agree on {compared} digests");
}

#[test]
fn dumped_vmsas_are_byte_identical() {
    let ssm = match oracle() {
        Ok(p) => p,
        Err(e) if offline() => {
            eprintln!("PUPA_OFFLINE=1: skipping the sev-snp-measure VMSA comparison ({e})");
            return;
        }
        Err(e) => {
            panic!("cannot install sev-snp-measure {SSM_VERSION} (set PUPA_OFFLINE=1 to skip): {e}")
        }
    };
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snp_oracle_vmsa");
    let fw = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ovmf_AmdSev_suffix.bin");
    for (i, vmm) in ["QEMU", "ec2", "gce"].iter().enumerate() {
        let (theirs, mine) = (
            root.join(format!("{i}/theirs")),
            root.join(format!("{i}/mine")),
        );
        for d in [&theirs, &mine] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).unwrap();
        }
        let args = [
            "--vcpus",
            "3",
            "--vcpu-type",
            "EPYC-Genoa",
            "--vmm-type",
            vmm,
            "--guest-features",
            "0x21",
        ];
        stdout_of(
            Command::new(&ssm)
                .current_dir(&theirs)
                .args(["--mode", "snp", "--dump-vmsa", "--ovmf"])
                .arg(&fw)
                .args(args),
        )
        .unwrap();
        stdout_of(
            Command::new(env!("CARGO_BIN_EXE_pupa-measure"))
                .arg(&fw)
                .args(["--tee", "snp"])
                .args(args)
                .arg("--dump-vmsa")
                .arg(&mine),
        )
        .unwrap();
        for n in 0..3 {
            let f = format!("vmsa{n}.bin");
            let (a, b) = (
                std::fs::read(theirs.join(&f)).unwrap(),
                std::fs::read(mine.join(&f)).unwrap(),
            );
            assert_eq!(a.len(), 4096);
            assert!(a == b, "{vmm} {f} differs");
        }
    }
}
