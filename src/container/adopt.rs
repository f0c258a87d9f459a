//! A running container taken over from an earlier supervisor that was killed: found by the
//! record it left (its init's pid and start time), its end seen through a pidfd.

use super::replay;
use super::running::{kill_remaining, signal_init};
use crate::oci_runtime::{OciRuntime, RuntimeError};
use crate::process::{self, PidFd};
use crate::undo::{PlannedStep, UndoFailures};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a supervisor started again after a crash needs to find, stop and clean up a
/// container it did not start: the init, its cgroup, and the cleanup as data (the undo
/// closures died with the process that recorded them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Handover {
    pub name: String,
    pub pid: i32,
    pub start_time: Option<u64>,
    pub cgroup_procs: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    pub cleanup: Vec<PlannedStep>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdoptError {
    #[error("its init (pid {0}) has exited")]
    Gone(i32),
    #[error("pid {0} is another process now")]
    Reused(i32),
    #[error("the runtime reports it {0}")]
    NotRunning(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A running container taken over from an earlier supervisor. Its init is not our child:
/// its end is seen through the pidfd, and its exit status is not ours to know.
pub(crate) struct Adopted {
    pub(crate) name: String,
    pid: i32,
    pidfd: PidFd,
    handover: Handover,
}

/// Takes over the container `h` describes, if its init is still the process that was
/// recorded and the runtime still runs it.
pub(crate) fn adopt(rt: &OciRuntime, h: Handover) -> Result<Adopted, (AdoptError, Handover)> {
    let pid = h.pid;
    // The pidfd first: once it is open the pid cannot be reused under it.
    let pidfd = match PidFd::open(pid) {
        Ok(fd) => fd,
        Err(_) => return Err((AdoptError::Gone(pid), h)),
    };
    if pidfd.has_exited() {
        return Err((AdoptError::Gone(pid), h));
    }
    if h.start_time.is_none() || process::start_time(pid) != h.start_time {
        return Err((AdoptError::Reused(pid), h));
    }
    match rt.state(&h.name) {
        Ok(Some(st)) if st.pid == pid && (st.status == "running" || st.status == "paused") => {}
        Ok(Some(st)) => return Err((AdoptError::NotRunning(st.status), h)),
        Ok(None) => return Err((AdoptError::NotRunning("unknown".into()), h)),
        Err(e) => return Err((AdoptError::Runtime(e), h)),
    }
    Ok(Adopted {
        name: h.name.clone(),
        pid,
        pidfd,
        handover: h,
    })
}

impl Adopted {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Polls readable once the init has exited.
    pub(crate) fn pidfd(&self) -> &PidFd {
        &self.pidfd
    }

    pub(crate) fn terminate(&self, rt: &OciRuntime) {
        signal_init(rt, &self.name, Some(&self.pidfd), Signal::SIGTERM);
    }

    /// Kills every process of the container (see [`Running::kill`]).
    pub(crate) fn kill(&self, rt: &OciRuntime) {
        if let Err(e) = rt.kill(&self.name, "KILL", true) {
            log::debug!("{}: {}", self.name, crate::error_chain(&e));
        }
        let _ = self.pidfd.signal(Signal::SIGKILL);
    }

    pub(crate) fn kill_remaining(&self, rt: &OciRuntime) -> Result<(), Vec<i32>> {
        kill_remaining(rt, &self.name, self.handover.cgroup_procs.as_deref())
    }

    pub(crate) fn handover(&self) -> &Handover {
        &self.handover
    }

    /// After the end: the recorded cleanup, as [`Running::finish`] would have done it.
    pub(crate) fn finish(self, rt: &OciRuntime) -> UndoFailures {
        let failures = replay(rt, &self.handover.cleanup);
        if let Some(p) = &self.handover.pid_file {
            let _ = std::fs::remove_file(p);
        }
        failures
    }
}
