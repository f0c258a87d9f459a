//! The side effects of the container path behind two traits, as youki keeps its system calls
//! behind its `Syscall` trait: the path itself (the order of its steps, the undo each one
//! pushes, the rollback at each point of failure, the retry over a stale container) is then
//! tested without root, against a double that records every call and fails where it is
//! told to (`tests.rs`). [`System`] and [`OciRuntime`] are the real thing; the root
//! integration tests drive those.

use super::{Ctx, StateDirError, StepError};
use crate::bundle::Bundle;
use crate::cgroups::{self, CgroupError};
use crate::logs::ContainerStdio;
use crate::mounts::{self, MountError, Scratch};
use crate::net::{self, NetError};
use crate::nsbind::{self, NsBindError};
use crate::oci_runtime::{OciRuntime, RuntimeError, RuntimeProcess, State};
use crate::process::{self, PidFd, Waiter};
use crate::rootfs::{self, RootfsError};
use crate::undo::Undo;
use std::path::{Path, PathBuf};

/// The OCI runtime commands the container path runs (see [`OciRuntime`] for each).
pub(crate) trait Runtime: Clone + Send + 'static {
    fn bin(&self) -> &str;
    fn may_exist(&self, name: &str) -> bool;
    fn state(&self, name: &str) -> Result<Option<State>, RuntimeError>;
    fn create(
        &self,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<i32, RuntimeError>;
    fn run(
        &self,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<RuntimeProcess, RuntimeError>;
    fn start(&self, name: &str) -> Result<(), RuntimeError>;
    fn kill(&self, name: &str, signal: &str, all: bool) -> Result<(), RuntimeError>;
    fn delete(&self, name: &str, force: bool) -> Result<(), RuntimeError>;
    fn clear_half_made(&self, name: &str) -> Result<(), RuntimeError>;
    fn forget_logs(&self, name: &str);
}

impl Runtime for OciRuntime {
    fn bin(&self) -> &str {
        &self.bin
    }
    fn may_exist(&self, name: &str) -> bool {
        OciRuntime::may_exist(self, name)
    }
    fn state(&self, name: &str) -> Result<Option<State>, RuntimeError> {
        OciRuntime::state(self, name)
    }
    fn create(
        &self,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<i32, RuntimeError> {
        OciRuntime::create(self, name, bundle, pid_file, stdio)
    }
    fn run(
        &self,
        name: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: &ContainerStdio,
    ) -> Result<RuntimeProcess, RuntimeError> {
        OciRuntime::run(self, name, bundle, pid_file, stdio)
    }
    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        OciRuntime::start(self, name)
    }
    fn kill(&self, name: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        OciRuntime::kill(self, name, signal, all)
    }
    fn delete(&self, name: &str, force: bool) -> Result<(), RuntimeError> {
        OciRuntime::delete(self, name, force)
    }
    fn clear_half_made(&self, name: &str) -> Result<(), RuntimeError> {
        OciRuntime::clear_half_made(self, name)
    }
    fn forget_logs(&self, name: &str) {
        OciRuntime::forget_logs(self, name)
    }
}

/// What the container path does to the host besides running the runtime: each step pushes
/// the undo of what it did, as it goes.
pub(crate) trait Host {
    /// Where the runtime writes the container's init pid.
    fn pid_file(&self, name: &str) -> PathBuf;
    /// The root the cgroup hierarchies are mounted under.
    fn cgroup_root(&self) -> &Path;
    fn prepare_rootfs(
        &self,
        bundle: &Bundle,
        undo: &mut Undo,
        scratch: &mut Scratch,
    ) -> Result<(), RootfsError>;
    fn apply_mounts(
        &self,
        bundle: &Bundle,
        undo: &mut Undo,
        scratch: &mut Scratch,
    ) -> Result<(), MountError>;
    fn apply_cgroups(&self, bundle: &Bundle, undo: &mut Undo) -> Result<(), CgroupError>;
    /// The bundle directory the runtime is given (a generated config.json when needed), with
    /// the directory of `pid_file` made.
    fn prepare_config(&self, bundle: &Bundle, pid_file: &Path) -> Result<PathBuf, StepError>;
    /// Claims the exit status of the init `pid`, with a pidfd for it (see
    /// [`process::Reaper::watch_with_pidfd`]).
    fn watch(&self, pid: i32) -> (Waiter, Option<PidFd>);
    fn apply_interfaces(&self, bundle: &Bundle, pid: i32, undo: &mut Undo) -> Result<(), NetError>;
    fn bind_namespaces(
        &self,
        bundle: &Bundle,
        pid: i32,
        undo: &mut Undo,
    ) -> Result<(), NsBindError>;
    /// Where the processes of the container whose init is `pid` are listed.
    fn procs_file(&self, pid: i32) -> Option<PathBuf>;
    /// Removes the cgroup a runtime killed before it saved its state left (config.json's
    /// `cgroupsPath`); what could not be removed.
    fn remove_container_cgroup(&self, cgroups_path: &str) -> Vec<String>;
    fn remove_pid_file(&self, path: &Path);
}

/// The host, for real.
pub(crate) struct System<'a> {
    ctx: &'a Ctx,
}

