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
    #[error("`{bin} {op}` failed: {message}")]
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
