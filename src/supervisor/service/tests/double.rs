//! The double of a service task's world: it writes down what it is asked, in order, with
//! the time on tokio's (paused) clock, and does what the test's script says: a launch that
//! runs, fails, or hangs until it is cut short; a container that crashes, ignores SIGTERM,
//! survives SIGKILL, or whose cleanup fails; an adoption that finds its init or not.

use super::super::LaunchError;
use super::super::effects::{Container, Effects, Exit};
use crate::bundle::ConfigExtra;
use crate::container::{AdoptError, Handover};
use crate::logs::ContainerStdio;
use crate::oci_runtime::Cancel;
use crate::process::ExitStatus;
use crate::supervisor::checks::Probe;
use crate::supervisor::notify::Identity;
use crate::supervisor::probe::Outcome;
use crate::supervisor::ready::Check;
use crate::supervisor::record::{Persisted, Record, RecordError};
use crate::supervisor::settings::{Settings, SettingsError, parse};
use crate::undo::UndoFailures;
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The pid of the first container the double launches; each launch takes the next one.
pub(super) const FIRST_PID: i32 = 1001;

/// How long a hanging launch waits to be cut short before the test is failed.
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// What a container does.
#[derive(Debug, Clone, Copy)]
pub(super) struct Behaviour {
    /// Ends by itself as soon as it has started, with this status.
    pub(super) crashes: Option<ExitStatus>,
    /// Ends on SIGTERM with this status; None: SIGTERM is ignored.
    pub(super) on_term: Option<ExitStatus>,
    /// Ends on SIGKILL; false: it survives it.
    pub(super) dies_on_kill: bool,
    /// Its cleanup fails, saying this.
    pub(super) cleanup_fails: Option<&'static str>,
}

/// SIGTERM (15) and SIGKILL (9).
pub(super) const TERM: ExitStatus = ExitStatus::Signal(15);
pub(super) const KILL: ExitStatus = ExitStatus::Signal(9);

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            crashes: None,
            on_term: Some(TERM),
            dies_on_kill: true,
            cleanup_fails: None,
        }
    }
}

impl Behaviour {
    pub(super) fn crashing(st: ExitStatus) -> Behaviour {
        Behaviour {
            crashes: Some(st),
            ..Behaviour::default()
        }
    }
}

/// What one launch does.
#[derive(Debug, Clone)]
pub(super) enum Launch {
    /// The container starts and behaves so.
    Runs(Behaviour),
    /// A step fails, saying this; the rollback undoes everything.
    Fails(&'static str),
    /// The bundle cannot be used, as this says.
    Unusable(&'static str),
    /// A step fails (the first) and its rollback leaves something behind (the second).
    Leaves(&'static str, &'static str),
    /// It hangs (a hook that never returns) until it is cut short, then fails.
    Hangs,
    /// It hangs until it is cut short, and has started its container all the same.
    HangsThenRuns,
}

/// What an adoption finds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Adopt {
    /// Its init, alive, behaving so.
    Alive(Behaviour),
    /// Its init has exited.
    Gone,
}

#[derive(Default)]
struct Script {
    journal: Vec<(Duration, String)>,
    settings: BTreeMap<String, Settings>,
    /// Per service, what its next launches do; a launch with nothing scripted runs.
    launches: BTreeMap<String, VecDeque<Launch>>,
    /// Per service, what every launch does once its queue is empty.
    then: BTreeMap<String, Launch>,
    adopt: BTreeMap<String, Adopt>,
    probes: VecDeque<Outcome>,
    records: BTreeMap<String, Persisted>,
    /// The end of each container, by pid.
    ends: BTreeMap<i32, Arc<watch::Sender<Option<Option<ExitStatus>>>>>,
    /// The descriptors each service's last launch handed its container beyond stdio.
    extra: BTreeMap<String, Vec<OwnedFd>>,
    next_pid: i32,
}

struct Shared {
    script: Mutex<Script>,
    /// A hanging launch waits on it for its cutting short.
    cut: Condvar,
    /// Counts the entries of the journal, for a test that waits for one.
    noted: watch::Sender<usize>,
    t0: Instant,
}

/// The world of the service tasks of one test.
#[derive(Clone)]
pub(super) struct Double(Arc<Shared>);

impl Double {
    /// A fresh double; its clock starts now.
    pub(super) fn new() -> Double {
        Double(Arc::new(Shared {
            script: Mutex::new(Script {
                next_pid: FIRST_PID,
                ..Script::default()
            }),
            cut: Condvar::new(),
            noted: watch::Sender::new(0),
            t0: Instant::now(),
        }))
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.0.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, what: String) {
        let at = self.0.t0.elapsed();
        self.script().journal.push((at, what));
        self.0.noted.send_modify(|n| *n += 1);
    }