impl<'a> System<'a> {
    pub(crate) fn new(ctx: &'a Ctx) -> System<'a> {
        System { ctx }
    }
}

impl Host for System<'_> {
    fn pid_file(&self, name: &str) -> PathBuf {
        self.ctx.pid_file(name)
    }

    fn cgroup_root(&self) -> &Path {
        &self.ctx.cgroup_root
    }

    fn prepare_rootfs(
        &self,
        bundle: &Bundle,
        undo: &mut Undo,
        scratch: &mut Scratch,
    ) -> Result<(), RootfsError> {
        rootfs::prepare(bundle, undo, scratch)
    }

    fn apply_mounts(
        &self,
        bundle: &Bundle,
        undo: &mut Undo,
        scratch: &mut Scratch,
    ) -> Result<(), MountError> {
        mounts::apply(
            &bundle.rootfs,
            bundle.runtime_mounts(),
            &bundle.runtime.mkdir,
            undo,
            scratch,
        )
    }

    fn apply_cgroups(&self, bundle: &Bundle, undo: &mut Undo) -> Result<(), CgroupError> {
        cgroups::apply(&self.ctx.cgroup_root, &bundle.runtime.cgroups, undo)
    }

    fn prepare_config(&self, bundle: &Bundle, pid_file: &Path) -> Result<PathBuf, StepError> {
        let dir = bundle
            .runtime_bundle_dir(&self.ctx.state_dir)
            .map_err(StepError::Config)?;
        if let Some(parent) = pid_file.parent() {
            std::fs::create_dir_all(parent).map_err(|source| {
                StepError::StateDir(StateDirError {
                    path: parent.to_path_buf(),
                    source,
                })
            })?;
        }
        Ok(dir)
    }

    fn watch(&self, pid: i32) -> (Waiter, Option<PidFd>) {
        process::reaper().watch_with_pidfd(pid)
    }

    fn apply_interfaces(&self, bundle: &Bundle, pid: i32, undo: &mut Undo) -> Result<(), NetError> {
        net::apply(bundle, pid, undo)
    }

    fn bind_namespaces(
        &self,
        bundle: &Bundle,
        pid: i32,
        undo: &mut Undo,
    ) -> Result<(), NsBindError> {
        nsbind::apply(bundle, pid, undo)
    }

    fn procs_file(&self, pid: i32) -> Option<PathBuf> {
        cgroups::procs_file(pid)
    }

    fn remove_container_cgroup(&self, cgroups_path: &str) -> Vec<String> {
        cgroups::remove_container_cgroup(&self.ctx.cgroup_root, cgroups_path)
    }

    fn remove_pid_file(&self, path: &Path) {
        // Gone already is what is wanted.
        let _ = std::fs::remove_file(path);
    }
}
