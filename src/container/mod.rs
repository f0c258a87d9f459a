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
//!
//! `running.rs` holds a started container until its end, `adopt.rs` one taken over from an
//! earlier supervisor, `replay.rs` the cleanup carried out from its record.

mod adopt;
mod host;
mod replay;
mod running;
#[cfg(test)]
mod tests;

pub(crate) use adopt::{AdoptError, Adopted, Handover, adopt};
pub(crate) use replay::{clear_interrupted_launch, replay};
pub(crate) use running::{Running, kill_remaining};

use crate::bundle::{Bundle, BundleError};
use crate::cgroups::{self, CgroupError};
use crate::logs::ContainerStdio;
use crate::mounts::{self, MountError};
use crate::net::NetError;
use crate::nsbind::NsBindError;
use crate::oci_runtime::{Deadline, OciRuntime, RuntimeError};
use crate::process::PidFd;
use crate::rootfs::RootfsError;
use crate::undo::{Replay, Undo, UndoFailures};
use host::{Host, Runtime, System};
use running::Exit;
use std::path::{Path, PathBuf};

/// What every container launch needs to know about the host.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub runtime: OciRuntime,
    /// lkinit's own state: pid files, generated configs, runtime logs.
    pub(crate) state_dir: PathBuf,
    pub(crate) cgroup_root: PathBuf,
}

impl Ctx {
    pub fn new(runtime_bin: &str, runtime_root: Option<PathBuf>, state_dir: PathBuf) -> Ctx {
        Ctx {
            runtime: OciRuntime::new(runtime_bin, runtime_root, state_dir.join("runtime-logs")),
            state_dir,
            cgroup_root: PathBuf::from(cgroups::DEFAULT_ROOT),
        }
    }

    pub(crate) fn pid_file(&self, name: &str) -> PathBuf {
        self.state_dir.join("pids").join(format!("{name}.pid"))
    }
}

/// The steps of the path, as they are named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Rootfs,
    Mounts,
    Cgroups,
    Config,
    Create,
    Interfaces,
    BindNs,
    Start,
    Run,
}

impl Step {
    pub(crate) fn as_str(self) -> &'static str {
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
        }
    }
}

/// The step that failed, with the error its module gave.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Rootfs(RootfsError),
    #[error(transparent)]
    Mounts(MountError),
    #[error(transparent)]
    Cgroups(CgroupError),
    /// The generated config.json could not be written.
    #[error(transparent)]
    Config(BundleError),
    #[error(transparent)]
    StateDir(StateDirError),
    #[error(transparent)]
    Create(RuntimeError),
    #[error(transparent)]
    Interfaces(NetError),
    #[error(transparent)]
    BindNs(NsBindError),
    #[error(transparent)]
    Start(RuntimeError),
    /// A foreground `run`: the runtime could not start it, or died under it.
    #[error(transparent)]
    Run(RuntimeError),
}

impl StepError {
    pub(crate) fn step(&self) -> Step {
        match self {
            StepError::Rootfs(_) => Step::Rootfs,
            StepError::Mounts(_) => Step::Mounts,
            StepError::Cgroups(_) => Step::Cgroups,
            StepError::Config(_) | StepError::StateDir(_) => Step::Config,
            StepError::Create(_) => Step::Create,
            StepError::Interfaces(_) => Step::Interfaces,
            StepError::BindNs(_) => Step::BindNs,
            StepError::Start(_) => Step::Start,
            StepError::Run(_) => Step::Run,
        }
    }
}

/// A container that could not be launched, or whose runtime failed under it: the step, its
/// error, and what the rollback could not undo.
#[derive(Debug, thiserror::Error)]
#[error("{}", .failed.step().as_str())]
pub(crate) struct ContainerError {
    #[source]
    pub(crate) failed: StepError,
    /// What the rollback could not undo (nothing, normally).
    pub(crate) undo: UndoFailures,
}

impl From<StepError> for ContainerError {
    fn from(failed: StepError) -> Self {
        ContainerError {
            failed,
            undo: UndoFailures::default(),
        }
    }
}

impl ContainerError {
    /// One line: the step, every cause, and anything the rollback left behind.
    pub(crate) fn report(&self) -> String {
        let mut s = crate::error_chain(self);
        if !self.undo.is_empty() {
            s.push_str(&format!(" (undo failed: {})", self.undo));
        }
        s
    }
}

/// lkinit's own state directory cannot hold what a container needs there.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {path}")]
pub(crate) struct StateDirError {
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: std::io::Error,
}

/// How the caller will wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The caller waits for the end right away (onboot): the runtime may stay in the
    /// foreground.
    Foreground,
    /// The container is handed to a supervisor: its init becomes our child.
    Detached,
}

