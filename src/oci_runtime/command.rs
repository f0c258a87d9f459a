//! How one runtime command runs: the global flags and its log, started through the reaper
//! (noted, and registered with the launch's cancel), waited for within its bound and
//! killed with what it started past it, its output read meanwhile.

use super::error::secs;
use super::leftovers::LEFTOVER_WAIT;
use super::limits::{bound_of, is_cleanup};
use super::runtime_log::runtime_log_error;
use super::{Cancel, ContainerStdio, OciRuntime, RuntimeError, RuntimeProcess};
use crate::process::{self, ExitStatus, Io, PidFd, Spawn, Spawned, Waiter};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running runtime command: its note (a file named by its pid, holding its start time)
/// and its place in a [`Cancel`]. Both go when the command has ended (dropped after the
/// wait).
pub(super) struct CallNote {
    path: Option<PathBuf>,
    cancel: Option<(Cancel, i32)>,
}

#[cfg(test)]
impl CallNote {
    /// The note of a command that was never started.
    pub(super) fn none() -> CallNote {
        CallNote {
            path: None,
            cancel: None,
        }
    }
}

impl Drop for CallNote {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
        if let Some((c, pid)) = &self.cancel {
            c.unregister(*pid);
        }
    }
}

impl OciRuntime {
    pub(super) fn bound(&self, op: &str) -> Option<(Instant, Duration)> {
        bound_of(op, self.deadline, Instant::now())
    }

    /// A command with the global flags; the log file is emptied so only this call's
    /// messages are read back.
    fn command(&self, name: &str, op: &str) -> Result<(Spawn<'static>, PathBuf), RuntimeError> {
        let log = self.log_path(name, op);
        write_making_dir(&self.log_dir, &log, b"")
            .map_err(|(path, source)| RuntimeError::Io { path, source })?;
        let mut cmd = Spawn::new(&self.bin);
        // What started lkinit (systemd, a socket-activating parent) is not the containers'
        // business: runc hands a NOTIFY_SOCKET on to the container, mounted inside.
        for var in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ] {
            cmd.env_remove(var);
        }
        if self.debug {
            cmd.arg("--debug");
        }
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("--log")
            .arg(&log)
            .args(["--log-format", "json", op]);
        Ok((cmd, log))
    }

    /// The cancel that applies to command `op`: launch commands only.
    fn cancel_for(&self, op: &str) -> Option<&Cancel> {
        self.cancel.as_ref().filter(|_| !is_cleanup(op))
    }

    /// Starts runtime command `op` whose log is `log`; the log goes if the runtime never
    /// ran. A launch command whose launch was cancelled is not started, or killed at once.
    fn spawn(
        &self,
        op: &'static str,
        cmd: &Spawn<'_>,
        log: &Path,
    ) -> Result<(Spawned, CallNote), RuntimeError> {
        let cancelled = || RuntimeError::Cancelled {
            bin: self.bin.clone(),
            op,
        };
        let cancel = self.cancel_for(op);
        if cancel.is_some_and(Cancel::fired) {
            return Err(cancelled());
        }
        let child = process::reaper().start(cmd).map_err(|source| {
            let _ = std::fs::remove_file(log);
            RuntimeError::Spawn {
                bin: self.bin.clone(),
                source,
            }
        })?;
        let pid = child.waiter.pid();
        let mut note = CallNote {
            path: self.note_call(pid),
            cancel: None,
        };
        if let (Some(c), Some(fd)) = (cancel, &child.pidfd) {
            if c.register(fd) {
                note.cancel = Some((c.clone(), pid));
            } else {
                // Fired while it started: it goes the way it would have gone a moment later.
                process::kill_tree_of(fd);
            }
        }
        Ok((child, note))
    }

    /// Waits for command `op` within its bound. One still running then is killed with
    /// everything it started; one killed by a [`Cancel`] is reported so.
    pub(super) fn wait_bounded(
        &self,
        op: &'static str,
        waiter: &Waiter,
        pidfd: Option<&PidFd>,
        bound: Option<(Instant, Duration)>,
    ) -> Result<ExitStatus, RuntimeError> {
        let st = match bound {
            None => waiter.wait(),
            Some((until, limit)) => {
                match waiter.wait_timeout(until.saturating_duration_since(Instant::now())) {
                    Some(st) => st,
                    None => {
                        log::warn!(
                            "`{} {op}` (pid {}) still runs after {}: killing it and what it \
                             started",
                            self.bin,
                            waiter.pid(),
                            secs(limit)
                        );
                        kill_call(waiter, pidfd);
                        return Err(RuntimeError::TimedOut {
                            bin: self.bin.clone(),
                            op,
                            limit,
                        });
                    }
                }
            }
        };
        if !st.success() && self.cancel_for(op).is_some_and(Cancel::fired) {
            return Err(RuntimeError::Cancelled {
                bin: self.bin.clone(),
                op,
            });
        }
        Ok(st)
    }

    /// Runs a short runtime command to completion within its bound, collecting stdout;
    /// failures carry the runtime's own message.
    pub(super) fn call(
        &self,
        name: &str,
        op: &'static str,
        args: &[&str],
    ) -> Result<String, RuntimeError> {
        let (mut cmd, log) = self.command(name, op)?;
        cmd.args(args).stdout(Io::Piped).stderr(Io::Piped);
        let bound = self.bound(op);
        let (child, note) = self.spawn(op, &cmd, &log)?;
        let (out, stderr) = read_both(child.stdout, child.stderr, bound.map(|b| b.0));
        let status = self.wait_bounded(op, &child.waiter, child.pidfd.as_ref(), bound);
        drop(note);
        let logged = runtime_log_error(&log);
        // Short calls leave nothing behind: what matters is in the error.
        self.release_log(name, op, &log);
        let status = status?;
        if status.success() {
            return Ok(out);
        }
        let message = logged
            .or_else(|| Some(stderr.trim().to_string()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| status.to_string());
        Err(RuntimeError::Failed {
            bin: self.bin.clone(),
            op,
            message,
        })
    }

    /// Starts `create` or `run` of `bundle` with the container's stdio.
    pub(super) fn container_op(
        &self,
        op: &'static str,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<RuntimeProcess, RuntimeError> {
        clear_pid_file(pid_file);
        let (cmd, log) = self.command(name, op)?;
        // Narrowed from 'static: it borrows the container's stdio below.
        let mut cmd: Spawn<'_> = cmd;
        cmd.arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if !stdio.extra.is_empty() {
            cmd.arg("--preserve-fds").arg(stdio.extra.len().to_string());
        }
        cmd.arg(name);
        set_stdio(&mut cmd, stdio);
        let (child, note) = self.spawn(op, &cmd, &log)?;
        Ok(RuntimeProcess {
            waiter: child.waiter,
            pidfd: child.pidfd,
            op,
            log,
            bin: self.bin.clone(),
            _note: note,
        })
    }
}

