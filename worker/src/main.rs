//! `pupa-worker`: see the library docs (`pupa_worker`) and docs/DESIGN.md, "pupa-worker".

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod init;

fn main() -> ExitCode {
    if std::process::id() == 1 {
        // the only process of a Linux VM: /init of pupa's initramfs (docs/DESIGN.md §2.3)
        init::main();
    }
    let args = pupa_worker::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let stop = AtomicBool::new(false);
    match pupa_worker::run(&args, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pupa-worker: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
