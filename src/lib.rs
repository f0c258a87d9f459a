//! lkinit: init and service supervisor for immutable Linux images whose userland is a set of
//! OCI containers. See docs/architecture.md for the architecture.

// Errors carry the bundle, path and field that a console line needs; they are rare, so
// their size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod bundle;
pub mod cgroups;
pub mod cli;
pub mod container;
pub mod fuzz_checks;
pub mod logs;
pub mod mountapi;
pub mod mountinfo;
pub mod mounts;
pub mod net;
pub mod nsbind;
pub mod nsenter;
pub mod oci_runtime;
pub mod onboot;
pub mod paths;
pub mod pid1;
pub mod process;

pub mod rootfs;
pub mod runtime_config;
pub mod safefile;
pub mod supervisor;
pub mod undo;
pub mod userns;
pub mod volumes;

/// PATH when lkinit's own environment has none (PID 1 sets it; a command run inside a
/// service looks its program up in it).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An error and all its causes on one line, joined by `: ` (console lines are read one at a
/// time; causes below the line get lost).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        // Some errors repeat their source in their own message.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