/// The container's stdio, shared with the runtime (which hands it on to the container).
fn set_stdio<'a>(cmd: &mut Spawn<'a>, stdio: &'a ContainerStdio) {
    cmd.stdin(Io::Null)
        .stdout(Io::Fd(stdio.stdout.as_fd()))
        .stderr(Io::Fd(stdio.stderr.as_fd()));
    for fd in &stdio.extra {
        cmd.pass_fd(fd.as_fd());
    }
}

/// Kills a runtime command that outlived its bound, with everything it started, and waits
/// for it to end.
fn kill_call(waiter: &Waiter, pidfd: Option<&PidFd>) {
    match pidfd {
        Some(fd) => process::kill_tree_of(fd),
        None => process::kill_tree(waiter.pid()),
    }
    if waiter.wait_timeout(LEFTOVER_WAIT).is_none() {
        log::error!("runtime command {} survives SIGKILL", waiter.pid());
    }
}

/// Reads two pipes to their end in this thread, whichever has data first, or until `until`
/// (a hook that keeps them open must not hold the caller past the command's bound).
fn read_both(a: Option<OwnedFd>, b: Option<OwnedFd>, until: Option<Instant>) -> (String, String) {
    let mut bufs = [Vec::new(), Vec::new()];
    let mut open: Vec<(usize, File)> = [a, b]
        .into_iter()
        .enumerate()
        .filter_map(|(i, fd)| fd.map(|fd| (i, File::from(fd))))
        .collect();
    let mut chunk = [0u8; 4096];
    crate::logs::pump_pipes(&mut open, None, until, &mut chunk, |i, data| {
        bufs[i].extend_from_slice(data)
    });
    let [a, b] = bufs;
    (
        String::from_utf8_lossy(&a).into_owned(),
        String::from_utf8_lossy(&b).into_owned(),
    )
}

/// Writes `data` to `path` in `dir`, making `dir` on first use only (one syscall a call,
/// not three); an error names the path that failed.
pub(super) fn write_making_dir(
    dir: &Path,
    path: &Path,
    data: &[u8],
) -> Result<(), (PathBuf, io::Error)> {
    match std::fs::write(path, data) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
            std::fs::write(path, data).map_err(|e| (path.to_path_buf(), e))
        }
        r => r.map_err(|e| (path.to_path_buf(), e)),
    }
}

/// Removes a pid file an earlier attempt left, and the file runc writes it through
/// (`.NAME` beside it, opened exclusively): left by a runc killed mid-write, it would fail
/// every later `create` with "file exists".
fn clear_pid_file(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(name) = path.file_name() {
        let mut temp = std::ffi::OsString::from(".");
        temp.push(name);
        let _ = std::fs::remove_file(path.with_file_name(temp));
    }
}

pub(super) fn read_pid_file(path: &Path) -> Result<i32, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::PidFile {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse().map_err(|_| RuntimeError::PidFile {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a pid: `{}`", text.trim()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once its launch is cancelled, a launch command is not even started (the commands
    /// that clean up are not cut short: tests/hostile_supervisor.rs).
    #[test]
    fn a_cancelled_launch_starts_no_command() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        let bin = d.path().join("runtime");
        std::fs::write(&bin, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let cancel = Cancel::new();
        let rt = OciRuntime::new(bin.to_string_lossy(), None, d.path().join("logs"))
            .cancelled_by(&cancel);
        cancel.fire();
        assert!(matches!(
            rt.start("x"),
            Err(RuntimeError::Cancelled { op: "start", .. })
        ));
        assert!(matches!(
            rt.create(
                "x",
                d.path(),
                &d.path().join("pid"),
                &ContainerStdio {
                    stdout: File::open("/dev/null").unwrap().into(),
                    stderr: File::open("/dev/null").unwrap().into(),
                    extra: Vec::new(),
                }
            ),
            Err(RuntimeError::Cancelled { op: "create", .. })
        ));
        assert!(!marker.exists());
    }
}
