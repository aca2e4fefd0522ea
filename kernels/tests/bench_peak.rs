//! pupa-bench's measured peak is a ceiling: the GEMM of the same run never beats it (a peak
//! loop short of independent FMA chains, or measured while the machine was busier than during
//! the GEMM, once printed 107 % of peak). Compares two measurements of one run with each other,
//! never against an absolute speed.
//!
//! `cargo test -p pupa-kernels --features std --test bench_peak`
#![cfg(feature = "std")]

use std::process::Command;

/// Tolerance for the two measurements' noise.
const SLACK: f64 = 1.02;

/// (GEMM median, GEMM best, peak) GFLOP/s of pupa's row; None when the CPU lacks what `isa`
/// needs.
fn gemm_and_peak(isa: &str, dtype: &str, threads: &str) -> Option<(f64, f64, f64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-bench"))
        .args([
            "matmul",
            "--m",
            "384",
            "--n",
            "384",
            "--k",
            "384",
            "--threads",
            threads,
        ])
        .args(["--isa", isa, "--dtype", dtype, "--no-numpy", "--no-faer"])
        .args(["--rounds", "3", "--repeats", "4", "--warmup", "2", "--json"])
        .output()
        .expect("run pupa-bench");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("not supported by this CPU") {
        return None;
    }
    assert!(out.status.success(), "{err}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let runs = d["runs"].as_array().unwrap();
    let pupa = runs
        .iter()
        .find(|r| r["implementation"] == "pupa")
        .expect("pupa row");
    assert_eq!(pupa["peak_source"], "measured");
    let f = |k: &str| pupa[k].as_f64().unwrap();
    Some((f("gflops"), f("gflops_max"), f("peak_gflops")))
}

#[test]
#[cfg(target_arch = "x86_64")]
fn measured_peak_is_never_below_gemm_in_the_same_run() {
    let mut cases = vec![];
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        cases.push(("avx2", "f32"));
    }
    if is_x86_feature_detected!("avx512f") {
        cases.push(("avx512", "f32"));
    }
    if is_x86_feature_detected!("avx512bf16") {
        cases.push(("avx512bf16", "bf16"));
    }
    let threads = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        &["1", "2"][..]
    } else {
        &["1"][..]
    };
    for (isa, dtype) in cases {
        for t in threads {
            let Some((median, best, peak)) = gemm_and_peak(isa, dtype, t) else {
                eprintln!("{isa}: not supported by this CPU, skipped");
                continue;
            };
            eprintln!(
                "{isa} {dtype} t{t}: GEMM median {median:.1}, best {best:.1}, peak {peak:.1} GFLOP/s ({:.0} % / {:.0} %)",
                100.0 * median / peak,
                100.0 * best / peak
            );
            assert!(peak > 0.0 && median > 0.0);
            assert!(
                median <= peak * SLACK,
                "{isa} {dtype} t{t}: GEMM median {median:.1} GFLOP/s above the measured peak {peak:.1}"
            );
        }
    }
}
