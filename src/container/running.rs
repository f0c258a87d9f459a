//! A started container until its end: waiting for it, signalling and killing it, the
//! cleanup after it, and what a later supervisor needs to take it over.

use super::host::Runtime;
use super::{ContainerError, Handover, StepError};
use crate::cgroups;
use crate::oci_runtime::{OciRuntime, RuntimeProcess};
use crate::process::{self, ExitStatus, PidFd, Waiter};
use crate::undo::{Undo, UndoFailures};
use nix::sys::signal::Signal;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) enum Exit {
    /// A runtime `run` in the foreground; its exit is the container's.
    Runtime(RuntimeProcess),
    /// The container's init, our child since the runtime that made it exited.
    Init(Waiter),
}

/// A started container and what has to be undone when it ends.
pub(crate) struct Running {
    pub(crate) name: String,
    /// The container's init; None while a foreground runtime has not written it yet.
    pub(super) pid: Option<i32>,
    pub(super) pidfd: Option<PidFd>,
    pub(super) exit: Exit,
    pub(super) undo: Undo,
    pub(super) pid_file: PathBuf,
    /// Where the container's processes are listed (Detached containers).
    pub(super) cgroup_procs: Option<PathBuf>,
    /// config.json's `linux.cgroupsPath` and the cgroup root, for what a runtime killed
    /// half way leaves.
    pub(super) cgroups_path: Option<String>,
    pub(super) cgroup_root: PathBuf,
    /// The runtime was killed by lkinit (it hung).
    pub(super) runtime_killed: bool,
}

impl Running {
    /// The container's init pid, once known.
    pub(crate) fn pid(&mut self) -> Option<i32> {
        if self.pid.is_none() {
            self.pid = std::fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        }
        self.pid
    }

    fn status(&self, st: ExitStatus) -> Result<ExitStatus, ContainerError> {
        match &self.exit {
            Exit::Runtime(p) => p.result(st).map_err(|e| StepError::Run(e).into()),
            Exit::Init(_) => Ok(st),
        }
    }

    fn waiter(&self) -> &Waiter {
        match &self.exit {
            Exit::Runtime(p) => &p.waiter,
            Exit::Init(w) => w,
        }
    }

