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

use crate::process::{self, ExitStatus, Io, PidFd, Spawn, Spawned, Waiter};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a bundle's time is up, and how long it had (for the message).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// How long a runtime command may take when the caller sets no deadline. `create` and
/// `start` run the hooks before the container's process (createRuntime, createContainer,
/// prestart, startContainer, and poststart: runc 1.1 runs those in `create`), `delete` the
/// poststop hooks; `kill` and `state` run none, so their bound only catches a wedged
/// runtime. `run` has none: it lasts as long as its container.
pub fn own_limit(op: &str) -> Option<Duration> {
    match op {
        "create" | "start" => Some(Duration::from_secs(60)),
        "delete" => Some(Duration::from_secs(10)),
        "kill" | "state" => Some(Duration::from_secs(5)),
        _ => None,
    }
}

/// The commands that clean up after a container (or look at it). Under a caller's
/// deadline they still get [`CLEANUP_FLOOR`]: a bundle whose time is up must still be
/// killed and deleted, which a deadline already past would not allow.
fn is_cleanup(op: &str) -> bool {
    matches!(op, "kill" | "delete" | "state")
}

/// What the cleanup commands get at least, once a caller's deadline has passed.
pub const CLEANUP_FLOOR: Duration = Duration::from_secs(3);

/// The bound of command `op`: the instant it is killed at, and the limit it is reported
/// with. A caller's deadline replaces a setup command's own limit (`--timeout` is the
/// operator's word on how long a bundle may take); a cleanup command keeps its own limit
/// and gets what is left of the deadline, but never less than [`CLEANUP_FLOOR`].
fn bound_of(op: &str, deadline: Option<Deadline>, now: Instant) -> Option<(Instant, Duration)> {
    let own = own_limit(op);
    match deadline {
        Some(d) if is_cleanup(op) => {
            let left = d.at.saturating_duration_since(now).max(CLEANUP_FLOOR);
            let limit = own.map_or(left, |o| o.min(left));
            Some((now + limit, limit))
        }
        Some(d) => Some((d.at, d.limit)),
        None => own.map(|o| (now + o, o)),
    }
}

/// Cuts short the commands that make and start one container (`create`, `start`, `run`),
/// in flight and to come: for a launch that is no longer wanted (its service is being
/// stopped) while a hook holds it up. The commands that clean up are not cut short; they
/// are bounded anyway.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Mutex<CancelState>>);

#[derive(Default)]
struct CancelState {
    fired: bool,
    /// The launch commands running now, pinned by their pidfds.
    running: Vec<PidFd>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cancel(fired: {})", self.fired())
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills the launch commands running now (with their hooks and the container init
    /// they were making) and refuses the ones to come. Blocks for the walk of their
    /// process trees only.
    pub fn fire(&self) {
        let running = {
            let mut st = self.state();
            st.fired = true;
            std::mem::take(&mut st.running)
        };
        for fd in &running {
            process::kill_tree_of(fd);
        }
    }

    pub fn fired(&self) -> bool {
        self.state().fired
    }

    /// Registers a launch command that has just started; false (and nothing registered)
    /// once fired: the caller kills it.
    fn register(&self, fd: &PidFd) -> bool {
        let mut st = self.state();
        if st.fired {
            return false;
        }
        if let Ok(fd) = fd.try_clone() {
            st.running.push(fd);
        }
        true
    }

    fn unregister(&self, pid: i32) {
        self.state().running.retain(|fd| fd.pid() != pid);
    }
}

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
fn secs(d: Duration) -> String {
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

/// What the container's stdio is connected to.
pub struct ContainerStdio {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

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

/// A running runtime command: its note (a file named by its pid, holding its start time)
/// and its place in a [`Cancel`]. Both go when the command has ended (dropped after the
/// wait).
struct CallNote {
    path: Option<PathBuf>,
    cancel: Option<(Cancel, i32)>,
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
                signal: process::signal_name(sig),
            });
        }
        match runtime_log_error(&self.log) {
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

/// Every message of a runtime's JSON log as (level, message); a line that is not JSON is
/// its own message.
fn runtime_log_messages(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => {
                    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
                    (field("level").to_string(), field("msg").to_string())
                }
                Err(_) => (String::new(), line.to_string()),
            },
        )
        .collect()
}