    /// Waits until the journal is as `f` wants (without the paused clock, which stands
    /// still while a launch hangs on a blocking thread).
    pub(super) async fn until(&self, f: impl Fn(&[String]) -> bool) {
        let mut noted = self.0.noted.subscribe();
        while !f(&self.journal()) {
            noted.changed().await.unwrap();
        }
    }

    /// Everything asked so far, in order.
    pub(super) fn journal(&self) -> Vec<String> {
        self.script()
            .journal
            .iter()
            .map(|(_, w)| w.clone())
            .collect()
    }

    /// When each entry that starts with `what` was asked, from the double's start.
    pub(super) fn times(&self, what: &str) -> Vec<Duration> {
        self.script()
            .journal
            .iter()
            .filter(|(_, w)| w.starts_with(what))
            .map(|(t, _)| *t)
            .collect()
    }

    /// Service `name`'s settings, as its service.yml would give them.
    pub(super) fn settings_of(&self, name: &str, yaml: &str) {
        let s = parse(yaml, true, Path::new("service.yml"), name).unwrap();
        self.script().settings.insert(name.to_string(), s);
    }

    /// What the next launches of `name` do, in order.
    pub(super) fn launches(&self, name: &str, l: impl IntoIterator<Item = Launch>) {
        self.script()
            .launches
            .entry(name.to_string())
            .or_default()
            .extend(l);
    }

    /// What every launch of `name` does once the scripted ones are used up.
    pub(super) fn always(&self, name: &str, l: Launch) {
        self.script().then.insert(name.to_string(), l);
    }

    pub(super) fn adoption(&self, name: &str, a: Adopt) {
        self.script().adopt.insert(name.to_string(), a);
    }

    /// What the next checks say, in order (a check with nothing scripted succeeds).
    pub(super) fn probes(&self, o: impl IntoIterator<Item = Outcome>) {
        self.script().probes.extend(o);
    }

    /// The record last written for `name`.
    pub(super) fn record(&self, name: &str) -> Option<Persisted> {
        self.script().records.get(name).cloned()
    }

    /// Takes the descriptors the last launch of `name` handed its container beyond stdio.
    pub(super) fn extra_fds(&self, name: &str) -> Vec<OwnedFd> {
        self.script().extra.remove(name).unwrap_or_default()
    }

    /// Ends container `pid` with `st` (None: a status not ours to know), unless it has
    /// ended already.
    pub(super) fn end(&self, pid: i32, st: Option<ExitStatus>) {
        let end = self.script().ends.get(&pid).cloned();
        if let Some(end) = end {
            end.send_if_modified(|e| {
                let first = e.is_none();
                if first {
                    *e = Some(st);
                }
                first
            });
        }
    }

    /// A container `pid` of `name` that behaves so, ours or adopted.
    fn container(&self, name: &str, pid: i32, b: Behaviour, adopted: bool) -> Fake {
        let (tx, _) = watch::channel(None);
        let end = Arc::new(tx);
        self.script().ends.insert(pid, end.clone());
        let c = Fake {
            d: self.clone(),
            name: name.to_string(),
            pid,
            b,
            adopted,
            end,
        };
        if let Some(st) = b.crashes {
            c.ends(st);
        }
        c
    }

