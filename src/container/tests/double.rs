//! The double of the container path's host and runtime: it does nothing but write down
//! what it is asked, in order, and fails where it is told to.

use super::super::host::{Host, Runtime};
use super::super::{Step, StepError};
use crate::bundle::{Bundle, BundleError};
use crate::cgroups::CgroupError;
use crate::logs::ContainerStdio;
use crate::mounts::{MountError, Scratch};
use crate::net::NetError;
use crate::nsbind::NsBindError;
use crate::oci_runtime::{RuntimeError, RuntimeProcess, State};
use crate::process::{PidFd, Waiter};
use crate::rootfs::RootfsError;
use crate::undo::Undo;
use nix::errno::Errno;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The init pid the double's runtime hands out.
pub(super) const PID: i32 = 4242;

/// A host and a runtime that do nothing but write down what they are asked, in order.
#[derive(Clone, Default)]
pub(super) struct Double {
    pub(super) journal: Arc<Mutex<Vec<String>>>,
    /// This step fails, once it has been asked.
    pub(super) fail: Option<Step>,
    /// The failing step did part of its work first (and pushed its undo).
    pub(super) half_way: bool,
    /// What `state` says of a container an earlier run left; its state directory shows.
    pub(super) stale: Option<&'static str>,
    /// `create` answers that the container exists this many times first (a runtime whose
    /// state directory lkinit cannot see).
    pub(super) exists: Arc<Mutex<u32>>,
    /// `create` is killed at its bound.
    pub(super) create_times_out: bool,
    /// The undo step of this name fails.
    pub(super) undo_fails: Option<&'static str>,
    /// A foreground `run`, once it has run, left its container behind.
    pub(super) left_behind: bool,
    pub(super) ran: Arc<AtomicBool>,
}

fn failed(op: &'static str, message: &str) -> RuntimeError {
    RuntimeError::Failed {
        bin: "rt".into(),
        op,
        message: message.into(),
    }
}

impl Double {
    pub(super) fn failing(step: Step) -> Double {
        Double {
            fail: Some(step),
            ..Double::default()
        }
    }

    fn note(&self, what: impl Into<String>) {
        self.journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.into());
    }

    /// What was asked, and forgets it.
    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.journal.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Pushes an undo step `what` that notes `undo WHAT` when it runs.
    fn push(&self, undo: &mut Undo, what: &'static str, persistent: bool) {
        let me = self.clone();
        let action = move || {
            me.note(format!("undo {what}"));
            match me.undo_fails {
                Some(f) if f == what => Err(Errno::EBUSY.into()),
                _ => Ok(()),
            }
        };
        if persistent {
            undo.push_persistent(what, action);
        } else {
            undo.push(what, action);
        }
    }

    /// A host step: noted, then each of its effects done and its undo pushed, persistent or
    /// not; a failing step stops before its effects, or after the first one when it fails
    /// half way.
    fn step(&self, step: Step, undo: &mut Undo, effects: &[(&'static str, bool)]) -> bool {
        self.note(step.as_str());
        let fails = self.fail == Some(step);
        let done = match (fails, self.half_way) {
            (false, _) => effects.len(),
            (true, true) => 1,
            (true, false) => 0,
        };
        for (what, persistent) in &effects[..done] {
            self.push(undo, what, *persistent);
        }
        !fails
    }
}

impl Host for Double {
    fn pid_file(&self, name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("lkinit-unit-{name}-{}.pid", std::process::id()))
    }

    fn cgroup_root(&self) -> &Path {
        Path::new("/nonexistent/cgroup")
    }

    fn prepare_rootfs(
        &self,
        _: &Bundle,
        undo: &mut Undo,
        _: &mut Scratch,
    ) -> Result<(), RootfsError> {
        self.step(Step::Rootfs, undo, &[("rootfs", false)])
            .then_some(())
            .ok_or(RootfsError::Mount {
                what: "rootfs",
                target: PathBuf::from("/rootfs"),
                source: Errno::EPERM,
            })
    }

    fn apply_mounts(&self, _: &Bundle, undo: &mut Undo, _: &mut Scratch) -> Result<(), MountError> {
        // An absolute mount outlives the container; one inside its rootfs does not.
        let effects = [("mount /abs", true), ("mount rel", false)];
        self.step(Step::Mounts, undo, &effects)
            .then_some(())
            .ok_or(MountError::Mount {
                index: 1,
                what: "tmpfs".into(),
                target: PathBuf::from("/rootfs/rel"),
                source: Errno::EPERM,
            })
    }

    fn apply_cgroups(&self, _: &Bundle, undo: &mut Undo) -> Result<(), CgroupError> {
        self.step(Step::Cgroups, undo, &[("cgroup", true)])
            .then_some(())
            .ok_or(CgroupError::NoHierarchy(PathBuf::from("/sys/fs/cgroup")))
    }

    fn prepare_config(&self, bundle: &Bundle, _: &Path) -> Result<PathBuf, StepError> {
        let mut undo = Undo::new();
        let ok = self.step(Step::Config, &mut undo, &[]);
        undo.forget();
        ok.then(|| bundle.dir.clone())
            .ok_or(StepError::Config(BundleError::NotADirectory(
                bundle.dir.clone(),
            )))
    }

    fn watch(&self, pid: i32) -> (Waiter, Option<PidFd>) {
        (Waiter::unregistered(pid), None)
    }

    fn apply_interfaces(&self, _: &Bundle, _: i32, undo: &mut Undo) -> Result<(), NetError> {
        self.step(Step::Interfaces, undo, &[("link", true)])
            .then_some(())
            .ok_or(NetError::MissingName { index: 0 })
    }

    fn bind_namespaces(&self, _: &Bundle, _: i32, undo: &mut Undo) -> Result<(), NsBindError> {
        self.step(Step::BindNs, undo, &[("bind", true)])
            .then_some(())
            .ok_or(NsBindError::NotAFilePath {
                kind: "net",
                path: PathBuf::from("/run/netns/"),
            })
    }

    fn procs_file(&self, _: i32) -> Option<PathBuf> {
        None
    }

    fn remove_container_cgroup(&self, cgroups_path: &str) -> Vec<String> {
        self.note(format!("remove cgroup {cgroups_path}"));
        vec![format!("remove cgroup {cgroups_path}: busy")]
    }

    fn remove_pid_file(&self, _: &Path) {
        self.note("remove pid file");
    }
}

