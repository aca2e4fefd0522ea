//! `pupa-image` on bad input: a one-line error naming the problem, exit status 1, no panic.

use std::process::Command;

fn inspect(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-image"))
        .arg("inspect")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pupa-image-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "want one line: {stderr}"
    );
    assert!(stderr.starts_with("pupa-image: error: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_file() {
    let (code, _, err) = inspect(std::path::Path::new("/nonexistent/pupa.fd"));
    assert_one_line_error(code, &err, "No such file");
}

#[test]
fn no_footer() {
    let (code, _, err) = inspect(&tmp("zeros.fd", &vec![0u8; 64 * 1024]));
    assert_one_line_error(code, &err, "footer");
}

/// A firmware whose footer claims a table longer than what precedes it.
#[test]
fn truncated_table() {
    let mut fw = vec![0u8; 64 * 1024];
    let end = fw.len();
    // footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d at end-0x30, table length at end-0x32
    let guid = [
        0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08,
        0x2d,
    ];
    fw[end - 0x30..end - 0x20].copy_from_slice(&guid);
    fw[end - 0x32..end - 0x30].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let (code, _, err) = inspect(&tmp("truncated.fd", &fw));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // and every truncation of a real table is refused the same way
    for cut in [0x20usize, 0x32, 0x100, 0x1000] {
        let (code, _, err) = inspect(&tmp("short.fd", &fw[..fw.len() - cut]));
        assert_eq!(code, 1, "cut {cut}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Debian's OVMF (when installed) is read by the same code: the twin of `build`.
#[test]
fn inspects_debian_ovmf_when_present() {
    for p in ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE_4M.fd"] {
        let p = std::path::Path::new(p);
        if !p.exists() {
            println!("skip: {} not installed", p.display());
            continue;
        }
        let (code, out, err) = inspect(p);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("OVMF footer table"), "{out}");
        assert!(
            out.contains("SEV-ES reset block") || out.contains("00f771de"),
            "{out}"
        );
    }
}
