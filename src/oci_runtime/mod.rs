//! Driving an OCI runtime binary (runc, crun): create, start, run, kill, delete, state.
//!
//! Every call passes `--log FILE --log-format json`, so a failure of the runtime itself is
//! told apart from a container that exited non-zero, and its message is reported as it is.
//!
//! Every command but `run` (whose life is the container's) is bounded: a runtime runs the
//! bundle's OCI hooks, which may never return, and lkinit must go on. A command still
//! running at its bound is killed with everything it started (the hooks, a container init
//! it was making) and reported as [`RuntimeError::TimedOut`]; what it leaves is cleared
//! here (see [`OciRuntime::create`] and [`OciRuntime::delete`]).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the runtime and its commands: create, run, start, kill, delete, state |
//! | `command.rs` | how one command runs: its flags, its start, its bound, its output |
//! | `limits.rs` | how long each command may take, under a caller's deadline or not |
//! | `cancel.rs` | cutting a launch short |
//! | `error.rs` | what went wrong, in words |
//! | `runtime_log.rs` | the runtime's JSON logs: its error, its messages on the console |
//! | `leftovers.rs` | what a killed runtime or a killed lkinit left: state directories, commands still running |

mod cancel;
mod command;
mod error;
mod leftovers;
mod limits;
mod runtime_log;

pub use cancel::Cancel;
pub use error::RuntimeError;
pub use limits::Deadline;

use crate::logs::ContainerStdio;
use crate::process::{ExitStatus, PidFd, Waiter};
use command::{CallNote, read_pid_file};
use std::path::{Path, PathBuf};

/// The container's state as the runtime reports it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct State {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub bundle: PathBuf,
}

#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub bin: String,
    pub root: Option<PathBuf>,
    /// Where the runtime's JSON logs go, one file per container.
    pub log_dir: PathBuf,
    /// Where each runtime command in flight is noted (see [`OciRuntime::note_calls_in`]).
    calls_dir: Option<PathBuf>,
    /// `--debug` to the runtime; its JSON logs are kept instead of removed (LinuxKit's
    /// `linuxkit.runc_debug=1`).
    pub debug: bool,
    /// The runtime's log messages are copied onto lkinit's stderr (LinuxKit's
    /// `linuxkit.runc_console=1`).
    pub log_to_console: bool,
    /// The caller's deadline for every command (see [`OciRuntime::within`]).
    deadline: Option<Deadline>,
    /// What cuts this container's launch commands short (see [`OciRuntime::cancelled_by`]).
    cancel: Option<Cancel>,
}

/// A runtime process started in the background (`run` in the foreground of the container).
pub struct RuntimeProcess {
    pub waiter: Waiter,
    /// Polls readable once the runtime has exited.
    pub pidfd: Option<PidFd>,
    op: &'static str,
    log: PathBuf,
    bin: String,
    _note: CallNote,
}

impl RuntimeProcess {
    /// Turns the runtime's exit into the container's status, or the runtime's own error.
    pub fn result(&self, status: ExitStatus) -> Result<ExitStatus, RuntimeError> {
        if status.success() {
            return Ok(status);
        }
        // `run` reports a container killed by a signal as 128 + N; a signal here killed the
        // runtime itself, and the container may still run (see container::Running::finish).
        if let ExitStatus::Signal(sig) = status {
            return Err(RuntimeError::Killed {
                bin: self.bin.clone(),
                op: self.op,
                signal: crate::process::signal_name(sig),
            });
        }
        match runtime_log::runtime_log_error(&self.log) {
            Some(message) => Err(RuntimeError::Failed {
                bin: self.bin.clone(),
                op: self.op,
                message,
            }),
            // `run` exits with the container's code (128 + signal for a signalled one, which
            // is the number lkinit reports either way).
            None if self.op == "run" => Ok(status),
            None => Err(RuntimeError::Failed {
                bin: self.bin.clone(),
                op: self.op,
                message: status.to_string(),
            }),
        }
    }
}

#[cfg(test)]
impl RuntimeProcess {
    /// A foreground `run` that is no process, for tests of what holds one.
    pub(crate) fn unstarted(bin: &str, waiter: Waiter) -> RuntimeProcess {
        RuntimeProcess {
            waiter,
            pidfd: None,
            op: "run",
            log: PathBuf::new(),
            bin: bin.to_string(),
            _note: CallNote::none(),
        }
    }
}