/// config.json's `linux.cgroupsPath`.
fn cgroups_path(bundle: &Bundle) -> Option<String> {
    bundle
        .spec
        .linux()
        .as_ref()?
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Removes a stopped (or never started) leftover of an earlier run of `name`, as left by an
/// lkinit that was killed half way, or what a runtime killed in `create` left of it; a
/// running one is an error.
fn clear_stale(rt: &impl Runtime, name: &str) -> Result<(), RuntimeError> {
    match rt.state(name)? {
        Some(st) if st.status == "stopped" || st.status == "created" => {
            log::warn!(
                "{name}: removing a {} container left by an earlier run",
                st.status
            );
            rt.delete(name, true)
        }
        Some(st) => Err(RuntimeError::Failed {
            bin: rt.bin().to_string(),
            op: "create",
            message: format!(
                "a container named `{name}` already exists and is {}",
                st.status
            ),
        }),
        None => rt.clear_half_made(name),
    }
}

/// Runs `f`, clearing a leftover container of the same name first when the runtime's state
/// directory shows one, or afterwards when the runtime says it exists (a runtime whose
/// state directory lkinit does not know).
fn with_stale_retry<T, R: Runtime>(
    rt: &R,
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
pub(crate) fn launch(
    bundle: &Bundle,
    ctx: &Ctx,
    stdio: &ContainerStdio,
    mode: Mode,
) -> Result<Running, ContainerError> {
    launch_within(bundle, ctx, stdio, mode, None)
}

/// `launch`, with every runtime command bounded by `deadline` too (see
/// [`OciRuntime::within`]): a `create` still running then (a hook that never returns) is
/// killed and the launch fails. The cleanup commands pushed on the undo stack keep the
/// deadline, so a container's whole life, its `delete` included, ends within it (and
/// `CLEANUP_FLOOR` in oci_runtime/limits.rs).
pub(crate) fn launch_within(
    bundle: &Bundle,
    ctx: &Ctx,
    stdio: &ContainerStdio,
    mode: Mode,
    deadline: Option<Deadline>,
) -> Result<Running, ContainerError> {
    let rt = ctx.runtime.within(deadline);
    launch_with(&System::new(ctx), &rt, bundle, stdio, mode)
}

/// The launch, whatever carries out its steps.
fn launch_with<R: Runtime>(
    host: &impl Host,
    rt: &R,
    bundle: &Bundle,
    stdio: &ContainerStdio,
    mode: Mode,
) -> Result<Running, ContainerError> {
    let mut undo = Undo::new();
    let pid_file = host.pid_file(&bundle.name);
    match launch_steps(host, rt, bundle, &pid_file, stdio, mode, &mut undo) {
        Ok((pid, pidfd, exit)) => Ok(Running {
            name: bundle.name.clone(),
            pid,
            pidfd,
            exit,
            undo,
            pid_file,
            cgroup_procs: pid.and_then(|p| host.procs_file(p)),
            cgroups_path: cgroups_path(bundle),
            cgroup_root: host.cgroup_root().to_path_buf(),
            runtime_killed: false,
        }),
        Err(mut e) => {
            // What the failed step could not clear itself comes after the rollback's.
            let mut failures = undo.rollback();
            failures.0.append(&mut e.undo.0);
            e.undo = failures;
            // The runtime may have written it before the launch failed.
            host.remove_pid_file(&pid_file);
            Err(e)
        }
    }
}

fn launch_steps<R: Runtime>(
    host: &impl Host,
    rt: &R,
    bundle: &Bundle,
    pid_file: &Path,
    stdio: &ContainerStdio,
    mode: Mode,
    undo: &mut Undo,
) -> Result<(Option<i32>, Option<PidFd>, Exit), ContainerError> {
    let name = bundle.name.as_str();

    let mut scratch = mounts::Scratch::default();
    host.prepare_rootfs(bundle, undo, &mut scratch)
        .map_err(StepError::Rootfs)?;
    host.apply_mounts(bundle, undo, &mut scratch)
        .map_err(StepError::Mounts)?;
    host.apply_cgroups(bundle, undo)
        .map_err(StepError::Cgroups)?;
    let bundle_dir = host.prepare_config(bundle, pid_file)?;

    // A bundle with OCI hooks goes through create and start even so: each of those is
    // bounded on its own, while a `run` lasts as long as its container, hooks and all.
    if mode == Mode::Foreground && !bundle.needs_create_start() && bundle.spec.hooks().is_none() {
        let p = with_stale_retry(rt, name, || rt.run(name, &bundle_dir, pid_file, stdio))
            .map_err(StepError::Run)?;
        return Ok((None, None, Exit::Runtime(p)));
    }

    let pid = with_stale_retry(rt, name, || rt.create(name, &bundle_dir, pid_file, stdio))
        .map_err(|e| {
            // Killed before it saved the container's state, the runtime left a cgroup that no
            // `delete` knows of.
            let left = match cgroups_path(bundle) {
                Some(cg) if e.was_killed() => host.remove_container_cgroup(&cg),
                _ => Vec::new(),
            };
            let mut ce = ContainerError::from(StepError::Create(e));
            ce.undo.0.extend(left);
            ce
        })?;
    let rt2 = rt.clone();
    let n = name.to_string();
    let replay = Replay::DeleteContainer {
        name: name.to_string(),
    };
    undo.push_replayable(
        format!("{} delete --force {name}", rt.bin()),
        replay,
        move || {
            let r = rt2.delete(&n, true);
            rt2.forget_logs(&n);
            Ok(r?)
        },
    );
    // Claimed now, before `start` lets the init run, so its status cannot be missed; the
    // pidfd is opened under the reaper's lock, so an init killed meanwhile (OOM, a stray
    // kill) cannot have left its pid to another process.
    let (waiter, pidfd) = host.watch(pid);

    host.apply_interfaces(bundle, pid, undo)
        .map_err(StepError::Interfaces)?;
    host.bind_namespaces(bundle, pid, undo)
        .map_err(StepError::BindNs)?;

    rt.start(name).map_err(StepError::Start)?;
    Ok((Some(pid), pidfd, Exit::Init(waiter)))
}
