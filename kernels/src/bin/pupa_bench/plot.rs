//! `--plot FILE.svg`: GFLOP/s against problem size, one series per implementation (and thread
//! count), the measured or given peak as a dashed line. Hand-written SVG 1.1, no dependencies.
//!
//! x: `Run::size` ((m·n·k)^(1/3) for matmul, seq for attention), on a log₂ axis when the sweep
//! spans more than a factor 4; y: GFLOP/s from 0. Each series is a
//! `<g class="series" data-impl=".." data-threads="..">` (the peak: `class="peak"`); colour
//! tells the implementation, the dash pattern the thread count.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::report::{dtype_name, Run};

const W: f64 = 860.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Per thread count of a sweep (first, second, ...): the series' dash pattern, the peak's grey.
const DASHES: [&str; 4] = ["none", "2 3", "8 3", "8 3 2 3"];
const PEAK_GREYS: [&str; 4] = ["#000", "#666", "#999", "#bbb"];
const PEAK_DASH: &str = "6 4";
/// Per implementation (in the order of the rows).
const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A finite, positive-scaled axis.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn t(&self, v: f64) -> f64 {
        let (v, lo, hi) = if self.log {
            (v.log2(), self.lo.log2(), self.hi.log2())
        } else {
            (v, self.lo, self.hi)
        };
        if hi > lo {
            (v - lo) / (hi - lo)
        } else {
            0.5
        }
    }
}

fn x_axis(sizes: &[f64]) -> Axis {
    let lo = sizes.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = sizes.iter().cloned().fold(0.0, f64::max);
    let log = lo > 0.0 && hi / lo > 4.0;
    let pad = if log { 1.1 } else { 0.0 };
    if log {
        Axis {
            lo: lo / pad,
            hi: hi * pad,
            log,
        }
    } else {
        let d = ((hi - lo) * 0.05).max(0.5);
        Axis {
            lo: lo - d,
            hi: hi + d,
            log,
        }
    }
}

