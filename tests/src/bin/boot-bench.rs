//! Boot-time benchmark (not a test): the pupa image to `pupa: ready` and power-off, beside a
//! minimal image built from the same sources that only prints one line and powers off, in the
//! same run, under TCG and (where it works) KVM. QEMU start-up is included in both.
//!
//! `cargo run --release -p pupa-tests --bin boot-bench -- [RUNS]`

use std::time::Duration;

use pupa_host::profile::{self, Accel};
use pupa_tests::{boot, hello_image, image};

fn median_ms(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let pupa = image();
    let hello = hello_image();
    println!(
        "image: {} ({} KiB), hello image: {} KiB",
        pupa.image.display(),
        pupa.size / 1024,
        hello.size / 1024
    );
    let mut accels = vec![Accel::Tcg];
    if profile::kvm_works(&pupa.image, Duration::from_secs(10)) {
        accels.push(Accel::Kvm);
    } else {
        println!("KVM: not working on this machine (probe boot failed); TCG only");
    }
    for accel in accels {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut guest_ms = Vec::new();
        for _ in 0..runs {
            // interleave, so that machine load hits both alike
            let h = boot(&hello.image, accel, &[], Duration::from_secs(60));
            assert!(h.serial.contains("hello"), "hello image: {}", h.serial);
            b.push(h.wall);
            let p = boot(&pupa.image, accel, &[], Duration::from_secs(60));
            assert!(p.serial.contains("pupa: ready"), "pupa image: {}", p.serial);
            a.push(p.wall);
            if let Some(l) = p.serial.lines().find(|l| l.starts_with("pupa: boot ")) {
                guest_ms.push(
                    l.split_whitespace()
                        .nth(2)
                        .and_then(|x| x.parse::<f64>().ok())
                        .unwrap_or(f64::NAN),
                );
            }
        }
        let (pm, pmin, pmax) = median_ms(a);
        let (hm, hmin, hmax) = median_ms(b);
        guest_ms.sort_by(|x, y| x.total_cmp(y));
        println!(
            "{accel:?}: pupa to ready+exit median {pm:.1} ms [{pmin:.1}, {pmax:.1}], hello median {hm:.1} ms [{hmin:.1}, {hmax:.1}], ratio {:.2}; guest-measured reset-to-banner median {:.1} ms ({runs} runs each)",
            pm / hm,
            guest_ms.get(guest_ms.len() / 2).copied().unwrap_or(f64::NAN)
        );
    }
}
