//! Reproducible build: two clean copies of the source at different absolute paths, each built
//! with its own fresh `CARGO_HOME` (so crates are fetched and unpacked at different paths), give
//! the same image bytes — and the same bytes as the image built in this checkout.

use std::path::PathBuf;

use pupa_image::build::{build, BuildOptions};
use pupa_tests::{copy_source, image, workspace};

#[test]
fn two_clean_builds_in_different_paths_are_bit_identical() {
    let base = workspace().join("target").join("repro");
    let _ = std::fs::remove_dir_all(&base);
    let mut hashes = Vec::new();
    for (i, name) in ["first-copy", "second/copy-at-another-depth"]
        .iter()
        .enumerate()
    {
        let src = base.join(name).join("pupa-src");
        let n = copy_source(&src).expect("copy the source tree");
        assert!(n > 20, "copied only {n} files");
        let opts = BuildOptions {
            src: src.clone(),
            out: src.join("out"),
            target_dir: Some(src.join("target")),
            features: vec![],
            skip_measurements: true,
            cargo_home: Some(base.join(format!("cargo-home-{i}"))),
        };
        let r = build(&opts).unwrap_or_else(|e| panic!("build in {}: {e}", src.display()));
        println!("build {i} in {}: sha384 {}", src.display(), r.sha384);
        hashes.push(r.sha384);
    }
    let here = image();
    println!("build in {}: sha384 {}", workspace().display(), here.sha384);
    assert_eq!(hashes[0], hashes[1], "two clean builds differ");
    assert_eq!(
        hashes[0], here.sha384,
        "a clean build differs from this checkout's build"
    );
    // keep the disk tidy: each copy holds a full guest target dir
    let _ = std::fs::remove_dir_all(PathBuf::from(&base));
}