/// A round tick step giving about five ticks up to `hi`.
fn step(hi: f64) -> f64 {
    let raw = (hi / 5.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// Series key: the implementation, with the thread count when the sweep has several.
fn series(runs: &[Run]) -> BTreeMap<(usize, String, usize), Vec<(f64, f64)>> {
    let mut order: Vec<String> = vec![];
    let mut out: BTreeMap<(usize, String, usize), Vec<(f64, f64)>> = BTreeMap::new();
    for r in runs {
        let i = match order.iter().position(|n| *n == r.implementation) {
            Some(i) => i,
            None => {
                order.push(r.implementation.clone());
                order.len() - 1
            }
        };
        out.entry((i, r.implementation.clone(), r.threads))
            .or_default()
            .push((r.size, r.gflops));
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The peak per thread count, as (size, GFLOP/s) points.
fn peaks(runs: &[Run]) -> BTreeMap<usize, Vec<(f64, f64)>> {
    let mut out: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.peak_gflops.is_finite()) {
        let v = out.entry(r.threads).or_default();
        if !v.iter().any(|p| p.0 == r.size) {
            v.push((r.size, r.peak_gflops));
        }
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn polyline(out: &mut String, pts: &[(f64, f64)], xa: &Axis, ya: &Axis, attrs: &str) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let p: Vec<String> = pts
        .iter()
        .map(|&(x, y)| {
            format!(
                "{:.1},{:.1}",
                LEFT + xa.t(x) * pw,
                TOP + (1.0 - ya.t(y)) * ph
            )
        })
        .collect();
    let _ = writeln!(out, r#"<polyline points="{}" {attrs}/>"#, p.join(" "));
}

fn axes(out: &mut String, xa: &Axis, ya: &Axis, sizes: &[f64], ystep: f64) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let mut y = 0.0;
    while y <= ya.hi + 1e-9 {
        let py = TOP + (1.0 - ya.t(y)) * ph;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{y}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0
        );
        y += ystep;
    }
    let mut last = f64::NEG_INFINITY;
    for &s in sizes {
        let px = LEFT + xa.t(s) * pw;
        if px - last < 28.0 {
            continue;
        }
        last = px;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#444"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 20.0,
            s.round()
        );
    }
}

/// The SVG document of a sweep (`runs` as printed by one invocation).
pub fn svg(runs: &[Run]) -> String {
    let mut sizes: Vec<f64> = runs.iter().map(|r| r.size).collect();
    sizes.sort_by(|a, b| a.total_cmp(b));
    sizes.dedup();
    let xa = x_axis(&sizes);
    let ymax = runs
        .iter()
        .flat_map(|r| [r.gflops, r.peak_gflops])
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let ystep = step(ymax * 1.05);
    let ya = Axis {
        lo: 0.0,
        hi: (ymax * 1.05 / ystep).ceil() * ystep,
        log: false,
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    title(&mut o, runs);
    axes(&mut o, &xa, &ya, &sizes, ystep);
    draw(&mut o, runs, &xa, &ya);
    o.push_str("</svg>\n");
    o
}

fn title(o: &mut String, runs: &[Run]) {
    if let Some(r0) = runs.first() {
        let x_name = if r0.bench == "matmul" {
            "size: (m·n·k)^(1/3)"
        } else {
            "sequence length"
        };
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="20" font-size="15">{} {} {}, isa {}: GFLOP/s vs size</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">GFLOP/s</text>"#,
            esc(r0.bench),
            esc(r0.backend),
            esc(&dtype_name(r0.dtype)),
            esc(r0.isa),
            LEFT + (W - LEFT - RIGHT) / 2.0,
            H - 18.0,
            esc(x_name),
            TOP + (H - TOP - BOTTOM) / 2.0
        );
        let last = runs.last().map_or("", |r| r.shape.as_str());
        let shapes = if last == r0.shape {
            r0.shape.clone()
        } else {
            format!("{} … {}", r0.shape, last)
        };
        let _ = writeln!(
            o,
            r##"<text x="{LEFT}" y="38" font-size="11" fill="#555">{}</text>"##,
            esc(&shapes)
        );
    }
}

/// The peak lines, the series and the legend.
fn draw(o: &mut String, runs: &[Run], xa: &Axis, ya: &Axis) {
    let multi_threads = runs.iter().any(|r| r.threads != runs[0].threads);
    let threads: Vec<usize> = {
        let mut t: Vec<usize> = runs.iter().map(|r| r.threads).collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    let ti = |t: usize| threads.iter().position(|&x| x == t).unwrap_or(0);
    // (label, colour, dash pattern)
    let mut legend: Vec<(String, String, &str)> = vec![];
    for (t, pts) in peaks(runs) {
        let name = if multi_threads {
            format!("peak t{t}")
        } else {
            "peak".into()
        };
        let grey = PEAK_GREYS[ti(t) % PEAK_GREYS.len()];
        let _ = writeln!(o, r#"<g class="peak" data-threads="{t}">"#);
        let attrs = format!(
            r#"fill="none" stroke="{grey}" stroke-width="1.5" stroke-dasharray="{PEAK_DASH}""#
        );
        polyline(o, &pts, xa, ya, &attrs);
        o.push_str("</g>\n");
        legend.push((name, grey.into(), PEAK_DASH));
    }
    for ((i, name, t), pts) in series(runs) {
        let color = COLORS[i % COLORS.len()];
        let dash = DASHES[ti(t) % DASHES.len()];
        let _ = writeln!(
            o,
            r#"<g class="series" data-impl="{}" data-threads="{t}">"#,
            esc(&name)
        );
        let attrs =
            format!(r#"fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}""#);
        polyline(o, &pts, xa, ya, &attrs);
        for &(x, y) in &pts {
            let (px, py) = (
                LEFT + xa.t(x) * (W - LEFT - RIGHT),
                TOP + (1.0 - ya.t(y)) * (H - TOP - BOTTOM),
            );
            let _ = writeln!(
                o,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{color}"><title>{} t{t}: {:.1} GFLOP/s at size {}</title></circle>"#,
                esc(&name),
                y,
                x.round()
            );
        }
        o.push_str("</g>\n");
        let label = if multi_threads {
            format!("{name} t{t}")
        } else {
            name
        };
        legend.push((label, color.into(), dash));
    }
    for (i, (name, color, dash)) in legend.iter().enumerate() {
        let (x, y) = (W - RIGHT + 16.0, TOP + 10.0 + 20.0 * i as f64);
        let _ = writeln!(
            o,
            r#"<line x1="{x}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 24.0,
            x + 30.0,
            y + 4.0,
            esc(name)
        );
    }
}
