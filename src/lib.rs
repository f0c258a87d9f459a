//! lkinit: init and service supervisor for immutable Linux images whose userland is a set of
//! OCI containers. See docs/architecture.md for the architecture.

// Errors carry the bundle, path and field that a console line needs; they are rare, so
// their size on the error path does not matter.
#![allow(clippy::result_large_err)]

// The API boundary: public are the modules that the binary (src/main.rs,
// src/bin/lkinit-docs.rs), the integration tests and the fuzz targets use, and in them only
// what they use; the rest is the crate's own.
pub mod bundle;
pub mod cgroups;
pub mod cli;
pub mod container;
pub mod mountinfo;
pub mod mounts;
pub mod nsenter;
pub mod onboot;
pub mod pid1;
pub mod process;
pub mod rootfs;
pub mod supervisor;
pub mod undo;
pub mod userns;
pub mod volumes;

mod civil;
mod logs;
mod mountapi;
mod net;
mod nsbind;
mod oci_runtime;
mod paths;
mod runtime_config;
mod safefile;

/// The fuzz targets' checks (feature `fuzzing`: fuzz/ and tests/fuzz_regressions.rs).
#[cfg(feature = "fuzzing")]
pub mod fuzz_checks;

/// PATH when lkinit's own environment has none (PID 1 sets it; a command run inside a
/// service looks its program up in it).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One error's own words; a system call's error number is worded as every io error is
/// (`Read-only file system (os error 30)`), whichever library reported it.
fn worded(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<nix::errno::Errno>() {
        Some(errno) => std::io::Error::from(*errno).to_string(),
        None => e.to_string(),
    }
}

/// An error and all its causes on one line, joined by `: ` (console lines are read one at a
/// time; causes below the line get lost).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = worded(e);
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = worded(c);
        // Some errors repeat their source in their own message.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
