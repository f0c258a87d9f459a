//! How a process ended: the exit status lkinit reports (an exit code, or 128 + the signal),
//! decoded from the kernel's wait status.

use nix::sys::signal::Signal;
use std::fmt;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// Reads the shell convention back (a runtime's `run` reports its container that way).
    pub fn from_code(code: i32) -> ExitStatus {
        ExitStatus::Code(code)
    }
}

/// `SIGKILL` for 9; `signal N` for numbers without a name.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                write!(f, "exit code {} (killed by {})", 128 + s, signal_name(s))
            }
        }
    }
}

/// An ended child's raw wait status. Decoded here rather than through nix's `WaitStatus`,
/// which has no room for a real-time signal (34 and up): nix answers EINVAL after the
/// zombie is gone, so a container killed by SIGRTMIN+n would lose its status and whoever
/// waits for it would wait for ever.
pub(super) fn decode_wait_status(raw: libc::c_int) -> Option<ExitStatus> {
    if libc::WIFEXITED(raw) {
        Some(ExitStatus::Code(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        Some(ExitStatus::Signal(libc::WTERMSIG(raw)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_codes() {
        assert_eq!(ExitStatus::Code(3).code(), 3);
        assert_eq!(ExitStatus::Signal(9).code(), 137);
        assert_eq!(
            ExitStatus::Signal(9).to_string(),
            "exit code 137 (killed by SIGKILL)"
        );
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(15).success());
    }
}
