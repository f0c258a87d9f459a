//! PID 1's steps in their order: the entries of `/etc/init.d` or `/etc/shutdown.d` (see
//! `hooks.rs` for the order), each hook bounded and killed with what it started past its
//! limit, and lkinit's own steps as children of this binary (the volumes, onboot, the
//! supervisor, onshutdown).
//!
//! Each hook has a time bound (LinuxKit says hooks should not block; one that starts a
//! daemon returns once it has forked): past it, the hook and what it started are killed,
//! and the boot or shutdown goes on. What a hook leaves running when it returns stays, and
//! PID 1 reaps it when it ends.

use super::Init;
use super::children::{Child, Event};
use super::hooks::{Action, Phase, Skip, Step, file_id, plan, scan};
use crate::process::{self, ExitStatus, PidFd};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long onshutdown may take in all before it is killed and the shutdown goes on.
const ONSHUTDOWN_LIMIT: Duration = Duration::from_secs(60);

/// How long a killed hook may take to be gone.
const KILLED_WAIT: Duration = Duration::from_secs(5);

impl Init<'_> {
    /// The entries of `phase`'s directory and lkinit's steps, in their order. At boot a
    /// shutdown asked for meanwhile ends the boot after the current entry; the supervisor,
    /// if a step started it, is returned.
    pub(super) fn run_phase(&mut self, phase: Phase) -> Option<Child> {
        let dir = phase.dir();
        let me = file_id(Path::new("/proc/self/exe"));
        if me.is_none() {
            log::warn!("cannot stat /proc/self/exe: links to lkinit cannot be told apart");
        }
        let entries = scan(dir, me).unwrap_or_else(|e| {
            log::error!("cannot read {}: {e}", dir.display());
            Vec::new()
        });
        let limit = self.hook_limit.unwrap_or(phase.default_limit());
        let mut supervisor = None;
        for action in plan(phase, &entries) {
            if phase == Phase::Boot
                && let Some(req) = self.pending
            {
                log::info!("{req}: the rest of the boot is skipped");
                break;
            }
            match action {
                Action::Hook { name, path } => self.run_hook(phase, &name, &path, limit),
                Action::Step { step, entry } => {
                    match &entry {
                        Some(e) => log::info!(
                            "{}/{e} is lkinit: its {} step",
                            dir.display(),
                            step.as_str()
                        ),
                        None if !entries.is_empty() => log::info!(
                            "{} step (no link in {} names it)",
                            step.as_str(),
                            dir.display()
                        ),
                        None => {}
                    }
                    match step {
                        Step::Volumes => self.volumes(limit),
                        Step::Onboot => self.onboot(),
                        Step::Supervisor => supervisor = self.start_supervisor(),
                        Step::Onshutdown => self.onshutdown(),
                    }
                }
                Action::Skip { name, why } => report_skip(dir, &name, &why),
            }
        }
        supervisor
    }

    /// One hook to its end, or killed with what it started at `limit`.
    fn run_hook(&mut self, phase: Phase, name: &str, path: &Path, limit: Duration) {
        let shown = format!("{}/{name}", phase.dir().display());
        let mut cmd = Command::new(path);
        // Its own process group: what it starts can be found and killed with it.
        cmd.process_group(0).stdin(Stdio::null());
        let (child, waiter) = match process::reaper().spawn(&mut cmd) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{shown}: cannot run: {e}");
                return;
            }
        };
        let pid = process::pid_of(&child);
        let c = Child {
            what: "hook",
            pidfd: PidFd::open(pid).ok(),
            waiter,
            started: Instant::now(),
        };
        let deadline = c.started + limit;
        loop {
            match self.wait(Some(&c), Some(deadline)) {
                Event::Exited(st) => {
                    report_hook(&shown, &st);
                    return;
                }
                Event::Signal(r) if phase == Phase::Shutdown => {
                    log::info!("{r}: already shutting down")
                }
                Event::Signal(r) if self.pending.is_none() => {
                    log::info!("{r}, once {shown} has finished (ask again to stop it now)");
                    self.pending = Some(r);
                }
                Event::Signal(r) => {
                    log::warn!("{r}: stopping {shown} now");
                    self.pending = Some(r);
                    let st = kill_hook(&c);
                    log::error!("{shown}: stopped: {}", status_or_unknown(st));
                    return;
                }
                Event::Timeout => {
                    let st = kill_hook(&c);
                    log::error!(
                        "{shown}: timed out after {}s, killed: {}",
                        limit.as_secs(),
                        status_or_unknown(st)
                    );
                    return;
                }
            }
        }
    }

    /// `lkinit volumes` as a child, bounded like a hook; not started for an image without
    /// volumes (a process less on every boot).
    fn volumes(&mut self, limit: Duration) {
        if std::fs::symlink_metadata(crate::volumes::DEFAULT_DIR).is_err() {
            log::debug!("no {}", crate::volumes::DEFAULT_DIR);
            return;
        }
        let Some(c) = self.spawn("volumes", &["volumes"]) else {
            return;
        };
        let deadline = c.started + limit;
        loop {
            match self.wait(Some(&c), Some(deadline)) {
                Event::Exited(st) => {
                    if !st.success() {
                        log::error!("volumes: {st}");
                    }
                    return;
                }
                Event::Signal(r) => {
                    log::info!("{r}, once the volumes are ready");
                    self.pending.get_or_insert(r);
                }
                Event::Timeout => {
                    log::error!("volumes: still running after {}s", limit.as_secs());
                    let st = self.stop(&c, Duration::from_secs(2));
                    log::error!("volumes: stopped: {st}");
                    return;
                }
            }
        }
    }

    /// onboot in the foreground. A shutdown asked for meanwhile waits until it ends (its
    /// bundles prepare the system and are not cut half way); asked again, onboot is stopped.
    fn onboot(&mut self) {
        let Some(child) = self.start_runner("onboot", self.onboot_timeout) else {
            return;
        };
        loop {
            match self.wait(Some(&child), None) {
                Event::Exited(st) => {
                    // A request that came with the end of onboot is still onboot's.
                    if self.pending.is_none()
                        && let Some(req) = self.read_request()
                    {
                        log::info!("{req}, once onboot has finished");
                        self.pending = Some(req);
                    }
                    log::info!(
                        "onboot: finished in {} ms: {st}",
                        child.started.elapsed().as_millis()
                    );
                    return;
                }
                Event::Signal(req) if self.pending.is_none() => {
                    log::info!("{req}, once onboot has finished (ask again to stop onboot now)");
                    self.pending = Some(req);
                }
                Event::Signal(req) => {
                    log::warn!("{req}: stopping onboot now");
                    let st = self.stop(&child, Duration::from_secs(5));
                    log::info!("onboot: stopped: {st}");
                    self.pending = Some(req);
                    return;
                }
                Event::Timeout => {}
            }
        }
    }

    /// Starts `onboot` or `onshutdown` with PID 1's runner flags and, when one is set, the
    /// limit of each bundle.
    fn start_runner(&self, what: &'static str, timeout: Option<u64>) -> Option<Child> {
        log::info!("{what}: starting");
        let mut args = vec![what];
        args.extend(&self.runner_flags);
        let limit = timeout.map(|t| t.to_string());
        if let Some(t) = &limit {
            args.extend(["--timeout", t]);
        }
        self.spawn(what, &args)
    }

    pub(super) fn start_supervisor(&self) -> Option<Child> {
        let c = self.spawn("supervisor", &["system-init"])?;
        log::info!("supervisor started (pid {})", c.waiter.pid());
        Some(c)
    }

    /// onshutdown, bounded in all by ONSHUTDOWN_LIMIT.
    fn onshutdown(&mut self) {
        let Some(c) = self.start_runner("onshutdown", self.onshutdown_timeout) else {
            return;
        };
        let deadline = Instant::now() + ONSHUTDOWN_LIMIT;
        loop {
            match self.wait(Some(&c), Some(deadline)) {
                Event::Exited(st) => {
                    log::info!(
                        "onshutdown: finished in {} ms: {st}",
                        c.started.elapsed().as_millis()
                    );
                    return;
                }
                Event::Signal(r) => log::info!("{r}: already shutting down"),
                Event::Timeout => {
                    log::error!(
                        "onshutdown: still running after {}s, stopping it",
                        ONSHUTDOWN_LIMIT.as_secs()
                    );
                    let st = self.stop(&c, Duration::from_secs(2));
                    log::info!("onshutdown: stopped: {st}");
                    return;
                }
            }
        }
    }
}

