//! `/etc/init.d` at boot and `/etc/shutdown.d` at shutdown, as LinuxKit's rc.init and
//! rc.shutdown run them: every executable regular entry (symlinks followed), in name order,
//! its output on the console.
//!
//! LinuxKit's packages link `/usr/bin/service` into these directories to start their steps
//! (`005-volumes`, `010-onboot`, `020-containerd`, `010-onshutdown`); in an image with lkinit
//! that file is lkinit itself. Such an entry is not run: lkinit's own step runs in its place,
//! once, so hooks before it (memlogd's `002-logging`) come first. A step's predecessors
//! that no entry named run just before it (volumes before onboot before the supervisor), and
//! the steps left run after the last entry.
//!
//! Each hook has a time bound (LinuxKit says hooks should not block; one that starts a
//! daemon returns once it has forked): past it, the hook and what it started are killed,
//! and the boot or shutdown goes on. What a hook leaves running when it returns stays, and
//! PID 1 reaps it when it ends.

use super::{Child, Event, Init};
use crate::process::{self, ExitStatus, PidFd};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a boot hook may run before it is killed.
pub const BOOT_LIMIT: Duration = Duration::from_secs(60);
/// How long a shutdown hook may run: the machine is on its way down.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How long a killed hook may take to be gone.
const KILLED_WAIT: Duration = Duration::from_secs(5);

/// A step of lkinit's own that an entry can stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Volumes,
    Onboot,
    Supervisor,
    Onshutdown,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Volumes => "volumes",
            Step::Onboot => "onboot",
            Step::Supervisor => "supervisor",
            Step::Onshutdown => "onshutdown",
        }
    }

    /// The step a link named `name` stands for, by the words LinuxKit's `service` reads.
    pub fn for_link_name(name: &str) -> Option<Step> {
        match crate::cli::link_command(name)? {
            "volumes" => Some(Step::Volumes),
            "onboot" => Some(Step::Onboot),
            "onshutdown" => Some(Step::Onshutdown),
            "system-init" => Some(Step::Supervisor),
            _ => None,
        }
    }
}

/// Boot (`/etc/init.d`) or shutdown (`/etc/shutdown.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Boot,
    Shutdown,
}

impl Phase {
    pub fn dir(self) -> &'static Path {
        Path::new(match self {
            Phase::Boot => "/etc/init.d",
            Phase::Shutdown => "/etc/shutdown.d",
        })
    }

    /// lkinit's steps of this phase, in the order they must run.
    pub fn steps(self) -> &'static [Step] {
        match self {
            Phase::Boot => &[Step::Volumes, Step::Onboot, Step::Supervisor],
            Phase::Shutdown => &[Step::Onshutdown],
        }
    }

    pub fn default_limit(self) -> Duration {
        match self {
            Phase::Boot => BOOT_LIMIT,
            Phase::Shutdown => SHUTDOWN_LIMIT,
        }
    }
}

/// What an entry of the directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with an execute bit: a hook.
    Program,
    /// The same file as the running lkinit.
    SelfLink,
    NotExecutable,
    /// A directory, a device, a FIFO: not LinuxKit's business either.
    NotRegular,
    /// A dangling symlink, a permission problem: the reason.
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name, printable.
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
}

/// Why an entry does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotExecutable,
    Unreadable(String),
    /// A link to lkinit whose name names no step.
    UnknownStep,
    /// A link to lkinit for a step of the other phase.
    OtherPhase(Step),
    /// Its step has run already.
    Ran(Step),
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Hook {
        name: String,
        path: PathBuf,
    },
    /// lkinit's own step; `entry` is the link that named it, if any.
    Step {
        step: Step,
        entry: Option<String>,
    },
    Skip {
        name: String,
        why: Skip,
    },
}

/// The order of things for `entries` (already in name order): hooks where they are, each
/// step once, where its link is or just before a later step needs it, and the rest last.
pub fn plan(phase: Phase, entries: &[Entry]) -> Vec<Action> {
    let order = phase.steps();
    let mut out = Vec::new();
    let run_up_to = |step: Step, entry: Option<String>, out: &mut Vec<Action>| {
        for s in order.iter().take_while(|s| **s != step) {
            if !done_contains(out, *s) {
                out.push(Action::Step {
                    step: *s,
                    entry: None,
                });
            }
        }
        out.push(Action::Step { step, entry });
    };
    for e in entries {
        let skip = |why| Action::Skip {
            name: e.name.clone(),
            why,
        };
        match &e.kind {
            Kind::Program => out.push(Action::Hook {
                name: e.name.clone(),
                path: e.path.clone(),
            }),
            Kind::NotRegular => {}
            Kind::NotExecutable => out.push(skip(Skip::NotExecutable)),
            Kind::Unreadable(why) => out.push(skip(Skip::Unreadable(why.clone()))),
            Kind::SelfLink => match Step::for_link_name(&e.name) {
                None => out.push(skip(Skip::UnknownStep)),
                Some(s) if !order.contains(&s) => out.push(skip(Skip::OtherPhase(s))),
                Some(s) if done_contains(&out, s) => out.push(skip(Skip::Ran(s))),
                Some(s) => run_up_to(s, Some(e.name.clone()), &mut out),
            },
        }
    }
    for s in order {
        if !done_contains(&out, *s) {
            out.push(Action::Step {
                step: *s,
                entry: None,
            });
        }
    }
    out
}

