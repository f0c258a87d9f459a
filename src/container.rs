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
use crate::logs::ContainerStdio;
use crate::oci_runtime::{Deadline, OciRuntime, RuntimeError, RuntimeProcess};
use crate::process::{self, ExitStatus, PidFd, Waiter};
use crate::undo::{PlannedStep, Replay, Undo, UndoFailures};
use crate::{cgroups, mounts, net, nsbind, paths, rootfs};
use nix::mount::{MntFlags, umount2};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// lkinit's own state directory cannot hold what a container needs there.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {path}")]
pub struct StateDirError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
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
    /// Where the container's processes are listed (Detached containers).
    cgroup_procs: Option<PathBuf>,
    /// config.json's `linux.cgroupsPath` and the cgroup root, for what a runtime killed
    /// half way leaves.
    cgroups_path: Option<String>,
    cgroup_root: PathBuf,
    /// The runtime was killed by lkinit (it hung).
    runtime_killed: bool,
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
        None => rt.clear_half_made(name),
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
    launch_within(bundle, ctx, stdio, mode, None)
}

/// `launch`, with every runtime command bounded by `deadline` too (see
/// [`OciRuntime::within`]): a `create` still running then (a hook that never returns) is
/// killed and the launch fails. The cleanup commands pushed on the undo stack keep the
/// deadline, so a container's whole life, its `delete` included, ends within it (and
/// [`crate::oci_runtime::CLEANUP_FLOOR`]).
pub fn launch_within(
    bundle: &Bundle,
    ctx: &Ctx,
    stdio: &ContainerStdio,
    mode: Mode,
    deadline: Option<Deadline>,
) -> Result<Running, ContainerError> {
    let ctx = &Ctx {
        runtime: ctx.runtime.within(deadline),
        ..ctx.clone()
    };
    let mut undo = Undo::new();
    match launch_steps(bundle, ctx, stdio, mode, &mut undo) {
        Ok((pid, pidfd, exit)) => Ok(Running {
            name: bundle.name.clone(),
            pid,
            pidfd,
            exit,
            undo,
            pid_file: ctx.pid_file(&bundle.name),
            cgroup_procs: pid.and_then(cgroups::procs_file),
            cgroups_path: cgroups_path(bundle),
            cgroup_root: ctx.cgroup_root.clone(),
            runtime_killed: false,
        }),
        Err(mut e) => {
            // What the failed step could not clear itself comes after the rollback's.
            let mut failures = undo.rollback();
            failures.0.append(&mut e.undo.0);
            e.undo = failures;
            // The runtime may have written it before the launch failed.
            let _ = std::fs::remove_file(ctx.pid_file(&bundle.name));
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
) -> Result<(Option<i32>, Option<PidFd>, Exit), ContainerError> {
    let rt = &ctx.runtime;
    let name = bundle.name.as_str();
    let cfg = &bundle.runtime;

    let mut scratch = mounts::Scratch::default();
    rootfs::prepare(bundle, undo, &mut scratch)
        .map_err(|e| ContainerError::new(Step::Rootfs, e))?;
    mounts::apply(
        &bundle.rootfs,
        bundle.runtime_mounts(),
        &cfg.mkdir,
        undo,
        &mut scratch,
    )
    .map_err(|e| ContainerError::new(Step::Mounts, e))?;
    cgroups::apply(&ctx.cgroup_root, &cfg.cgroups, undo)
        .map_err(|e| ContainerError::new(Step::Cgroups, e))?;

    let bundle_dir = bundle
        .runtime_bundle_dir(&ctx.state_dir)
        .map_err(|e: BundleError| ContainerError::new(Step::Config, e))?;
    let pid_file = ctx.pid_file(name);
    if let Some(dir) = pid_file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| {
            ContainerError::new(
                Step::Config,
                StateDirError {
                    path: dir.to_path_buf(),
                    source,
                },
            )
        })?;
    }

    // A bundle with OCI hooks goes through create and start even so: each of those is
    // bounded on its own, while a `run` lasts as long as its container, hooks and all.
    if mode == Mode::Foreground && !bundle.needs_create_start() && bundle.spec.hooks().is_none() {
        let p = with_stale_retry(rt, name, || rt.run(name, &bundle_dir, &pid_file, stdio))
            .map_err(|e| ContainerError::new(Step::Run, e))?;
        return Ok((None, None, Exit::Runtime(p)));
    }

    let pid = with_stale_retry(rt, name, || rt.create(name, &bundle_dir, &pid_file, stdio))
        .map_err(|e| {
            let mut ce = ContainerError::new(Step::Create, e);
            // Killed before it saved the container's state, the runtime left a cgroup that no
            // `delete` knows of.
            if ce
                .source
                .downcast_ref::<RuntimeError>()
                .is_some_and(RuntimeError::was_killed)
                && let Some(cg) = cgroups_path(bundle)
            {
                ce.undo
                    .0
                    .extend(cgroups::remove_container_cgroup(&ctx.cgroup_root, &cg));
            }
            ce
        })?;
    let rt2 = rt.clone();
    let n = name.to_string();
    let replay = Replay::DeleteContainer {
        name: name.to_string(),
    };
    undo.push_replayable(
        format!("{} delete --force {name}", rt.bin),
        replay,
        move || {
            let r = rt2.delete(&n, true).map_err(|e| crate::error_chain(&e));
            rt2.forget_logs(&n);
            r
        },
    );
    // Claimed now, before `start` lets the init run, so its status cannot be missed; the
    // pidfd is opened under the reaper's lock, so an init killed meanwhile (OOM, a stray
    // kill) cannot have left its pid to another process.
    let (waiter, pidfd) = process::reaper().watch_with_pidfd(pid);

    net::apply(bundle, pid, undo).map_err(|e| ContainerError::new(Step::Interfaces, e))?;
    nsbind::apply(bundle, pid, undo).map_err(|e| ContainerError::new(Step::BindNs, e))?;

    rt.start(name)
        .map_err(|e| ContainerError::new(Step::Start, e))?;
    Ok((Some(pid), pidfd, Exit::Init(waiter)))
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

    /// Polls readable once the process whose end is the container's end has exited (the
    /// foreground runtime, or the init); None where the kernel gave no pidfd.
    pub fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        self.exit_pidfd().map(AsFd::as_fd)
    }

    fn exit_pidfd(&self) -> Option<&PidFd> {
        match &self.exit {
            Exit::Runtime(p) => p.pidfd.as_ref(),
            Exit::Init(_) => self.pidfd.as_ref(),
        }
    }

    /// Waits for the container to end; an error is the runtime's own failure.
    pub fn wait(&self) -> Result<ExitStatus, ContainerError> {
        self.status(self.waiter().wait())
    }

    /// The status once `exit_fd` has turned readable, without waiting for the reaper
    /// thread to hand it over (one thread switch less per container).
    pub fn ended(&self) -> Result<ExitStatus, ContainerError> {
        match self.exit_pidfd().and_then(PidFd::peek_exit) {
            Some(st) => self.status(st),
            None => self.wait(),
        }
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

    /// Kills a foreground runtime that did not end with its container (it hangs in a hook),
    /// with everything it started; `finish` then deletes what it left.
    pub fn kill_runtime(&mut self) {
        if let Exit::Runtime(p) = &self.exit {
            process::kill_tree(p.waiter.pid());
            self.runtime_killed = true;
        }
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
        self.end(rt, false)
    }

    /// After a foreground `run` that the runtime itself failed (it could not create or
    /// start the container): like a launch that failed, everything done for the container
    /// is undone, what would have outlived it too.
    pub fn finish_failed(self, rt: &OciRuntime) -> UndoFailures {
        self.end(rt, true)
    }

    fn end(self, rt: &OciRuntime, failed: bool) -> UndoFailures {
        let mut failures = UndoFailures::default();
        // A foreground `run` deletes its container as it ends; one still there was left by
        // a runtime that died under it, running: it goes before its rootfs does.
        if matches!(self.exit, Exit::Runtime(_)) && rt.may_exist(&self.name) {
            log::warn!(
                "{}: `{} run` ended and left its container behind; killing and deleting it",
                self.name,
                rt.bin
            );
            if let Err(e) = rt.kill(&self.name, "KILL", true) {
                log::debug!("{}: {}", self.name, crate::error_chain(&e));
            }
            if let Err(e) = rt.delete(&self.name, true) {
                failures.0.push(format!(
                    "{} delete --force {}: {}",
                    rt.bin,
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

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// A claim on the init's exit status, for a caller that waits elsewhere.
    pub fn exit_waiter(&self) -> Waiter {
        self.waiter().clone()
    }

    /// Asks the container to stop: SIGTERM to its init through the runtime (the pidfd when
    /// the runtime cannot).
    pub fn terminate(&mut self, rt: &OciRuntime) {
        if self.pidfd.is_none()
            && let Some(pid) = self.pid()
        {
            self.pidfd = PidFd::open(pid).ok();
        }
        signal_init(rt, &self.name, self.pidfd.as_ref(), Signal::SIGTERM);
    }

    /// After the init ended: see [`kill_remaining`].
    pub fn kill_remaining(&self, rt: &OciRuntime) -> Result<(), Vec<i32>> {
        kill_remaining(rt, &self.name, self.cgroup_procs.as_deref())
    }

    /// What a later supervisor needs to take this container over (None before the init's
    /// pid is known).
    pub fn handover(&mut self) -> Option<Handover> {
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

fn signal_init(rt: &OciRuntime, name: &str, pidfd: Option<&PidFd>, sig: Signal) {
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
pub fn kill_remaining(rt: &OciRuntime, name: &str, procs: Option<&Path>) -> Result<(), Vec<i32>> {
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
pub enum AdoptError {
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
pub struct Adopted {
    pub name: String,
    pid: i32,
    pidfd: PidFd,
    handover: Handover,
}

/// Takes over the container `h` describes, if its init is still the process that was
/// recorded and the runtime still runs it.
pub fn adopt(rt: &OciRuntime, h: Handover) -> Result<Adopted, (AdoptError, Handover)> {
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
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Polls readable once the init has exited.
    pub fn pidfd(&self) -> &PidFd {
        &self.pidfd
    }

    pub fn terminate(&self, rt: &OciRuntime) {
        signal_init(rt, &self.name, Some(&self.pidfd), Signal::SIGTERM);
    }

    /// Kills every process of the container (see [`Running::kill`]).
    pub fn kill(&self, rt: &OciRuntime) {
        if let Err(e) = rt.kill(&self.name, "KILL", true) {
            log::debug!("{}: {}", self.name, crate::error_chain(&e));
        }
        let _ = self.pidfd.signal(Signal::SIGKILL);
    }

    pub fn kill_remaining(&self, rt: &OciRuntime) -> Result<(), Vec<i32>> {
        kill_remaining(rt, &self.name, self.handover.cgroup_procs.as_deref())
    }

    pub fn handover(&self) -> &Handover {
        &self.handover
    }

    /// After the end: the recorded cleanup, as [`Running::finish`] would have done it.
    pub fn finish(self, rt: &OciRuntime) -> UndoFailures {
        let failures = replay(rt, &self.handover.cleanup);
        if let Some(p) = &self.handover.pid_file {
            let _ = std::fs::remove_file(p);
        }
        failures
    }
}

/// Carries out a recorded cleanup. A step already done (by a process killed half way
/// through it) counts as done; a step that was recorded without a way to redo it is
/// reported.
pub fn replay(rt: &OciRuntime, plan: &[PlannedStep]) -> UndoFailures {
    let mut failures = Vec::new();
    for step in plan {
        log::debug!("cleanup: {}", step.what);
        let r = match &step.replay {
            Some(Replay::DeleteContainer { name }) => {
                let r = match rt.delete(name, true) {
                    Err(RuntimeError::Failed { message, .. })
                        if message.contains("does not exist") || message.contains("not exist") =>
                    {
                        Ok(())
                    }
                    r => r.map_err(|e| crate::error_chain(&e)),
                };
                rt.forget_logs(name);
                r
            }
            Some(Replay::Unmount { path }) => {
                match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                    Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Some(Replay::Remove { path, dir }) => {
                paths::remove_created(path, *dir).map_err(|e| e.to_string())
            }
            None => Err("recorded without a way to redo it after a restart of lkinit".into()),
        };
        if let Err(e) = r {
            log::warn!("cleanup: {}: {e}", step.what);
            failures.push(format!("{}: {e}", step.what));
        }
    }
    UndoFailures(failures)
}

/// Clears what a launch that was cut short (lkinit killed during it, before anything was
/// recorded) can have left: the runtime's container and the bundle's rootfs and overlay
/// tmpfs mounts. Directories it may have created inside the rootfs cannot be known.
pub fn clear_interrupted_launch(rt: &OciRuntime, name: &str, bundle_dir: &Path) -> UndoFailures {
    let mut plan = vec![PlannedStep {
        what: format!("{} delete --force {name}", rt.bin),
        replay: Some(Replay::DeleteContainer {
            name: name.to_string(),
        }),
    }];
    for dir in ["rootfs", "tmp"] {
        let p = bundle_dir.join(dir);
        // A mount may have been stacked once per attempt.
        for _ in 0..8 {
            if !crate::mountinfo::is_mount_point(&p) {
                break;
            }
            let _ = umount2(&p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
        }
        if crate::mountinfo::is_mount_point(&p) {
            plan.push(PlannedStep {
                what: format!("unmount {}", p.display()),
                replay: Some(Replay::Unmount { path: p }),
            });
        }
    }
    replay(rt, &plan)
}