impl OciRuntime {
    pub fn new(bin: impl Into<String>, root: Option<PathBuf>, log_dir: PathBuf) -> Self {
        OciRuntime {
            bin: bin.into(),
            root,
            log_dir,
            calls_dir: None,
            debug: false,
            log_to_console: false,
            deadline: None,
            cancel: None,
        }
    }

    /// This runtime with every command bounded by `deadline` too (a bundle's `--timeout`):
    /// `create`, `start` and `run` end by it, the commands that clean up get what is left
    /// of it but at least [`limits::CLEANUP_FLOOR`] (see [`limits::own_limit`] for the bounds
    /// without one).
    pub fn within(&self, deadline: Option<Deadline>) -> OciRuntime {
        OciRuntime {
            deadline,
            ..self.clone()
        }
    }

    /// This runtime with its launch commands cut short when `cancel` fires.
    pub fn cancelled_by(&self, cancel: &Cancel) -> OciRuntime {
        OciRuntime {
            cancel: Some(cancel.clone()),
            ..self.clone()
        }
    }

    /// `create`: the container exists, its init waits for `start`. Returns the init's pid.
    /// The runtime hands `stdio` to the container, so whoever reads it must be reading
    /// already. A runtime that hangs past the bound (in a hook) is killed with what it
    /// started, and what it had made of the container is cleared.
    pub fn create(
        &self,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<i32, RuntimeError> {
        let bound = self.bound("create");
        let p = self.container_op("create", name, bundle, pid_file, stdio)?;
        let r = self
            .wait_bounded("create", &p.waiter, p.pidfd.as_ref(), bound)
            .and_then(|st| p.result(st));
        // A short call leaves nothing behind: what matters is in the error.
        self.release_log(name, "create", &p.log);
        if let Err(e) = &r
            && e.was_killed()
        {
            self.clear_killed_create(name);
        }
        r?;
        read_pid_file(pid_file)
    }

    /// Clears what a `create` killed by lkinit made: the container, once the runtime had
    /// saved it, or else the state directory it was making.
    fn clear_killed_create(&self, name: &str) {
        if let Err(e) = self.delete(name, true) {
            log::debug!("{name}: {}", crate::error_chain(&e));
        }
        if let Ok(None) = self.state(name)
            && let Err(e) = self.clear_half_made(name)
        {
            log::warn!("{name}: {}", crate::error_chain(&e));
        }
    }

    /// `run` with the runtime in the foreground: it creates, starts, waits for and deletes
    /// the container, and exits with its status.
    pub fn run(
        &self,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<RuntimeProcess, RuntimeError> {
        self.container_op("run", name, bundle, pid_file, stdio)
    }

    pub fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(name, "start", &[name]).map(drop)
    }

    /// Sends `signal` (a name such as `KILL`) to the container's init, or to all of its
    /// processes with `all`.
    pub fn kill(&self, name: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        let mut args = Vec::new();
        if all {
            args.push("--all");
        }
        args.extend([name, signal]);
        self.call(name, "kill", &args).map(drop)
    }

    /// `delete`. One killed at its bound (a poststop hook that does not return) is still
    /// reported, but what it left is cleared: crun keeps the state directory of a stopped
    /// container until its poststop hooks are done, and a second `delete` would only run
    /// them again.
    pub fn delete(&self, name: &str, force: bool) -> Result<(), RuntimeError> {
        let args: &[&str] = if force { &["--force", name] } else { &[name] };
        let r = self.call(name, "delete", args).map(drop);
        if let Err(e) = &r
            && e.was_killed()
        {
            match self.state(name) {
                Ok(None) => {}
                Ok(Some(st)) if st.status == "stopped" => {
                    let why = "left by a `delete` that was killed in its poststop hooks";
                    if let Err(e) = self.remove_state_dir(name, why) {
                        log::warn!("{name}: {}", crate::error_chain(&e));
                    }
                }
                Ok(Some(st)) => log::warn!(
                    "{name}: `{} delete` was killed and left the container {}",
                    self.bin,
                    st.status
                ),
                Err(e) => log::warn!("{name}: {}", crate::error_chain(&e)),
            }
        }
        r
    }

    /// The container's state, or None when the runtime does not know it.
    pub fn state(&self, name: &str) -> Result<Option<State>, RuntimeError> {
        match self.call(name, "state", &[name]) {
            Ok(out) => serde_json::from_str(&out)
                .map(Some)
                .map_err(|e| RuntimeError::Failed {
                    bin: self.bin.clone(),
                    op: "state",
                    message: format!("unreadable state: {e}"),
                }),
            Err(RuntimeError::Failed { message, .. })
                if message.contains("does not exist") || message.contains("not exist") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