    /// Polls readable once the process whose end is the container's end has exited (the
    /// foreground runtime, or the init); None where the kernel gave no pidfd.
    pub(crate) fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        self.exit_pidfd().map(AsFd::as_fd)
    }

    fn exit_pidfd(&self) -> Option<&PidFd> {
        match &self.exit {
            Exit::Runtime(p) => p.pidfd.as_ref(),
            Exit::Init(_) => self.pidfd.as_ref(),
        }
    }

    /// Waits for the container to end; an error is the runtime's own failure.
    pub(crate) fn wait(&self) -> Result<ExitStatus, ContainerError> {
        self.status(self.waiter().wait())
    }

    /// The status once `exit_fd` has turned readable, without waiting for the reaper
    /// thread to hand it over (one thread switch less per container).
    pub(crate) fn ended(&self) -> Result<ExitStatus, ContainerError> {
        match self.exit_pidfd().and_then(PidFd::peek_exit) {
            Some(st) => self.status(st),
            None => self.wait(),
        }
    }

    /// Like `wait`, giving up after `timeout` (None: still running).
    pub(crate) fn wait_timeout(
        &self,
        timeout: Duration,
    ) -> Option<Result<ExitStatus, ContainerError>> {
        self.waiter()
            .wait_timeout(timeout)
            .map(|st| self.status(st))
    }

    /// Kills a foreground runtime that did not end with its container (it hangs in a hook),
    /// with everything it started; `finish` then deletes what it left.
    pub(crate) fn kill_runtime(&mut self) {
        if let Exit::Runtime(p) = &self.exit {
            process::kill_tree(p.waiter.pid());
            self.runtime_killed = true;
        }
    }

    /// Kills every process of the container: through the runtime (its whole cgroup), and
    /// the init directly through its pidfd in case the runtime cannot.
    pub(crate) fn kill(&mut self, rt: &OciRuntime) {
        if let Err(e) = rt.kill(&self.name, "KILL", true) {
            log::debug!("{}: {}", self.name, crate::error_chain(&e));
        }
        if self.pidfd.is_none()
            && let Some(pid) = self.pid()
        {
            self.pidfd = PidFd::open(pid).ok();
        }
        if let Some(fd) = &self.pidfd {
            let _ = fd.signal(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// After the end: deletes the container and undoes what belongs to it, keeping what is
    /// meant to outlive it (absolute mounts, cgroups, namespace binds).
    pub(crate) fn finish(self, rt: &OciRuntime) -> UndoFailures {
        self.end(rt, false)
    }

    /// After a foreground `run` that the runtime itself failed (it could not create or
    /// start the container): like a launch that failed, everything done for the container
    /// is undone, what would have outlived it too.
    pub(crate) fn finish_failed(self, rt: &OciRuntime) -> UndoFailures {
        self.end(rt, true)
    }

    /// The end, whatever runtime carries it out.
    pub(super) fn end(self, rt: &impl Runtime, failed: bool) -> UndoFailures {
        let mut failures = UndoFailures::default();
        // A foreground `run` deletes its container as it ends; one still there was left by
        // a runtime that died under it, running: it goes before its rootfs does.
        if matches!(self.exit, Exit::Runtime(_)) && rt.may_exist(&self.name) {
            log::warn!(
                "{}: `{} run` ended and left its container behind; killing and deleting it",
                self.name,
                rt.bin()
            );
            if let Err(e) = rt.kill(&self.name, "KILL", true) {
                log::debug!("{}: {}", self.name, crate::error_chain(&e));
            }
            if let Err(e) = rt.delete(&self.name, true) {
                failures.0.push(format!(
                    "{} delete --force {}: {}",
                    rt.bin(),
                    self.name,
                    crate::error_chain(&e)
                ));
            }
        }
        // Killed before it saved the container's state, the runtime left a cgroup that no
        // `delete` knows of.
        if self.runtime_killed
            && let Some(cg) = &self.cgroups_path
        {
            failures
                .0
                .extend(cgroups::remove_container_cgroup(&self.cgroup_root, cg));
        }
        let undone = if failed {
            self.undo.rollback()
        } else {
            self.undo.cleanup()
        };
        failures.0.extend(undone.0);
        if matches!(self.exit, Exit::Runtime(_)) {
            rt.forget_logs(&self.name);
        }
        let _ = std::fs::remove_file(&self.pid_file);
        failures
    }

    /// A claim on the init's exit status, for a caller that waits elsewhere.
    pub(crate) fn exit_waiter(&self) -> Waiter {
        self.waiter().clone()
    }

    /// Asks the container to stop: SIGTERM to its init through the runtime (the pidfd when
    /// the runtime cannot).
    pub(crate) fn terminate(&mut self, rt: &OciRuntime) {
        if self.pidfd.is_none()
            && let Some(pid) = self.pid()
        {
            self.pidfd = PidFd::open(pid).ok();
        }
        signal_init(rt, &self.name, self.pidfd.as_ref(), Signal::SIGTERM);
    }

    /// After the init ended: see [`kill_remaining`].
    pub(crate) fn kill_remaining(&self, rt: &OciRuntime) -> Result<(), Vec<i32>> {
        kill_remaining(rt, &self.name, self.cgroup_procs.as_deref())
    }

    /// What a later supervisor needs to take this container over (None before the init's
    /// pid is known).
    pub(crate) fn handover(&mut self) -> Option<Handover> {
        let pid = self.pid()?;
        Some(Handover {
            name: self.name.clone(),
            pid,
            start_time: process::start_time(pid),
            cgroup_procs: self.cgroup_procs.clone(),
            pid_file: Some(self.pid_file.clone()),
            cleanup: self.undo.plan(),
        })
    }
}

pub(super) fn signal_init(rt: &OciRuntime, name: &str, pidfd: Option<&PidFd>, sig: Signal) {
    let short = sig.as_str().trim_start_matches("SIG");
    if let Err(e) = rt.kill(name, short, false) {
        log::debug!("{name}: {}", crate::error_chain(&e));
        if let Some(fd) = pidfd {
            let _ = fd.signal(sig);
        }
    }
}

/// How long the processes of a container may take to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// After a container's init ended: kills whatever else is left in its cgroup (processes of
/// a container that shares the host's pid namespace outlive its init) and waits until the
/// cgroup is empty. Returns the pids still there after [`KILL_WAIT`]. Without a known
/// cgroup, the runtime's `kill --all` is all there is (and `delete --force` after it).
pub(crate) fn kill_remaining(
    rt: &OciRuntime,
    name: &str,
    procs: Option<&Path>,
) -> Result<(), Vec<i32>> {
    if procs.is_some_and(|p| cgroups::members(p).is_empty()) {
        return Ok(());
    }
    if let Err(e) = rt.kill(name, "KILL", true) {
        log::debug!("{name}: {}", crate::error_chain(&e));
    }
    let Some(procs) = procs else {
        return Ok(());
    };
    let start = Instant::now();
    let mut forced = false;
    loop {
        let left = cgroups::members(procs);
        if left.is_empty() {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited > KILL_WAIT {
            return Err(left);
        }
        // The runtime signals what it saw; whatever forked after that is killed here.
        if !forced && waited > Duration::from_millis(500) {
            cgroups::kill_members(procs);
            forced = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