/// Kills a hook and its descendants, then its process group (what it started and left,
/// reparented to PID 1); its status once it is gone.
fn kill_hook(c: &Child) -> Option<ExitStatus> {
    match &c.pidfd {
        Some(fd) => process::kill_tree_of(fd),
        None => process::kill_tree(c.waiter.pid()),
    }
    let _ = killpg(Pid::from_raw(c.waiter.pid()), Signal::SIGKILL);
    c.waiter.wait_timeout(KILLED_WAIT)
}

fn status_or_unknown(st: Option<ExitStatus>) -> String {
    st.map_or_else(|| "still not gone".to_string(), |s| s.to_string())
}

fn report_hook(shown: &str, st: &ExitStatus) {
    if st.success() {
        log::info!("{shown}: {st}");
    } else {
        log::error!("{shown}: {st}");
    }
}

fn report_skip(dir: &Path, name: &str, why: &Skip) {
    let shown = format!("{}/{name}", dir.display());
    match why {
        Skip::NotExecutable => log::warn!("{shown}: not executable; skipped"),
        Skip::Unreadable(e) => log::warn!("{shown}: {e}; skipped"),
        Skip::UnknownStep => log::warn!(
            "{shown} is lkinit, but its name names no step (volumes, onboot, containerd, \
             onshutdown); skipped"
        ),
        Skip::OtherPhase(s) => log::warn!(
            "{shown} is lkinit's {} step, which does not run from {}; skipped",
            s.as_str(),
            dir.display()
        ),
        Skip::Ran(s) => log::info!(
            "{shown} is lkinit: its {} step ran already; skipped",
            s.as_str()
        ),
    }
}
