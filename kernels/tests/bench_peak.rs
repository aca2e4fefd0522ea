//! pupa-bench's measured peak is a ceiling: the GEMMs of the same run (pupa's, and faer's where
//! it runs the same vector width) never beat it (a peak loop short of independent FMA chains, or
//! measured while the machine was busier than during the GEMM, once printed 107 % of peak; a bf16
//! peak from `vdpbf16ps` alone sat below faer's f32 GEMM on the same values). Compares two measurements of one run with each other,
//! never against an absolute speed.
//!
//! `cargo test --release -p pupa-kernels --features std --test bench_peak`
#![cfg(feature = "std")]

use std::process::Command;

/// Tolerance for the two measurements' noise.
const SLACK: f64 = 1.02;

/// (implementation and shape, GEMM median, GEMM best, peak) GFLOP/s of pupa's rows and, with
/// `faer`, faer's (256×384×384 and 512×384×384); None when the CPU lacks what `isa` needs.
fn gemm_and_peak(
    isa: &str,
    dtype: &str,
    threads: &str,
    faer: bool,
) -> Option<Vec<(String, f64, f64, f64)>> {
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-bench"))
        .args(["matmul", "--m", "256,512", "--n", "384", "--k", "384"])
        .args([
            "--threads",
            threads,
            "--isa",
            isa,
            "--dtype",
            dtype,
            "--no-numpy",
        ])
        .args(if faer { &[][..] } else { &["--no-faer"][..] })
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
    let rows: Vec<_> = runs
        .iter()
        .filter(|r| r["implementation"] == "pupa" || r["implementation"] == "faer")
        .map(|r| {
            assert_eq!(r["peak_source"], "measured");
            let f = |k: &str| r[k].as_f64().unwrap();
            let what = format!(
                "{} {}",
                r["implementation"].as_str().unwrap(),
                r["shape"].as_str().unwrap()
            );
            (what, f("gflops"), f("gflops_max"), f("peak_gflops"))
        })
        .collect();
    assert_eq!(rows.len(), if faer { 4 } else { 2 });
    Some(rows)
}

/// Meaningful in an optimised build (`cargo test --release ...`): with debug assertions the
/// GEMM runs at a fraction of its speed and passes easily.
#[test]
#[cfg(target_arch = "x86_64")]
fn measured_peak_is_never_below_gemm_in_the_same_run() {
    // (isa, dtype, whether faer's rows are held to the peak too: not when pupa is forced below
    // the CPU's widest vectors, which faer still uses)
    let avx512 = is_x86_feature_detected!("avx512f");
    let mut cases = vec![];
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        cases.push(("avx2", "f32", !avx512));
    }
    if avx512 {
        cases.push(("avx512", "f32", true));
    }
    if is_x86_feature_detected!("avx512bf16") {
        // the peak of a bf16 run: the better of vdpbf16ps and FMA (faer widens to f32)
        cases.push(("avx512bf16", "bf16", true));
    }
    let threads = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        &["1", "2"][..]
    } else {
        &["1"][..]
    };
    for (isa, dtype, faer) in cases {
        for t in threads {
            let Some(rows) = gemm_and_peak(isa, dtype, t, faer) else {
                eprintln!("{isa}: not supported by this CPU, skipped");
                continue;
            };
            for (shape, median, best, peak) in rows {
                let what = format!("{isa} {dtype} {shape} t{t}");
                check(&what, median, best, peak);
            }
        }
    }
}

fn check(what: &str, median: f64, best: f64, peak: f64) {
    eprintln!(
        "{what}: GEMM median {median:.1}, best {best:.1}, peak {peak:.1} GFLOP/s ({:.0} % / {:.0} %)",
        100.0 * median / peak,
        100.0 * best / peak
    );
    assert!(peak > 0.0 && median > 0.0);
    assert!(
        median <= peak * SLACK,
        "{what}: GEMM median {median:.1} GFLOP/s above the measured peak {peak:.1}"
    );
}
