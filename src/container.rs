//! The one path every container takes, onboot, onshutdown and service alike:
//!
//! ```text
//! rootfs::prepare -> mounts::apply -> cgroups::apply -> runtime create
//!   -> net::apply -> nsbind::apply -> runtime start -> (wait) -> cleanup
//! ```
//!
//! When nothing has to happen between create and start and the caller waits in the
//! foreground, the runtime's `run` does create, start, wait and delete in one process.
//! Every step pushes its undo; a failure before the container runs rolls back exactly what
//! was done and returns one error naming the step.

use crate::bundle::{Bundle, BundleError};
use crate::oci_runtime::{ContainerStdio, OciRuntime, RuntimeError, RuntimeProcess};
use crate::reaper::{self, ExitStatus, PidFd, Waiter};
use crate::undo::{Undo, UndoFailures};
use crate::{cgroups, mounts, net, nsbind, rootfs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every container launch needs to know about the host.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub runtime: OciRuntime,
    /// lkinit's own state: pid files, generated configs, runtime logs.
    pub state_dir: PathBuf,
    pub cgroup_root: PathBuf,
}

impl Ctx {
    pub fn new(runtime_bin: &str, runtime_root: Option<PathBuf>, state_dir: PathBuf) -> Ctx {
        Ctx {
            runtime: OciRuntime::new(runtime_bin, runtime_root, state_dir.join("runtime-logs")),
            state_dir,
            cgroup_root: PathBuf::from(cgroups::DEFAULT_ROOT),
        }
    }

    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.state_dir.join("pids").join(format!("{name}.pid"))
    }
}

/// The steps of the path, as they are named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Rootfs,
    Mounts,
    Cgroups,
    Config,
    Create,
    Interfaces,
    BindNs,
    Start,
    Run,
    Wait,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Rootfs => "rootfs",
            Step::Mounts => "mounts",
            Step::Cgroups => "cgroups",
            Step::Config => "config",
            Step::Create => "create",
            Step::Interfaces => "interfaces",
            Step::BindNs => "bindNS",
            Step::Start => "start",
            Step::Run => "run",
            Step::Wait => "wait",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}", .step.as_str())]
pub struct ContainerError {
    pub step: Step,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
    /// What the rollback could not undo (nothing, normally).
    pub undo: UndoFailures,
}

impl ContainerError {
    fn new(step: Step, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ContainerError {
            step,
            source: source.into(),
            undo: UndoFailures::default(),
        }
    }

    /// One line: the step, every cause, and anything the rollback left behind.
    pub fn report(&self) -> String {
        let mut s = crate::error_chain(self);
        if !self.undo.is_empty() {
            s.push_str(&format!(" (undo failed: {})", self.undo));
        }
        s
    }
}

/// How the caller will wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The caller waits for the end right away (onboot): the runtime may stay in the
    /// foreground.
    Foreground,
    /// The container is handed to a supervisor: its init becomes our child.
    Detached,
}

enum Exit {
    /// A runtime `run` in the foreground; its exit is the container's.
    Runtime(RuntimeProcess),
    /// The container's init, our child since the runtime that made it exited.
    Init(Waiter),
}

/// A started container and what has to be undone when it ends.
pub struct Running {
    pub name: String,
    /// The container's init; None while a foreground runtime has not written it yet.
    pid: Option<i32>,
    pidfd: Option<PidFd>,
    exit: Exit,
    undo: Undo,
    pid_file: PathBuf,
}

/// Removes a stopped (or never started) leftover of an earlier run of `name`, as left by an
/// lkinit that was killed half way; a running one is an error.
fn clear_stale(rt: &OciRuntime, name: &str) -> Result<(), RuntimeError> {
    match rt.state(name)? {
        Some(st) if st.status == "stopped" || st.status == "created" => {
            log::warn!(
                "{name}: removing a {} container left by an earlier run",
                st.status
            );
            rt.delete(name, true)
        }
        Some(st) => Err(RuntimeError::Failed {
            bin: rt.bin.clone(),
            op: "create",
            message: format!(
                "a container named `{name}` already exists and is {}",
                st.status
            ),
        }),
        None => Ok(()),
    }
}

/// Runs `f`, clearing a leftover container of the same name first when the runtime's state
/// directory shows one, or afterwards when the runtime says it exists (a runtime whose
/// state directory lkinit does not know).
fn with_stale_retry<T>(
    rt: &OciRuntime,
    name: &str,
    mut f: impl FnMut() -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    if rt.may_exist(name) {
        clear_stale(rt, name)?;
    }
    match f() {
        Err(e) if e.is_already_exists() => {
            clear_stale(rt, name)?;
            f()
        }
        r => r,
    }
}

