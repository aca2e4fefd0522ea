//! Operator mistakes get a specific error at once, before anything boots: the `pupa-host`
//! binary is run with each mistake and must exit non-zero within seconds with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{children, KillOnDrop};

/// A minimal firmware that parses: 64 KiB with an (empty) OVMF GUID table footer.
fn image(dir: &Path) -> PathBuf {
    let n = 64 * 1024;
    let mut b = vec![0u8; n];
    b[n - 0x32..n - 0x30].copy_from_slice(&18u16.to_le_bytes());
    b[n - 0x30..n - 0x20].copy_from_slice(&pupa_measurements::guid::OVMF_TABLE_FOOTER.0);
    let p = dir.join("pupa.fd");
    std::fs::write(&p, b).unwrap();
    p
}

/// Runs `pupa-host run ARGS` (loopback listener, a free forward port unless given); it must
/// exit non-zero within 10 s without starting a VMM. Returns its stderr.
fn run_fails(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pupa-host"));
    cmd.args(["run", "--listen", "127.0.0.1:0"]).args(args);
    if !args.contains(&"--forward-port") {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        cmd.args(["--forward-port", &port.to_string()]);
    }
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let status = loop {
        assert!(
            children(child.0.id(), "qemu").is_empty(),
            "a VMM was started for {args:?}"
        );
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "pupa-host run {args:?} still running after 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{args:?} succeeded: {err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_missing_image_is_named() {
    let e = run_fails(&["--image", "/nonexistent/pupa.fd"]);
    assert!(
        e.contains("--image /nonexistent/pupa.fd: cannot read it: No such file"),
        "{e}"
    );
}

#[test]
fn a_directory_as_image_is_named() {
    let dir = common::temp_dir("img-dir");
    let e = run_fails(&["--image", s(&dir)]);
    assert!(e.contains("is a directory, not a firmware file"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_text_file_as_image_is_not_a_firmware() {
    let e = run_fails(&["--image", "/etc/passwd"]);
    assert!(
        e.contains("--image /etc/passwd: not an OVMF-format firmware"),
        "{e}"
    );
}

#[test]
fn a_random_512k_file_is_refused_at_once() {
    let dir = common::temp_dir("img-random");
    let p = dir.join("random.fd");
    std::fs::write(
        &p,
        (0..512 * 1024)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let e = run_fails(&["--image", s(&p)]);
    assert!(
        e.contains("not an OVMF-format firmware: no OVMF table footer"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_corrupted_footer_is_refused() {
    let dir = common::temp_dir("img-footer");
    let p = image(&dir);
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 0x28] ^= 0xFF; // inside the footer GUID
    std::fs::write(&p, b).unwrap();
    let e = run_fails(&["--image", s(&p)]);
    assert!(e.contains("no OVMF table footer"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_image_that_does_not_match_its_manifest_is_refused() {
    let dir = common::temp_dir("img-manifest");
    let p = image(&dir);
    let m = dir.join("manifest.json");
    let want = "ab".repeat(48);
    std::fs::write(
        &m,
        format!(r#"{{"image":{{"sha384":"{want}","size":65536}}}}"#),
    )
    .unwrap();
    let e = run_fails(&["--image", s(&p), "--manifest", s(&m)]);
    assert!(e.contains("does not match --manifest"), "{e}");
    assert!(e.contains(&format!("the manifest says {want}")), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_snp_launch_of_an_image_without_sev_metadata_is_refused() {
    let dir = common::temp_dir("img-snp");
    let p = image(&dir);
    let e = run_fails(&["--image", s(&p), "--tee", "snp"]);
    assert!(e.contains("has no SEV metadata"), "{e}");
    assert!(e.contains("cannot boot with --tee snp"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--tee` takes the shared TEE kind's names (`none` is `dev`), and nothing else.
#[test]
fn tee_names_are_the_shared_kinds() {
    let dir = common::temp_dir("tee-names");
    let p = image(&dir);
    // both spellings of the plain VM get past the flag (and stop at the bad memory size)
    for plain in ["none", "dev"] {
        let e = run_fails(&["--image", s(&p), "--tee", plain, "--memory-mib", "0"]);
        assert!(e.contains("--memory-mib 0"), "--tee {plain}: {e}");
    }
    let e = run_fails(&["--image", s(&p), "--tee", "sev"]);
    assert!(e.contains("invalid value 'sev'"), "{e}");
    assert!(e.contains("dev, snp, tdx"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_flags_are_refused() {
    let dir = common::temp_dir("flags");
    let p = image(&dir);
    for (flag, value, want) in [
        ("--memory-mib", "0", "--memory-mib 0: the guest needs"),
        ("--memory-mib", "16", "--memory-mib 16: the guest needs"),
        ("--vcpus", "0", "--vcpus 0: want 1..="),
        (
            "--ready-timeout-s",
            "0",
            "--ready-timeout-s 0: must be above 0",
        ),
        (
            "--health-timeout-s",
            "0",
            "--health-timeout-s 0: must be above 0",
        ),
    ] {
        let e = run_fails(&["--image", s(&p), flag, value]);
        assert!(e.contains(want), "{flag} {value}: {e}");
    }
    let e = run_fails(&["--image", s(&p), "--tee", "snp", "--accel", "tcg"]);
    assert!(
        e.contains("--accel tcg: --tee snp runs under KVM only"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A payload directory as `pupa-image build --payload linux` writes it (stand-in files: the
/// checks refuse before anything would read them as a kernel).
fn payload_dir(dir: &Path, cmdline: &str) -> PathBuf {
    let p = dir.join("linux");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("vmlinuz"), b"not really a kernel").unwrap();
    std::fs::write(p.join("initramfs.cpio"), b"070701").unwrap();
    std::fs::write(p.join("cmdline"), format!("{cmdline}\n")).unwrap();
    p
}

const CMDLINE: &str = "console=ttyS0 panic=-1 pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 \
                       pupa.listen=0.0.0.0:7000 pupa.tee=dev";

/// SNP's kernel-hashes=on needs the image's SEV hash table: an image without one is refused.
#[test]
fn an_snp_linux_launch_of_an_image_without_a_sev_hash_table_is_refused() {
    let dir = common::temp_dir("snp-linux");
    let p = image(&dir);
    let pd = payload_dir(&dir, &CMDLINE.replace("pupa.tee=dev", "pupa.tee=snp"));
    let e = run_fails(&[
        "--image",
        s(&p),
        "--tee",
        "snp",
        "--payload",
        "linux",
        "--payload-dir",
        s(&pd),
    ]);
    // The minimal image has no SEV metadata at all: that is named first.
    assert!(e.contains("has no SEV metadata"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--payload linux` mistakes: each named before anything boots.
#[test]
fn linux_payload_mistakes_are_refused() {
    let dir = common::temp_dir("linux-payload");
    let p = image(&dir);
    let pd = payload_dir(&dir, CMDLINE);
    let img = ["--image", s(&p)];
    let linux = ["--image", s(&p), "--payload", "linux"];
    let with = |extra: &[&str]| -> Vec<String> {
        linux
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let kernel = pd.join("vmlinuz");
    let initrd = pd.join("initramfs.cpio");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            img.iter()
                .map(|a| a.to_string())
                .chain(["--payload-dir".into(), s(&pd).into()])
                .collect(),
            "--payload-dir needs --payload linux",
        ),
        (
            with(&[]),
            "--payload linux: needs --kernel (or --payload-dir)",
        ),
        (
            with(&["--kernel", s(&kernel)]),
            "--payload linux: needs --initrd (or --payload-dir)",
        ),
        (
            with(&["--kernel", s(&kernel), "--initrd", s(&initrd)]),
            "--payload linux: needs --append (or --payload-dir)",
        ),
        (
            with(&["--payload-dir", s(&pd), "--kernel", "/nonexistent/vmlinuz"]),
            "--kernel /nonexistent/vmlinuz: cannot read it: No such file",
        ),
        (
            with(&["--payload-dir", s(&pd), "--initrd", s(&dir)]),
            "not a regular file",
        ),
        (
            with(&["--payload-dir", s(&pd), "--tee", "snp"]),
            "pupa.tee=dev, but --tee is snp",
        ),
        (
            with(&[
                "--payload-dir",
                s(&pd),
                "--append",
                "console=ttyS0 pupa.ip=192.168.1.5/24 pupa.tee=dev",
            ]),
            "user networking forwards the guest port to 10.0.2.15",
        ),
        (
            with(&[
                "--payload-dir",
                s(&pd),
                "--append",
                "console=ttyS0 pupa.tee=dev",
            ]),
            "no pupa.ip=",
        ),
        (
            with(&["--payload-dir", s(&pd), "--guest-port", "7007"]),
            "--guest-port is 7007",
        ),
        (
            with(&["--payload-dir", s(&pd), "--memory-mib", "256"]),
            "--memory-mib 256: the Linux payload needs at least 512 MiB",
        ),
        (
            with(&["--payload-dir", s(&pd), "--vmm", "cloud-hypervisor"]),
            "--payload linux: cloud-hypervisor cannot hand a kernel to firmware",
        ),
        (
            vec![
                "--guest-addr".into(),
                "127.0.0.1:7000".into(),
                "--payload".into(),
                "linux".into(),
                "--payload-dir".into(),
                s(&pd).into(),
            ],
            "--payload linux: needs --image",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = run_fails(&args);
        assert!(e.contains(want), "{args:?}: want {want:?}, got {e}");
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// T8: cloud-hypervisor's TDX support runs on no upstream TDX host: refused before boot.
#[test]
fn cloud_hypervisor_tdx_is_refused() {
    let dir = common::temp_dir("ch-tdx");
    let p = image(&dir);
    let e = run_fails(&[
        "--image",
        s(&p),
        "--tee",
        "tdx",
        "--vmm",
        "cloud-hypervisor",
    ]);
    assert!(
        e.contains(
            "--vmm cloud-hypervisor: cloud-hypervisor's TDX support targets the out-of-tree"
        ),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_encrypted_tls_key_is_named_as_such() {
    let dir = common::temp_dir("tls-enc");
    let p = image(&dir);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    let key = dir.join("key.pem");
    // What `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes (body shortened).
    std::fs::write(
        &key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = run_fails(&[
        "--image",
        s(&p),
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
    ]);
    assert!(
        e.contains("encrypted private keys are not supported"),
        "{e}"
    );
    assert!(!e.contains("base64"), "{e}");
    // Cert and key swapped.
    let e = run_fails(&[
        "--image",
        s(&p),
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&cert),
    ]);
    assert!(e.contains("holds a certificate, not a key"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_forward_port_held_by_another_process_names_it() {
    let dir = common::temp_dir("port");
    let p = image(&dir);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let e = run_fails(&["--image", s(&p), "--forward-port", &port]);
    let me = std::process::id();
    assert!(
        e.contains(&format!("host port {port} is already in use by pid {me} (")),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
