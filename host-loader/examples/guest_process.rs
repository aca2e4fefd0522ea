//! The guest runtime served from a host process (the test fixture of the relay tests), for
//! benchmarking `pupa-host run` and `pupa-client bench` without QEMU:
//!
//! ```text
//! cargo run --release -p pupa-host --example guest_process -- 127.0.0.1:7000
//! ```
//! It serves INSECURE development evidence; never use it for real jobs.

#[path = "../tests/common/guest_process.rs"]
mod guest_process;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let Ok(addr) = addr.parse() else {
        eprintln!("error: {addr:?} is not an address (want HOST:PORT)");
        std::process::exit(2);
    };
    let g = guest_process::GuestProcess::start_with(addr, Default::default());
    println!(
        "guest_process: serving on {} (insecure dev evidence)",
        g.addr()
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
