//! The `pupa-measure` command line: outputs, files, exit codes, `check`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pupa_measurements::{hexfmt, manifest, Firmware};
use sha2::{Digest, Sha384};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pupa-measure"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out, so, se)
}

#[test]
fn snp_hex_table_json_and_vmsa_dump() {
    let fw = fixture("ovmf_AmdSev_suffix.bin");
    let want = "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d";
    let base = ["--tee", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4"];
    let (o, out, _) = run(bin().arg(&fw).args(base).args(["--output-format", "hex"]));
    assert!(o.status.success());
    assert_eq!(out.trim(), want);
    let (_, table, _) = run(bin().arg(&fw).args(base));
    assert!(
        table.contains("launch digest") && table.contains(want),
        "{table}"
    );
    let (_, json, _) = run(bin().arg(&fw).args(base).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["launch_digest"], want);
    assert_eq!(v["vcpu_sig"], 0x800f12);
    // --vcpu-sig and --vcpu-family/model/stepping give the same digest as the type.
    let (_, by_sig, _) = run(bin().arg(&fw).args([
        "--tee",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-sig",
        "0x800F12",
        "--output-format",
        "hex",
    ]));
    assert_eq!(by_sig.trim(), want);
    let fms = [
        "--vcpu-family",
        "23",
        "--vcpu-model",
        "1",
        "--vcpu-stepping",
        "2",
        "--output-format",
        "hex",
    ];
    let (_, by_fms, _) = run(bin()
        .arg(&fw)
        .args(["--tee", "snp", "--vcpus", "1"])
        .args(fms));
    assert_eq!(by_fms.trim(), want);

    let dir = tmpdir("vmsa");
    let (o, _, _) = run(bin()
        .arg(&fw)
        .args([
            "--tee",
            "snp",
            "--vcpus",
            "3",
            "--vcpu-type",
            "Milan",
            "--dump-vmsa",
        ])
        .arg(&dir));
    assert!(o.status.success());
    for i in 0..3 {
        assert_eq!(
            std::fs::read(dir.join(format!("vmsa{i}.bin")))
                .unwrap()
                .len(),
            4096
        );
    }
    assert!(!dir.join("vmsa3.bin").exists());
}

#[test]
fn tdx_and_event_log() {
    let dir = tmpdir("tdx");
    let img = dir.join("pupa_like.fd");
    std::fs::write(&img, common::pupa_like(64 * 1024).build()).unwrap();
    let fw = Firmware::parse(&std::fs::read(&img).unwrap()).unwrap();
    for order in ["single", "twopass"] {
        let want =
            hexfmt::encode(&pupa_measurements::tdx::mrtd(&fw, order.parse().unwrap()).unwrap());
        let (o, out, _) =
            run(bin()
                .arg(&img)
                .args(["--tee", "tdx", "--order", order, "--output-format", "hex"]));
        assert!(o.status.success());
        assert_eq!(out.trim(), want);
    }
    let (o, json, _) = run(bin()
        .arg(&img)
        .args(["--tee", "tdx", "--json", "--event-log"])
        .arg(fixture("ccel/dstack_ccel.bin")));
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["rtmrs"].as_array().unwrap().len(), 4);
    assert_eq!(v["order"], "single");
}

#[test]
fn errors_are_specific_and_exit_nonzero() {
    let dir = tmpdir("errors");
    let bad = dir.join("bad.fd");
    std::fs::write(&bad, vec![0u8; 8192]).unwrap();
    let (o, _, err) =
        run(bin()
            .arg(&bad)
            .args(["--tee", "snp", "--vcpus", "1", "--vcpu-type", "EPYC"]));
    assert!(!o.status.success());
    assert!(err.contains("no OVMF table footer"), "{err}");
    let fw = fixture("ovmf_OvmfX64_suffix.bin");
    let (o, _, err) = run(bin().arg(&fw).args(["--tee", "snp", "--vcpus", "1"]));
    assert!(!o.status.success());
    assert!(err.contains("--vcpu-type or --vcpu-sig"), "{err}");
    let (o, _, err) =
        run(bin()
            .arg(&fw)
            .args(["--tee", "snp", "--vcpus", "1", "--vcpu-type", "Pentium"]));
    assert!(!o.status.success());
    assert!(err.contains("unknown vCPU type"), "{err}");
    let (o, _, err) = run(bin().arg(dir.join("missing.fd")).args(["--tee", "tdx"]));
    assert!(!o.status.success());
    assert!(err.contains("cannot read firmware"), "{err}");
    let (o, _, err) = run(bin().arg(&fw).args(["--tee", "tdx", "--order", "sideways"]));
    assert!(!o.status.success());
    assert!(err.contains("unknown MRTD order"), "{err}");
}

#[test]
fn check_reports_match_and_difference() {
    let dir = tmpdir("check");
    let img_path = dir.join("pupa.fd");
    let img = common::pupa_like(128 * 1024).build();
    std::fs::write(&img_path, &img).unwrap();
    let fw = Firmware::parse(&img).unwrap();
    let meas = manifest::expected_measurements(&fw).unwrap();
    assert_eq!(meas.snp.len(), 12);
    assert_eq!(meas.tdx.len(), 2);
    let m = serde_json::json!({
        "image": {"sha384": hexfmt::encode(&Sha384::digest(&img)), "size": img.len()},
        "measurements": meas,
    });
    let mpath = dir.join("manifest.json");
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let (o, out, err) = run(bin().arg("check").arg(&mpath).arg(&img_path));
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("all 16 values match"), "{out}");

    // Change one expected digest: check must name it and fail.
    let mut m2 = m.clone();
    m2["measurements"]["snp"][5]["digest"] = serde_json::json!("00".repeat(48));
    std::fs::write(&mpath, serde_json::to_string(&m2).unwrap()).unwrap();
    let (o, out, _) = run(bin().arg("check").arg(&mpath).arg(&img_path).arg("--json"));
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["all_match"], false);
    let bad: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["matches"] == false)
        .collect();
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]["what"]
            .as_str()
            .unwrap()
            .contains("SNP 2 vCPU EPYC-Milan"),
        "{}",
        bad[0]
    );

    // A different image: the hash and the measurements differ.
    let mut other = img.clone();
    other[0] ^= 0xff;
    std::fs::write(&img_path, &other).unwrap();
    std::fs::write(&mpath, serde_json::to_string(&m).unwrap()).unwrap();
    let (o, out, _) = run(bin().arg("check").arg(&mpath).arg(&img_path));
    assert!(!o.status.success());
    assert!(
        out.contains("DIFFERS") && out.contains("image sha384"),
        "{out}"
    );

    // A manifest without the fields.
    std::fs::write(&mpath, "{\"image\": {}}").unwrap();
    let (o, _, err) = run(bin().arg("check").arg(&mpath).arg(&img_path));
    assert!(!o.status.success());
    assert!(err.contains("missing field image.sha384"), "{err}");
}