/// The last error the runtime logged, if any.
fn runtime_log_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut last = None;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            let level = v.get("level").and_then(|l| l.as_str()).unwrap_or("");
            if matches!(level, "error" | "fatal" | "panic") {
                last = v.get("msg").and_then(|m| m.as_str()).map(str::to_string);
            }
        }
    }
    last
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
    /// of it but at least [`CLEANUP_FLOOR`] (see [`own_limit`] for the bounds without one).
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

    fn bound(&self, op: &str) -> Option<(Instant, Duration)> {
        bound_of(op, self.deadline, Instant::now())
    }

    /// Notes every runtime command in flight in `dir`, so that whoever takes over after
    /// lkinit is killed can end them with [`OciRuntime::end_leftover_calls`]: an orphaned
    /// `create` would otherwise go on beside the next attempt at the same container (and
    /// write the same pid file).
    pub fn note_calls_in(&mut self, dir: PathBuf) {
        self.calls_dir = Some(dir);
    }

    fn note_call(&self, pid: i32) -> Option<PathBuf> {
        let dir = self.calls_dir.as_ref()?;
        // A command that has ended (and been reaped) already needs no note.
        let start = process::start_time(pid)?;
        let path = dir.join(pid.to_string());
        match write_making_dir(dir, &path, start.to_string().as_bytes()) {
            Ok(()) => Some(path),
            Err((p, e)) => {
                log::warn!("cannot note runtime command {pid}: {}: {e}", p.display());
                None
            }
        }
    }

    /// Kills the runtime commands a killed predecessor left running (each with the hooks
    /// and container processes it started) and waits for them to end, before anything
    /// is done again to their containers.
    pub fn end_leftover_calls(&self) {
        let Some(dir) = &self.calls_dir else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if let Some(fd) = leftover(&path) {
                let pid = fd.pid();
                // Empty for a command that is ending.
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default();
                let cmd = cmd.trim_end();
                let sep = if cmd.is_empty() { "" } else { ": " };
                log::warn!(
                    "a runtime command of the last supervisor was still running \
                     (pid {pid}{sep}{cmd}); killing it and what it started"
                );
                process::kill_tree_of(&fd);
                if !fd.wait_exited(LEFTOVER_WAIT) {
                    log::error!("runtime command {pid} survives SIGKILL");
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }

    /// One log per container and operation: a `kill` while `run` still runs must not
    /// truncate the log `run` is writing.
    fn log_path(&self, name: &str, op: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.{op}.json"))
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
    fn wait_bounded(
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
    fn call(&self, name: &str, op: &'static str, args: &[&str]) -> Result<String, RuntimeError> {
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

    /// Starts `create` or `run` of `bundle` with the container's stdio.
    fn container_op(
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
            .arg(pid_file)
            .arg(name);
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

    /// The runtime's state directory: `--root`, or the default of the runtimes lkinit knows.
    pub fn state_root(&self) -> Option<PathBuf> {
        if let Some(r) = &self.root {
            return Some(r.clone());
        }
        let base = Path::new(&self.bin)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        match base.as_str() {
            "runc" => Some(PathBuf::from("/run/runc")),
            "crun" => Some(PathBuf::from("/run/crun")),
            _ => None,
        }
    }

    /// Removes what a runtime killed during `create` left of `name` in its state directory
    /// (mounts included), once the runtime has said it does not know the container (it was
    /// killed before saving its state): runc refuses every later `create` of the name
    /// while the directory is there.
    pub fn clear_half_made(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove_state_dir(name, "left half made by a runtime that was killed")
    }

    /// Removes the runtime's state directory of `name`, and any mount in it, behind the
    /// runtime's back: only for a container whose processes are gone (see the callers).
    /// `why` says where it comes from, in the warning.
    fn remove_state_dir(&self, name: &str, why: &str) -> Result<(), RuntimeError> {
        let Some(dir) = self.state_root().map(|r| r.join(name)) else {
            return Ok(());
        };
        // runc mounts a copy of itself there for a moment (cloned_binary.c); a runc killed
        // meanwhile leaves the mount, and the directory cannot go while it is there.
        for m in crate::mountinfo::under(&crate::mountinfo::read(), &dir) {
            let flags = nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW;
            if let Err(e) = nix::mount::umount2(&m, flags) {
                log::debug!("{name}: cannot unmount {}: {e}", m.display());
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                log::warn!("{name}: removing {}, {why}", dir.display());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io { path: dir, source }),
        }
    }

    /// Whether a container of that name may exist already (one stat, no process): `run`
    /// reports a clash only when it has ended, too late to clear it and retry.
    pub fn may_exist(&self, name: &str) -> bool {
        self.state_root().is_some_and(|r| r.join(name).exists())
    }

    /// Removes the runtime's log files of a container that is gone (the other calls remove
    /// their own as they end).
    pub fn forget_logs(&self, name: &str) {
        for op in ["create", "run"] {
            self.release_log(name, op, &self.log_path(name, op));
        }
    }

    /// A runtime call's log once it is done with: its messages onto stderr when asked, then
    /// removed, unless debugging keeps it for reading.
    fn release_log(&self, name: &str, op: &str, log: &Path) {
        if self.log_to_console
            && let Ok(text) = std::fs::read_to_string(log)
        {
            for (level, msg) in runtime_log_messages(&text) {
                let sep = if level.is_empty() { "" } else { ": " };
                log::info!("{name}: {} {op}: {level}{sep}{msg}", self.bin);
            }
        }
        if !self.debug {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// How long a leftover runtime command may take to die after SIGKILL.
const LEFTOVER_WAIT: Duration = Duration::from_secs(5);

/// The process a note names, pinned by a pidfd, if it still runs: the pid alone may have
/// been reused since, the start time tells.
fn leftover(note: &Path) -> Option<PidFd> {
    let pid: i32 = note.file_name()?.to_str()?.parse().ok()?;
    let start: u64 = std::fs::read_to_string(note).ok()?.trim().parse().ok()?;
    let fd = PidFd::open(pid).ok()?;
    // Checked once the pidfd is open: from then on the pid cannot change hands.
    (process::start_time(pid) == Some(start) && !fd.has_exited()).then_some(fd)
}

/// The container's stdio, shared with the runtime (which hands it on to the container).
fn set_stdio<'a>(cmd: &mut Spawn<'a>, stdio: &'a ContainerStdio) {
    cmd.stdin(Io::Null)
        .stdout(Io::Fd(stdio.stdout.as_fd()))
        .stderr(Io::Fd(stdio.stderr.as_fd()));
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
fn write_making_dir(dir: &Path, path: &Path, data: &[u8]) -> Result<(), (PathBuf, io::Error)> {
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

fn read_pid_file(path: &Path) -> Result<i32, RuntimeError> {
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

    /// A note names its process by pid and start time: a pid that names another process
    /// now (another start time), or none, is not a leftover.
    #[test]
    fn a_note_names_one_process() {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = process::pid_of(&child);
        let note = d.path().join(pid.to_string());
        let start = process::start_time(pid).unwrap();
        std::fs::write(&note, (start + 1).to_string()).unwrap();
        assert!(leftover(&note).is_none());
        std::fs::write(&note, start.to_string()).unwrap();
        assert_eq!(leftover(&note).map(|fd| fd.pid()), Some(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(leftover(&note).is_none());
        std::fs::write(d.path().join("not-a-pid"), "1").unwrap();
        assert!(leftover(&d.path().join("not-a-pid")).is_none());
    }

    /// Without a deadline each command has its own bound (`run` none); under one, the
    /// setup commands end with it, and the cleanup commands keep their own bound, cut to
    /// what is left of the deadline but never below the floor.
    #[test]
    fn bounds() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let limit = |op, d| bound_of(op, d, now).map(|(at, l)| (at - now, l));
        assert_eq!(limit("create", None), Some((s(60), s(60))));
        assert_eq!(limit("start", None), Some((s(60), s(60))));
        assert_eq!(limit("delete", None), Some((s(10), s(10))));
        assert_eq!(limit("kill", None), Some((s(5), s(5))));
        assert_eq!(limit("state", None), Some((s(5), s(5))));
        assert_eq!(limit("run", None), None);
        let d = Deadline {
            at: now + s(120),
            limit: s(120),
        };
        assert_eq!(limit("create", Some(d)), Some((s(120), s(120))));
        assert_eq!(limit("run", Some(d)), Some((s(120), s(120))));
        assert_eq!(limit("delete", Some(d)), Some((s(10), s(10))));
        let d = Deadline {
            at: now + s(4),
            limit: s(5),
        };
        assert_eq!(limit("start", Some(d)), Some((s(4), s(5))));
        assert_eq!(limit("delete", Some(d)), Some((s(4), s(4))));
        assert_eq!(limit("kill", Some(d)), Some((s(4), s(4))));
        let past = Deadline {
            at: now - s(1),
            limit: s(5),
        };
        assert_eq!(
            limit("delete", Some(past)),
            Some((CLEANUP_FLOOR, CLEANUP_FLOOR))
        );
        assert_eq!(limit("create", Some(past)).map(|b| b.1), Some(s(5)));
    }

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
                }
            ),
            Err(RuntimeError::Cancelled { op: "create", .. })
        ));
        assert!(!marker.exists());
    }

    #[test]
    fn log_error_is_the_last_error_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.json");
        std::fs::write(
            &p,
            "{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n{\"level\":\"error\",\"msg\":\"first\"}\n{\"msg\":\"exec: \\\"/x\\\": not found\",\"level\":\"error\"}\n",
        )
        .unwrap();
        assert_eq!(
            runtime_log_error(&p).as_deref(),
            Some("exec: \"/x\": not found")
        );
        std::fs::write(&p, "{\"level\":\"info\",\"msg\":\"fine\"}\n").unwrap();
        assert_eq!(runtime_log_error(&p), None);
    }

    #[test]
    fn log_messages_for_the_console() {
        let text = "{\"level\":\"debug\",\"msg\":\"nsexec started\"}\n\nplain text\n";
        assert_eq!(
            runtime_log_messages(text),
            [
                ("debug".to_string(), "nsexec started".to_string()),
                (String::new(), "plain text".to_string())
            ]
        );
    }
}
