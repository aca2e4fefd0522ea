//! Reproducible build: two clean copies of the source at different absolute paths, each built
//! with its own fresh `CARGO_HOME` (so crates are fetched and unpacked at different paths), give
//! the same image bytes — and the same bytes as the image built in this checkout. Each copy
//! also builds the Linux payload (`pupa-image build --payload linux --no-gpu`: the kernel from
//! the shared `.deb` cache, the initramfs with a static pupa-worker compiled in that copy, the
//! command line) and the two give the same `vmlinuz`, `initramfs.cpio`, `cmdline` and
//! `manifest.json` (with the payload object and its SNP digests), byte for byte.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pupa_image::build::{build, BuildOptions};
use pupa_image::payload::{self, PayloadOptions, CMDLINE_FILE, INITRD_FILE, KERNEL_FILE};
use pupa_tests::{copy_source, image, workspace};

/// Builds the image and the Linux payload in the copy at `src`; returns the output directory.
fn build_copy(src: &Path, cargo_home: PathBuf, i: usize) -> (PathBuf, String) {
    let out = src.join("out");
    let opts = BuildOptions {
        src: src.to_path_buf(),
        out: out.clone(),
        target_dir: Some(src.join("target")),
        features: vec![],
        skip_measurements: true,
        cargo_home: Some(cargo_home.clone()),
    };
    let r = build(&opts).unwrap_or_else(|e| panic!("build in {}: {e}", src.display()));
    println!("build {i} in {}: sha384 {}", src.display(), r.sha384);
    let t0 = Instant::now();
    let mut p = PayloadOptions::new(src, &out);
    // the .deb is checked against the lock in each copy; downloading it twice adds nothing
    p.deb_cache = workspace().join("target/linux-deb");
    p.worker_target_dir = src.join("target/musl");
    p.cargo_home = Some(cargo_home);
    let l =
        payload::build(&p).unwrap_or_else(|e| panic!("Linux payload in {}: {e}", src.display()));
    println!(
        "build {i}: Linux payload in {:.1} s (static pupa-worker: cargo {:.1} s, {} bytes), \
         initramfs {} bytes, {} modules",
        t0.elapsed().as_secs_f64(),
        l.worker_build_time.as_secs_f64(),
        l.worker_size,
        l.initrd_size,
        l.modules.load.len()
    );
    // only `out` is compared: drop the copy's build trees and crate cache now, so that the
    // disk holds one copy's builds at a time (each is a full guest and musl target dir)
    for d in [src.join("target"), p.cargo_home.clone().unwrap_or_default()] {
        if let Err(e) = std::fs::remove_dir_all(&d) {
            println!("build {i}: cannot remove {}: {e}", d.display());
        }
    }
    (out, r.sha384)
}

#[test]
fn two_clean_builds_in_different_paths_are_bit_identical() {
    let base = workspace().join("target").join("repro");
    let _ = std::fs::remove_dir_all(&base);
    // both copies first: they hold the same snapshot of the working tree
    let names = ["first-copy", "second/copy-at-another-depth"];
    let srcs: Vec<PathBuf> = names
        .iter()
        .map(|n| base.join(n).join("pupa-src"))
        .collect();
    for src in &srcs {
        let n = copy_source(src).expect("copy the source tree");
        assert!(n > 20, "copied only {n} files");
    }
    let builds: Vec<(PathBuf, String)> = srcs
        .iter()
        .enumerate()
        .map(|(i, src)| build_copy(src, base.join(format!("cargo-home-{i}")), i))
        .collect();
    assert_eq!(builds[0].1, builds[1].1, "two clean builds differ");
    for f in [KERNEL_FILE, INITRD_FILE, CMDLINE_FILE, "manifest.json"] {
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let (a, b) = (read(&builds[0].0), read(&builds[1].0));
        assert!(a == b, "{f} differs between the two clean builds");
        println!("{f}: {} bytes, identical", a.len());
    }
    let here = image();
    println!("build in {}: sha384 {}", workspace().display(), here.sha384);
    assert_eq!(
        builds[0].1, here.sha384,
        "a clean build differs from this checkout's build (was the working tree edited while the test ran?)"
    );
    // keep the disk tidy: each copy holds a full guest target dir
    let _ = std::fs::remove_dir_all(PathBuf::from(&base));
}