impl Runtime for Double {
    fn bin(&self) -> &str {
        "rt"
    }

    fn may_exist(&self, _: &str) -> bool {
        self.stale.is_some() || (self.left_behind && self.ran.load(Ordering::SeqCst))
    }

    fn state(&self, name: &str) -> Result<Option<State>, RuntimeError> {
        Ok(self.stale.map(|status| State {
            id: name.into(),
            status: status.into(),
            pid: 0,
            bundle: PathBuf::new(),
        }))
    }

    fn create(
        &self,
        name: &str,
        _: &Path,
        _: &Path,
        _: &ContainerStdio,
    ) -> Result<i32, RuntimeError> {
        self.note(format!("create {name}"));
        if self.create_times_out {
            return Err(RuntimeError::TimedOut {
                bin: "rt".into(),
                op: "create",
                limit: Duration::from_secs(60),
            });
        }
        let mut exists = self.exists.lock().unwrap_or_else(|e| e.into_inner());
        if *exists > 0 {
            *exists -= 1;
            return Err(failed(
                "create",
                &format!("container `{name}` already exists"),
            ));
        }
        match self.fail {
            Some(Step::Create) => Err(failed("create", "exec format error")),
            _ => Ok(PID),
        }
    }

    fn run(
        &self,
        name: &str,
        _: &Path,
        _: &Path,
        _: &ContainerStdio,
    ) -> Result<RuntimeProcess, RuntimeError> {
        self.note(format!("run {name}"));
        self.ran.store(true, Ordering::SeqCst);
        match self.fail {
            Some(Step::Run) => Err(failed("run", "exec format error")),
            _ => Ok(RuntimeProcess::unstarted(
                "rt",
                Waiter::unregistered(PID + 1),
            )),
        }
    }

    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.note(format!("start {name}"));
        match self.fail {
            Some(Step::Start) => Err(failed("start", "cannot start a stopped process")),
            _ => Ok(()),
        }
    }

    fn kill(&self, name: &str, signal: &str, _: bool) -> Result<(), RuntimeError> {
        self.note(format!("kill {name} {signal}"));
        Ok(())
    }

    fn delete(&self, name: &str, _: bool) -> Result<(), RuntimeError> {
        self.note(format!("delete {name}"));
        match self.undo_fails {
            Some("delete") => Err(failed("delete", "device or resource busy")),
            _ => Ok(()),
        }
    }

    fn clear_half_made(&self, name: &str) -> Result<(), RuntimeError> {
        self.note(format!("clear half made {name}"));
        Ok(())
    }

    fn forget_logs(&self, name: &str) {
        self.note(format!("forget logs {name}"));
    }
}
