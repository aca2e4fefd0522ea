//! Links the firmware binary with `linker.ld` when building for the bare-metal target.
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=src/arch/boot.s");
    println!("cargo:rerun-if-env-changed=PUPA_ROM_SIZE");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return; // host build: the library only (runtime logic under `cargo test`)
    }
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    // ROM size: a multiple of 64 KiB (QEMU's -bios requirement); chosen by `pupa-image build`.
    let rom = env::var("PUPA_ROM_SIZE").unwrap_or_else(|_| "0xA0000".into());
    let script = fs::read_to_string(format!("{dir}/linker.ld"))
        .expect("guest/linker.ld is readable")
        .replace("@ROM_SIZE@", &rom);
    fs::write(format!("{out}/linker.ld"), script).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-arg-bins=-T{out}/linker.ld");
    // Fail on any section the script does not place.
    println!("cargo:rustc-link-arg-bins=--orphan-handling=error");
    println!("cargo:rustc-link-arg-bins=--build-id=none");
}
