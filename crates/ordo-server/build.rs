//! Links the release binary for a small resident size and a quick start: the functions
//! a server runs to start and to serve (`link/order.txt`, written by
//! `scripts/link-order.py`) are placed together at the start of the code, so that a
//! running server touches a few megabytes of it instead of pages scattered over all of
//! it; and its relative relocations are packed.
//!
//! Applied where the linker is known to take both options: release builds
//! for x86_64 Linux with glibc, whose default linker is LLD, unless another linker is
//! configured. `ORDO_LINK_ORDER=0` turns both off. Names in the file that the build does
//! not have are ignored; only the layout changes, never the code.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=link/order.txt");
    println!("cargo:rerun-if-env-changed=ORDO_LINK_ORDER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let lld_by_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = env::var_os("RUSTC_LINKER").is_some()
        || flags.contains("linker")
        || flags.contains("fuse-ld");
    if !lld_by_default
        || other_linker
        || var("PROFILE") != "release"
        || var("ORDO_LINK_ORDER") == "0"
    {
        return;
    }
    // Relative relocations packed as a bitmap (DT_RELR): the binary stays position
    // independent (its addresses randomised), while the loader reads 10 kB of them
    // instead of 800 kB. Needs glibc 2.36 or later where the binary runs.
    println!("cargo:rustc-link-arg-bin=ordo-server=-Wl,-z,pack-relative-relocs");
    let order = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("link/order.txt");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=ordo-server=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=ordo-server=-Wl,--no-warn-symbol-ordering");
    }
}