/// Prepares and starts a container (see the module comment). On error, everything done for
/// it is undone before returning.
pub fn launch(
    bundle: &Bundle,
    ctx: &Ctx,
    stdio: &ContainerStdio,
    mode: Mode,
) -> Result<Running, ContainerError> {
    let mut undo = Undo::new();
    match launch_steps(bundle, ctx, stdio, mode, &mut undo) {
        Ok((pid, exit)) => {
            let pidfd = pid.and_then(|p| PidFd::open(p).ok());
            Ok(Running {
                name: bundle.name.clone(),
                pid,
                pidfd,
                exit,
                undo,
                pid_file: ctx.pid_file(&bundle.name),
            })
        }
        Err(mut e) => {
            e.undo = undo.rollback();
            Err(e)
        }
    }
}

fn launch_steps(
    bundle: &Bundle,
    ctx: &Ctx,
    stdio: &ContainerStdio,
    mode: Mode,
    undo: &mut Undo,
) -> Result<(Option<i32>, Exit), ContainerError> {
    let rt = &ctx.runtime;
    let name = bundle.name.as_str();
    let cfg = &bundle.runtime;

    rootfs::prepare(bundle, undo).map_err(|e| ContainerError::new(Step::Rootfs, e))?;
    mounts::apply(&bundle.rootfs, &cfg.mounts, &cfg.mkdir, undo)
        .map_err(|e| ContainerError::new(Step::Mounts, e))?;
    cgroups::apply(&ctx.cgroup_root, &cfg.cgroups, undo)
        .map_err(|e| ContainerError::new(Step::Cgroups, e))?;

    let bundle_dir = bundle
        .runtime_bundle_dir(&ctx.state_dir)
        .map_err(|e: BundleError| ContainerError::new(Step::Config, e))?;
    let pid_file = ctx.pid_file(name);
    if let Some(dir) = pid_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ContainerError::new(Step::Config, e))?;
    }
    let _ = std::fs::remove_file(&pid_file);

    if mode == Mode::Foreground && !bundle.needs_create_start() {
        let p = with_stale_retry(rt, name, || rt.run(name, &bundle_dir, &pid_file, stdio))
            .map_err(|e| ContainerError::new(Step::Run, e))?;
        return Ok((None, Exit::Runtime(p)));
    }

    let pid = with_stale_retry(rt, name, || rt.create(name, &bundle_dir, &pid_file, stdio))
        .map_err(|e| ContainerError::new(Step::Create, e))?;
    let rt2 = rt.clone();
    let n = name.to_string();
    undo.push(format!("{} delete --force {name}", rt.bin), move || {
        let r = rt2.delete(&n, true).map_err(|e| crate::error_chain(&e));
        rt2.forget_logs(&n);
        r
    });
    // Claimed now: the init cannot exit before `start`, so its status cannot be missed.
    let waiter = reaper::global().watch(pid);

    net::apply(bundle, pid, undo).map_err(|e| ContainerError::new(Step::Interfaces, e))?;
    nsbind::apply(bundle, pid, undo).map_err(|e| ContainerError::new(Step::BindNs, e))?;

    rt.start(name)
        .map_err(|e| ContainerError::new(Step::Start, e))?;
    Ok((Some(pid), Exit::Init(waiter)))
}

impl Running {
    /// The container's init pid, once known.
    pub fn pid(&mut self) -> Option<i32> {
        if self.pid.is_none() {
            self.pid = std::fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        }
        self.pid
    }

    fn status(&self, st: ExitStatus) -> Result<ExitStatus, ContainerError> {
        match &self.exit {
            Exit::Runtime(p) => p.result(st).map_err(|e| ContainerError::new(Step::Run, e)),
            Exit::Init(_) => Ok(st),
        }
    }

    fn waiter(&self) -> &Waiter {
        match &self.exit {
            Exit::Runtime(p) => &p.waiter,
            Exit::Init(w) => w,
        }
    }

    /// Waits for the container to end; an error is the runtime's own failure.
    pub fn wait(&self) -> Result<ExitStatus, ContainerError> {
        self.status(self.waiter().wait())
    }

    /// Like `wait`, giving up after `timeout` (None: still running).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<ExitStatus, ContainerError>> {
        self.waiter()
            .wait_timeout(timeout)
            .map(|st| self.status(st))
    }

    pub async fn wait_async(&self) -> Result<ExitStatus, ContainerError> {
        let st = self.waiter().wait_async().await;
        self.status(st)
    }

    /// Kills every process of the container: through the runtime (its whole cgroup), and
    /// the init directly through its pidfd in case the runtime cannot.
    pub fn kill(&mut self, rt: &OciRuntime) {
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
    pub fn finish(self, rt: &OciRuntime) -> UndoFailures {
        let failures = self.undo.cleanup();
        if matches!(self.exit, Exit::Runtime(_)) {
            rt.forget_logs(&self.name);
        }
        let _ = std::fs::remove_file(&self.pid_file);
        failures
    }

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }
}
