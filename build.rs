//! Link options for the lkinit binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if gnu_linux {
        // Relative relocations packed (DT_RELR, glibc 2.36+, binutils 2.38+): the position
        // independent binary keeps its address randomisation, and its relocation table
        // shrinks from about 260 KB to a few KB.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
