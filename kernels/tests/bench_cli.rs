//! pupa-bench as a script sees it: one JSON document per invocation, the SVG plot of a sweep,
//! the numpy reference set up or skipped in one line, and a peak that the GEMM of the same run
//! never beats.
//!
//! `cargo test -p pupa-kernels --features std --test bench_cli`
#![cfg(feature = "std")]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-bench"))
        .args(args)
        .output()
        .expect("run pupa-bench");
    assert!(
        out.status.success(),
        "pupa-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout must be exactly one JSON document.
fn doc(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pupa-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fields of a table row, all present in every JSON row.
const ROW_FIELDS: [&str; 12] = [
    "implementation",
    "shape",
    "threads",
    "isa",
    "gflops",
    "gflops_min",
    "gflops_max",
    "pct_of_peak",
    "ratio_to_pupa",
    "peak_gflops",
    "peak_source",
    "note",
];

#[test]
fn every_subcommand_prints_one_json_document() {
    let quick = [
        "--no-numpy",
        "--rounds",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ];
    let mm = [
        &["matmul", "--m", "32,48", "--n", "40", "--k", "24", "--json"][..],
        &quick,
    ]
    .concat();
    let at = [
        &[
            "attention",
            "--seq",
            "64",
            "--heads",
            "2",
            "--dim",
            "32",
            "--json",
        ][..],
        &quick,
    ]
    .concat();
    for (args, bench_name, rows) in [(mm, "matmul", 2), (at, "attention", 1)] {
        let d = doc(&bench(&args));
        assert_eq!(d["bench"], bench_name);
        let runs = d["runs"].as_array().expect("runs");
        let pupa: Vec<&Value> = runs
            .iter()
            .filter(|r| r["implementation"] == "pupa")
            .collect();
        assert_eq!(pupa.len(), rows, "{args:?}: one pupa row per configuration");
        for r in runs {
            for f in ROW_FIELDS {
                assert!(!r[f].is_null(), "{args:?}: row without {f}: {r}");
            }
            assert!(r["gflops"].as_f64().unwrap() > 0.0);
        }
    }
}

/// A minimal XML well-formedness check: balanced, properly nested tags, quoted attributes,
/// no stray `<` or `&` in text. Returns the element names in document order.
fn xml_elements(s: &str) -> Vec<String> {
    let body = s
        .strip_prefix("<?xml")
        .and_then(|r| r.split_once("?>"))
        .map(|(_, r)| r)
        .expect("XML declaration");
    let (mut stack, mut names) = (Vec::<String>::new(), vec![]);
    let mut rest = body;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        for (j, _) in text.match_indices('&') {
            let ent = &text[j..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "bare & in {text:?}"
            );
        }
        let end = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..end];
        assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else {
            let self_closing = tag.ends_with('/');
            let name = tag
                .trim_end_matches('/')
                .split_whitespace()
                .next()
                .expect("tag name")
                .to_string();
            names.push(name.clone());
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    names
}

#[test]
fn sweep_plot_is_well_formed_svg_with_a_series_per_implementation() {
    let dir = scratch("plot");
    let svg_path = dir.join("sweep.svg");
    let args = [
        "matmul",
        "--m",
        "32,64,128",
        "--n",
        "64",
        "--k",
        "64",
        "--threads",
        "1,2",
        "--no-numpy",
        "--rounds",
        "1",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
        "--plot",
    ];
    let d = doc(&bench(&[&args[..], &[svg_path.to_str().unwrap()]].concat()));
    let svg = std::fs::read_to_string(&svg_path).expect("the plot was written");
    let names = xml_elements(&svg);
    assert_eq!(names.first().map(String::as_str), Some("svg"));
    assert!(names.iter().any(|n| n == "polyline"));
    let runs = d["runs"].as_array().unwrap();
    let mut impls: Vec<&str> = runs
        .iter()
        .map(|r| r["implementation"].as_str().unwrap())
        .collect();
    impls.dedup();
    assert!(
        impls.contains(&"pupa") && impls.contains(&"faer"),
        "{impls:?}"
    );
    for imp in impls {
        for t in [1, 2] {
            let g = format!(r#"<g class="series" data-impl="{imp}" data-threads="{t}">"#);
            assert!(svg.contains(&g), "no series for {imp} t{t}");
            // one point per size
            let series = svg.split(&g).nth(1).unwrap().split("</g>").next().unwrap();
            assert_eq!(series.matches("<circle").count(), 3, "{imp} t{t}");
        }
    }
    for t in [1, 2] {
        assert!(svg.contains(&format!(r#"<g class="peak" data-threads="{t}">"#)));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn numpy_that_cannot_be_set_up_is_one_line_and_the_bench_goes_on() {
    let dir = scratch("nopython");
    let empty_path = dir.join("bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-bench"))
        .args(["matmul", "--m", "16", "--n", "16", "--k", "16", "--json"])
        .args(["--rounds", "1", "--repeats", "1", "--warmup", "0"])
        .env("PATH", &empty_path) // no python3 to make a venv with
        .env("PUPA_BENCH_VENV", dir.join("venv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, not {lines:?}");
    assert!(
        lines[0].contains("numpy") && lines[0].contains("venv"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("pip install"), "says how: {}", lines[0]);
    let d = doc(&out);
    assert!(d["warnings"][0].as_str().unwrap().contains("numpy"));
    let runs = d["runs"].as_array().unwrap();
    assert!(runs.iter().any(|r| r["implementation"] == "pupa"));
    assert!(!runs.iter().any(|r| r["implementation"] == "numpy-openblas"));
    assert!(!dir.join("venv").exists(), "no half-made venv left behind");
    let _ = std::fs::remove_dir_all(dir);
}

/// Needs python3 with venv and pip, and the network (or a wheel cache): `--ignored`.
#[test]
#[ignore]
fn numpy_venv_is_created_and_reused() {
    let dir = scratch("venv");
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_pupa-bench"))
            .args(["matmul", "--m", "64", "--n", "64", "--k", "64", "--json"])
            .args(["--rounds", "1", "--repeats", "1", "--warmup", "0"])
            .env("PUPA_BENCH_VENV", dir.join("venv"))
            .output()
            .unwrap();
        let d = doc(&out);
        let runs = d["runs"].as_array().unwrap();
        assert!(
            runs.iter().any(|r| r["implementation"] == "numpy-openblas"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_run_with_json_prints_an_error_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-bench"))
        .args([
            "matmul",
            "--m",
            "0",
            "--n",
            "8",
            "--k",
            "8",
            "--json",
            "--no-numpy",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let d = doc(&out);
    assert!(d["error"].as_str().unwrap().contains("at least 1"), "{d}");
}