fn done_contains(out: &[Action], step: Step) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Step { step: s, .. } if *s == step))
}

/// Device and inode of a file, following symlinks.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The entries of `dir` in name order (byte order, as LinuxKit sorts them); `me` is the
/// running binary's [`file_id`]. A missing directory has none.
pub fn scan(dir: &Path, me: Option<(u64, u64)>) -> std::io::Result<Vec<Entry>> {
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(Result::ok).map(|e| e.file_name()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| {
            let path = dir.join(&n);
            let kind = match std::fs::metadata(&path) {
                Err(e) => Kind::Unreadable(e.to_string()),
                Ok(m) if !m.is_file() => Kind::NotRegular,
                Ok(m) if me == Some((m.dev(), m.ino())) => Kind::SelfLink,
                Ok(m) if m.permissions().mode() & 0o111 == 0 => Kind::NotExecutable,
                Ok(_) => Kind::Program,
            };
            Entry {
                name: crate::bundle::printable_name(&n.to_string_lossy()),
                path,
                kind,
            }
        })
        .collect())
}

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
            match self.wait(
                Some(&c),
                Some(deadline.saturating_duration_since(Instant::now())),
            ) {
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
            match self.wait(
                Some(&c),
                Some(deadline.saturating_duration_since(Instant::now())),
            ) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, kind: Kind) -> Entry {
        Entry {
            name: name.into(),
            path: PathBuf::from("/etc/init.d").join(name),
            kind,
        }
    }

    fn hook(name: &str) -> Action {
        Action::Hook {
            name: name.into(),
            path: PathBuf::from("/etc/init.d").join(name),
        }
    }

    fn step(step: Step, entry: Option<&str>) -> Action {
        Action::Step {
            step,
            entry: entry.map(str::to_string),
        }
    }

    fn skip(name: &str, why: Skip) -> Action {
        Action::Skip {
            name: name.into(),
            why,
        }
    }

    /// No entries: lkinit's steps in their order.
    #[test]
    fn steps_alone() {
        assert_eq!(
            plan(Phase::Boot, &[]),
            [
                step(Step::Volumes, None),
                step(Step::Onboot, None),
                step(Step::Supervisor, None)
            ]
        );
        assert_eq!(plan(Phase::Shutdown, &[]), [step(Step::Onshutdown, None)]);
    }

    /// A LinuxKit image: the init package's 005-volumes, memlogd's 002-logging, runc's
    /// 010-onboot, containerd's 020-containerd, getty's 001-getty.
    #[test]
    fn linuxkit_image() {
        let entries = [
            e("000-issue", Kind::Program),
            e("001-getty", Kind::Program),
            e("002-logging", Kind::Program),
            e("005-volumes", Kind::SelfLink),
            e("010-onboot", Kind::SelfLink),
            e("020-containerd", Kind::SelfLink),
        ];
        assert_eq!(
            plan(Phase::Boot, &entries),
            [
                hook("000-issue"),
                hook("001-getty"),
                hook("002-logging"),
                step(Step::Volumes, Some("005-volumes")),
                step(Step::Onboot, Some("010-onboot")),
                step(Step::Supervisor, Some("020-containerd")),
            ]
        );
    }

    /// Without 005-volumes (lkinit's package ships no such link), the volumes are still
    /// ready before onboot; without 020-containerd the supervisor comes after every hook.
    #[test]
    fn unnamed_steps_come_where_they_are_needed() {
        let entries = [
            e("002-logging", Kind::Program),
            e("010-onboot", Kind::SelfLink),
            e("030-late", Kind::Program),
        ];
        assert_eq!(
            plan(Phase::Boot, &entries),
            [
                hook("002-logging"),
                step(Step::Volumes, None),
                step(Step::Onboot, Some("010-onboot")),
                hook("030-late"),
                step(Step::Supervisor, None),
            ]
        );
        // A supervisor link alone pulls both others in before it.
        assert_eq!(
            plan(Phase::Boot, &[e("020-containerd", Kind::SelfLink)]),
            [
                step(Step::Volumes, None),
                step(Step::Onboot, None),
                step(Step::Supervisor, Some("020-containerd")),
            ]
        );
    }

    /// Each step runs once; a link that names one already run, an unknown name, or a step
    /// of the other phase is skipped and said.
    #[test]
    fn never_twice() {
        let entries = [
            e("010-onboot", Kind::SelfLink),
            e("011-onboot", Kind::SelfLink),
            e("050-volumes", Kind::SelfLink),
            e("060-mystery", Kind::SelfLink),
            e("070-onshutdown", Kind::SelfLink),
            e("080-readme", Kind::NotExecutable),
            e("090-dir", Kind::NotRegular),
            e(
                "095-dangling",
                Kind::Unreadable("No such file or directory".into()),
            ),
        ];
        assert_eq!(
            plan(Phase::Boot, &entries),
            [
                step(Step::Volumes, None),
                step(Step::Onboot, Some("010-onboot")),
                skip("011-onboot", Skip::Ran(Step::Onboot)),
                skip("050-volumes", Skip::Ran(Step::Volumes)),
                skip("060-mystery", Skip::UnknownStep),
                skip("070-onshutdown", Skip::OtherPhase(Step::Onshutdown)),
                skip("080-readme", Skip::NotExecutable),
                skip(
                    "095-dangling",
                    Skip::Unreadable("No such file or directory".into())
                ),
                step(Step::Supervisor, None),
            ]
        );
    }

    /// rc.shutdown runs /etc/shutdown.d, where runc's 010-onshutdown is onshutdown.
    #[test]
    fn shutdown_order() {
        let entries = [
            e("001-first", Kind::Program),
            e("010-onshutdown", Kind::SelfLink),
            e("020-after", Kind::Program),
            e("030-onboot", Kind::SelfLink),
        ];
        assert_eq!(
            plan(Phase::Shutdown, &entries),
            [
                hook("001-first"),
                step(Step::Onshutdown, Some("010-onshutdown")),
                hook("020-after"),
                skip("030-onboot", Skip::OtherPhase(Step::Onboot)),
            ]
        );
        assert_eq!(
            plan(Phase::Shutdown, &[e("001-first", Kind::Program)]),
            [hook("001-first"), step(Step::Onshutdown, None)]
        );
    }

    /// The directory as it is on disk: links to this very binary are told from other
    /// programs by device and inode, wherever they point from.
    #[test]
    fn scanning_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let me_path = d.join("lkinit");
        std::fs::write(&me_path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&me_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hooks = d.join("init.d");
        std::fs::create_dir(&hooks).unwrap();
        let script = |name: &str, mode: u32| {
            let p = hooks.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        script("002-logging", 0o755);
        script("003-data", 0o644);
        std::os::unix::fs::symlink(&me_path, hooks.join("010-onboot")).unwrap();
        std::fs::hard_link(&me_path, hooks.join("020-containerd")).unwrap();
        std::os::unix::fs::symlink("/nowhere", hooks.join("030-dangling")).unwrap();
        std::fs::create_dir(hooks.join("040-dir")).unwrap();
        std::os::unix::fs::symlink("002-logging", hooks.join("001-alias")).unwrap();
        let got = scan(&hooks, file_id(&me_path)).unwrap();
        let kinds: Vec<(&str, &Kind)> = got.iter().map(|e| (e.name.as_str(), &e.kind)).collect();
        assert_eq!(kinds[0], ("001-alias", &Kind::Program));
        assert_eq!(kinds[1], ("002-logging", &Kind::Program));
        assert_eq!(kinds[2], ("003-data", &Kind::NotExecutable));
        assert_eq!(kinds[3], ("010-onboot", &Kind::SelfLink));
        assert_eq!(kinds[4], ("020-containerd", &Kind::SelfLink));
        assert!(matches!(kinds[5], ("030-dangling", Kind::Unreadable(_))));
        assert_eq!(kinds[6], ("040-dir", &Kind::NotRegular));
        assert_eq!(got.len(), 7);
        assert!(scan(&d.join("missing"), None).unwrap().is_empty());
    }

    #[test]
    fn link_names_map_to_steps() {
        assert_eq!(Step::for_link_name("005-volumes"), Some(Step::Volumes));
        assert_eq!(Step::for_link_name("010-onboot"), Some(Step::Onboot));
        assert_eq!(
            Step::for_link_name("020-containerd"),
            Some(Step::Supervisor)
        );
        assert_eq!(
            Step::for_link_name("010-onshutdown"),
            Some(Step::Onshutdown)
        );
        assert_eq!(Step::for_link_name("000-issue"), None);
    }
}
