//! A runtime command's failure: the runtime's own message, a bound it overran, a launch cut
//! short, a signal that killed it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run the OCI runtime `{bin}`")]
    Spawn {
        bin: String,
        #[source]
        source: io::Error,
    },
    #[error("`{bin} {op}` failed: {message}{}", advice(message))]
    Failed {
        bin: String,
        op: &'static str,
        message: String,
    },
    #[error("`{bin} {op}` did not end within the timeout ({}) and was killed", secs(*.limit))]
    TimedOut {
        bin: String,
        op: &'static str,
        limit: Duration,
    },
    #[error("`{bin} {op}` was cut short: the container is no longer wanted")]
    Cancelled { bin: String, op: &'static str },
    #[error("`{bin} {op}` was killed by {signal}")]
    Killed {
        bin: String,
        op: &'static str,
        signal: String,
    },
    #[error("{path}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot prepare {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A line of advice for runtime refusals whose own words do not say what to do.
fn advice(message: &str) -> &'static str {
    if message.contains("cgroups in hybrid mode not supported") {
        // crun 1.8 refuses a host that mounts cgroup v1 controllers beside a v2 hierarchy
        // (/sys/fs/cgroup/unified), even with --cgroup-manager=disabled.
        " (crun cannot use this host's hybrid cgroup layout, v1 controllers with a v2 \
         hierarchy beside them: use runc here (--runtime runc), or boot with one layout only, \
         cgroup v2 alone (the default under lkinit as PID 1) or v1 alone)"
    } else {
        ""
    }
}

/// `5s`, `0.5s`.
pub(super) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

impl RuntimeError {
    /// Whether lkinit killed the command (its bound expired, or its launch was cancelled):
    /// what it had begun may be left half made.
    pub fn was_killed(&self) -> bool {
        matches!(
            self,
            RuntimeError::TimedOut { .. } | RuntimeError::Cancelled { .. }
        )
    }

    /// Whether the runtime refused because a container of that name exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, RuntimeError::Failed { message, .. }
            if message.contains("already exists") || message.contains("exists:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_s_hybrid_refusal_says_what_to_do() {
        let e = RuntimeError::Failed {
            bin: "crun".into(),
            op: "run",
            message: "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
                .into(),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("`crun run` failed: cgroups in hybrid mode"),
            "{s}"
        );
        assert!(s.contains("use runc here (--runtime runc)"), "{s}");
        let other = RuntimeError::Failed {
            bin: "runc".into(),
            op: "create",
            message: "Cwd must be an absolute path".into(),
        };
        assert_eq!(
            other.to_string(),
            "`runc create` failed: Cwd must be an absolute path"
        );
    }
}