    /// Waits, without the task's knowledge, until a hanging launch is cut short.
    fn hang(&self, cancel: &Cancel) {
        let mut g = self.script();
        let deadline = std::time::Instant::now() + HANG_LIMIT;
        while !cancel.fired() {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .expect("a hanging launch is cut short in time");
            g = self
                .0
                .cut
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Effects for Double {
    type Container = Fake;

    fn settings(&self, _: &Path, name: &str) -> Result<Settings, SettingsError> {
        Ok(self
            .script()
            .settings
            .get(name)
            .cloned()
            .unwrap_or_default())
    }

    fn save_record(&self, r: &Record) -> Result<(), RecordError> {
        self.script()
            .records
            .insert(r.name.clone(), r.service.clone());
        Ok(())
    }

    fn remove_record(&self, name: &str) {
        self.script().records.remove(name);
    }

    /// The service is named by its bundle directory, as `Bundle::open` names it.
    fn launch(
        &self,
        dir: &Path,
        _: ConfigExtra,
        stdio: &ContainerStdio,
        cancel: &Cancel,
    ) -> Result<Fake, LaunchError> {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        self.note(format!("launch {name}"));
        let l = {
            let mut s = self.script();
            let next = s.launches.get_mut(&name).and_then(VecDeque::pop_front);
            next.or_else(|| s.then.get(&name).cloned())
                .unwrap_or(Launch::Runs(Behaviour::default()))
        };
        let l = match l {
            Launch::Hangs => {
                self.hang(cancel);
                Launch::Fails("create: rt create: killed: the launch was cut short")
            }
            Launch::HangsThenRuns => {
                self.hang(cancel);
                Launch::Runs(Behaviour::default())
            }
            l => l,
        };
        match l {
            Launch::Runs(b) => {
                let pid = {
                    let mut s = self.script();
                    s.next_pid += 1;
                    s.next_pid - 1
                };
                let mut extra = Vec::new();
                for fd in &stdio.extra {
                    extra.push(fd.try_clone().unwrap());
                }
                self.script().extra.insert(name.clone(), extra);
                Ok(self.container(&name, pid, b, false))
            }
            Launch::Fails(why) => Err(LaunchError::Launch(why.to_string())),
            Launch::Unusable(why) => Err(LaunchError::Config(why.to_string())),
            Launch::Leaves(why, left) => Err(LaunchError::Leftovers(
                why.to_string(),
                UndoFailures(vec![left.to_string()]),
            )),
            Launch::Hangs | Launch::HangsThenRuns => unreachable!("resolved above"),
        }
    }

    fn cut_short(&self, cancel: &Cancel) {
        self.note("cut short".into());
        let _g = self.script();
        cancel.fire();
        self.0.cut.notify_all();
    }

    fn adopt(&self, h: Handover) -> Result<Fake, (AdoptError, Handover)> {
        self.note(format!("adopt {} {}", h.name, h.pid));
        let a = self.script().adopt.get(&h.name).copied();
        match a {
            Some(Adopt::Alive(b)) => Ok(self.container(&h.name, h.pid, b, true)),
            Some(Adopt::Gone) | None => Err((AdoptError::Gone(h.pid), h)),
        }
    }

    fn clear(&self, h: &Handover) -> UndoFailures {
        self.note(format!("clear {} {}", h.name, h.pid));
        UndoFailures::default()
    }

    fn clear_interrupted_launch(&self, name: &str, _: &Path) -> UndoFailures {
        self.note(format!("clear interrupted launch {name}"));
        UndoFailures::default()
    }

    /// The test's own process: a notification it sends counts as the service's.
    fn identity(&self, _: i32) -> Identity {
        Identity::of(i32::try_from(std::process::id()).unwrap())
    }

    fn probe(&self, name: &str, _: i32, _: Option<u64>, _: Probe) -> Check {
        self.note(format!("probe {name}"));
        let o = self.script().probes.pop_front().unwrap_or(Outcome {
            ok: true,
            summary: "exit code 0".into(),
            output: String::new(),
            took: Duration::ZERO,
        });
        Box::pin(async move { o })
    }
}

/// A container of the double.
pub(super) struct Fake {
    d: Double,
    name: String,
    pid: i32,
    b: Behaviour,
    adopted: bool,
    end: Arc<watch::Sender<Option<Option<ExitStatus>>>>,
}

impl Fake {
    /// Ends it with `st` (an adopted one's status is not ours to know).
    fn ends(&self, st: ExitStatus) {
        let st = (!self.adopted).then_some(st);
        self.d.end(self.pid, st);
    }
}

/// The end of a container of the double.
pub(super) struct FakeExit(watch::Receiver<Option<Option<ExitStatus>>>);

impl Exit for FakeExit {
    async fn exited(&self) -> Option<ExitStatus> {
        let mut rx = self.0.clone();
        let end = rx.wait_for(Option::is_some).await.map(|st| st.flatten());
        match end {
            Ok(st) => st,
            Err(_) => std::future::pending().await,
        }
    }
}

impl Container for Fake {
    type Exit = FakeExit;

    fn pid(&self) -> i32 {
        self.pid
    }

    fn handover(&mut self) -> Option<Handover> {
        Some(handover(&self.name, self.pid))
    }

    fn exit(&self) -> std::io::Result<FakeExit> {
        Ok(FakeExit(self.end.subscribe()))
    }

    fn terminate(&mut self) {
        self.d.note(format!("SIGTERM {} {}", self.name, self.pid));
        if let Some(st) = self.b.on_term {
            self.ends(st);
        }
    }

    fn kill(&mut self) {
        self.d.note(format!("SIGKILL {} {}", self.name, self.pid));
        if self.b.dies_on_kill {
            self.ends(KILL);
        }
    }

    fn retire(self, name: &str) -> UndoFailures {
        self.d.note(format!("retire {name} {}", self.pid));
        UndoFailures(self.b.cleanup_fails.iter().map(|s| s.to_string()).collect())
    }
}

/// What the record of container `pid` of `name` says.
pub(super) fn handover(name: &str, pid: i32) -> Handover {
    Handover {
        name: name.to_string(),
        pid,
        start_time: Some(1),
        cgroup_procs: None,
        pid_file: None,
        cleanup: Vec::new(),
    }
}
