//! Result rows of pupa-bench, the table and the `--json` document.

use serde::Serialize;

use super::Dt;

/// One measured implementation in one configuration: a table line, an element of the JSON
/// document's `runs`.
#[derive(Serialize, Clone)]
pub struct Run {
    pub bench: &'static str,
    pub implementation: String,
    pub backend: &'static str,
    pub isa: &'static str,
    pub dtype: Dt,
    pub shape: String,
    /// The size the sweep plot puts on its x axis: (m·n·k)^(1/3) for matmul, seq for attention.
    pub size: f64,
    pub threads: usize,
    pub gflops: f64,
    pub gflops_min: f64,
    pub gflops_max: f64,
    pub seconds_median: f64,
    pub samples: usize,
    pub peak_gflops: f64,
    pub peak_source: &'static str,
    pub pct_of_peak: f64,
    pub ratio_to_pupa: f64,
    pub note: String,
}

/// The `--json` document: everything one invocation measured.
#[derive(Serialize)]
pub struct Document<'a> {
    pub bench: &'static str,
    pub backend: &'static str,
    pub isa: &'static str,
    pub dtype: Dt,
    pub clock: &'static str,
    /// Why a reference is missing (e.g. numpy could not be set up), else empty.
    pub warnings: &'a [String],
    pub runs: &'a [Run],
}

/// What the rows of one benchmark case share.
pub struct Case<'a> {
    pub bench: &'static str,
    pub backend: &'static str,
    pub isa: &'static str,
    pub dtype: Dt,
    pub shape: &'a str,
    pub size: f64,
    pub threads: usize,
    pub flops: f64,
    pub peak: f64,
    pub peak_source: &'static str,
    /// pupa's median GFLOP/s, the base of `ratio_to_pupa`.
    pub pupa_median: f64,
}

impl Case<'_> {
    /// The row of one implementation from its GFLOP/s samples.
    pub fn row(&self, implementation: String, gf: &[f64], note: String) -> Run {
        let med = median(gf);
        Run {
            bench: self.bench,
            implementation,
            backend: self.backend,
            isa: self.isa,
            dtype: self.dtype,
            shape: self.shape.to_string(),
            size: self.size,
            threads: self.threads,
            gflops: med,
            gflops_min: gf.iter().cloned().fold(f64::INFINITY, f64::min),
            gflops_max: gf.iter().cloned().fold(0.0, f64::max),
            seconds_median: self.flops / med / 1e9,
            samples: gf.len(),
            peak_gflops: self.peak,
            peak_source: self.peak_source,
            pct_of_peak: 100.0 * med / self.peak,
            ratio_to_pupa: med / self.pupa_median,
            note,
        }
    }
}

pub fn dtype_name(d: Dt) -> String {
    serde_json::to_string(&d)
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// The table of one configuration.
pub fn print_table(runs: &[Run]) {
    let Some(r0) = runs.first() else { return };
    println!(
        "\n{} {} {} threads={} isa={} peak={:.1} GFLOP/s ({})",
        r0.bench,
        r0.shape,
        dtype_name(r0.dtype),
        r0.threads,
        r0.isa,
        r0.peak_gflops,
        r0.peak_source
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>7} {:>9}  note",
        "impl", "GFLOP/s", "min", "max", "%peak", "vs pupa"
    );
    for r in runs {
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>10.1} {:>6.1}% {:>8.3}x  {}",
            r.implementation,
            r.gflops,
            r.gflops_min,
            r.gflops_max,
            r.pct_of_peak,
            r.ratio_to_pupa,
            r.note
        );
    }
}

pub fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
