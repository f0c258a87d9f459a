//! One service: a task that owns its container and its state, and takes commands from the
//! control socket and the shutdown.
//!
//! ```text
//!        start                 launch ok                exit (policy: restart)
//!  Down ───────► Starting ──────────────► Running ─────────────────────────► Restarting
//!   ▲               │ launch failed          │ stop: SIGTERM, grace, SIGKILL     │ delay
//!   │               └──────► (as an exit)    ▼                                   │
//!   └──── stopped / exited / failed ◄─── Stopping                Starting ◄──────┘
//! ```
//!
//! Everything that blocks (the runtime, mounts, the bundle on disk) runs on tokio's
//! blocking threads; the task itself only waits: for the init's exit (the reaper's waiter
//! for our own children, the pidfd for adopted ones), for commands, for timers.

use super::output::Output;
use super::policy::{Decision, History, Policy};
use super::protocol::{ServiceInfo, State};
use super::record::{self, Persisted, Record};
use super::settings::{self, Settings};
use crate::bundle::Bundle;
use crate::container::{self, Adopted, Ctx, Handover, Mode, Running};
use crate::logs::{self, Memlogd};
use crate::oci_runtime::{Cancel, OciRuntime};
use crate::reaper::{ExitStatus, Waiter};
use crate::undo::UndoFailures;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, watch};

/// What the whole supervisor shares with its services and its socket.
pub struct Sup {
    pub ctx: Ctx,
    /// The directory of service bundles.
    pub path: PathBuf,
    pub log_dir: PathBuf,
    /// Where service output goes while memlogd runs.
    pub memlogd: Memlogd,
    pub services: Mutex<BTreeMap<String, Handle>>,
    /// Orders starts, for "last started first" at shutdown.
    seq: AtomicU64,
}

impl Sup {
    pub fn new(ctx: Ctx, path: PathBuf, log_dir: PathBuf, memlogd: Memlogd) -> Sup {
        Sup {
            ctx,
            path,
            log_dir,
            memlogd,
            services: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
        }
    }

    pub fn services(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handle>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state_dir(&self) -> &Path {
        &self.ctx.state_dir
    }
}

/// The supervisor's hold on one service task.
#[derive(Clone)]
pub struct Handle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub status: watch::Receiver<Status>,
    pub out_log: PathBuf,
    pub err_log: PathBuf,
}

/// The answer to a command: what was done, in words, or why not.
pub type Reply = oneshot::Sender<Result<String, String>>;

pub enum Cmd {
    Start(Reply),
    Stop(Reply),
    Restart(Reply),
    /// Stop for good: `signalled` once SIGTERM is sent, `done` once it is all gone.
    Shutdown {
        signalled: oneshot::Sender<()>,
        done: oneshot::Sender<()>,
    },
}

/// What the task publishes about itself.
#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub state: State,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub exit: Option<ExitStatus>,
    /// The last exit of an adopted init, whose status is not ours to know.
    pub exit_unknown: bool,
    pub since: SystemTime,
    pub reason: Option<String>,
    pub adopted: bool,
    /// Start time and order of the current container, while there is one.
    pub started: Option<(SystemTime, u64)>,
    /// Started at least once, or down for good: services that start `after` it may go.
    pub settled: bool,
}

impl Status {
    pub fn info(&self) -> ServiceInfo {
        let (exit_code, exit) = match (self.exit, self.exit_unknown) {
            (_, true) => (
                None,
                Some(
                    "exit status unknown (the init was adopted from an earlier supervisor)".into(),
                ),
            ),
            (Some(st), false) => (Some(st.code()), Some(st.to_string())),
            (None, false) => (None, None),
        };
        ServiceInfo {
            name: self.name.clone(),
            state: self.state,
            pid: self.pid,
            restarts: self.restarts,
            exit_code,
            exit,
            since: unix_secs(self.since),
            reason: self.reason.clone(),
            adopted: self.adopted,
        }
    }
}

pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn from_unix_secs(s: f64) -> SystemTime {
    Duration::try_from_secs_f64(s)
        .ok()
        .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
        .unwrap_or_else(SystemTime::now)
}

/// How a service task begins.
pub enum Boot {
    /// Start it, once the services it starts `after` have started.
    Start { after: Vec<watch::Receiver<Status>> },
    /// Take over from what an earlier supervisor recorded.
    Record(Box<Record>),
    /// Leave it down until started (a bundle added after the supervisor started).
    Idle,
    /// It cannot be started as it is (its start order is broken).
    Failed(String),
}

/// Starts the task of service `name` (bundle `dir`) and registers it. Its output is set up
/// here, or, when that fails (no descriptor left), again at each launch, which fails with
/// the reason meanwhile: the service is listed either way.
pub fn spawn(sup: &Arc<Sup>, name: &str, dir: PathBuf, boot: Boot) -> Handle {
    // A name that cannot be a service gets no log files: they are another's.
    let output = match super::name_error(name, &sup.log_dir) {
        Some(_) => None,
        None => match Output::open(sup.state_dir(), &sup.log_dir, &sup.memlogd, name) {
            Ok(o) => Some(o),
            Err(e) => {
                log::error!("{name}: cannot set up its output: {e}");
                None
            }
        },
    };
    let [out_log, err_log] = logs::stream_names(name).map(|s| logs::file_of(&sup.log_dir, &s));
    let (tx, rx) = mpsc::unbounded_channel();
    // Until the task has looked at it, the service is as its boot says: a client asking
    // right away must not read `stopped` for a container that is about to be adopted.
    let (state, pid, reason) = match &boot {
        Boot::Start { .. } => (State::Starting, None, None),
        Boot::Idle => (State::Stopped, None, None),
        Boot::Failed(r) => (State::Failed, None, Some(r.clone())),
        Boot::Record(r) => match &r.service {
            Persisted::Stopped => (State::Stopped, None, None),
            Persisted::Exited => (State::Exited, None, None),
            Persisted::Failed { reason } => (State::Failed, None, Some(reason.clone())),
            Persisted::Restarting | Persisted::Launching => (State::Starting, None, None),
            Persisted::Running { container } => (
                State::Starting,
                Some(container.pid),
                Some("being adopted from the previous supervisor".to_string()),
            ),
            Persisted::Stopping { container } => (State::Stopping, Some(container.pid), None),
        },
    };
    let (st_tx, st_rx) = watch::channel(Status {
        name: name.to_string(),
        state,
        pid,
        restarts: 0,
        exit: None,
        exit_unknown: false,
        since: SystemTime::now(),
        reason,
        adopted: false,
        started: None,
        settled: false,
    });
    let handle = Handle {
        tx,
        status: st_rx,
        out_log,
        err_log,
    };
    sup.services().insert(name.to_string(), handle.clone());
    let task = Task {
        sup: sup.clone(),
        name: name.to_string(),
        dir,
        rx,
        status: st_tx,
        output,
        history: History::default(),
        policy: Policy::from(&Settings::default()),
        grace: Settings::default().stop_grace,
        log_policy: logs::Policy::default(),
        restarts: 0,
        deferred: None,
    };
    tokio::spawn(task.run(boot));
    handle
}

/// Runs blocking work on tokio's blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let r = tokio::task::spawn_blocking(f).await;
    super::memory::after_work();
    match r {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The container behind a running service, ours or adopted.
enum Ctl {
    Ours(Box<Running>),
    Adopted(Box<Adopted>),
}

impl Ctl {
    fn terminate(&mut self, rt: &OciRuntime) {
        match self {
            Ctl::Ours(r) => r.terminate(rt),
            Ctl::Adopted(a) => a.terminate(rt),
        }
    }

    fn kill(&mut self, rt: &OciRuntime) {
        match self {
            Ctl::Ours(r) => r.kill(rt),
            Ctl::Adopted(a) => a.kill(rt),
        }
    }

    /// After the init's end: nothing of the container may remain, then it is deleted and
    /// what was prepared for it undone.
    fn retire(self, rt: &OciRuntime, name: &str) -> UndoFailures {
        let left = match &self {
            Ctl::Ours(r) => r.kill_remaining(rt),
            Ctl::Adopted(a) => a.kill_remaining(rt),
        };
        if let Err(pids) = left {
            log::error!("{name}: processes {pids:?} are still alive after SIGKILL");
        }
        match self {
            Ctl::Ours(r) => r.finish(rt),
            Ctl::Adopted(a) => a.finish(rt),
        }
    }
}

/// How the end of the init is seen.
enum ExitWatch {
    /// Our child: the reaper hands over its status.
    Child(Waiter),
    /// Not our child: its pidfd polls readable when it ends.
    PidFd(AsyncFd<OwnedFd>),
}

struct Instance {
    pid: i32,
    ctl: Option<Ctl>,
    exit: ExitWatch,
    /// What the record says about it, for a supervisor that takes over.
    handover: Option<Handover>,
}

impl ExitWatch {
    /// The init's exit; None when it is not ours to know.
    async fn exited(&self) -> Option<ExitStatus> {
        match self {
            ExitWatch::Child(w) => Some(w.wait_async().await),
            ExitWatch::PidFd(fd) => {
                // Readiness stays set once the process has ended; an error here would
                // mean the descriptor is unusable, and the end cannot be seen otherwise.
                if fd.readable().await.is_err() {
                    std::future::pending::<()>().await;
                }
                None
            }
        }
    }
}

impl Instance {
    /// Runs `f` on the container on a blocking thread.
    async fn with_ctl<R: Send + 'static>(
        &mut self,
        rt: &OciRuntime,
        f: impl FnOnce(&mut Ctl, &OciRuntime) -> R + Send + 'static,
    ) -> R {
        let mut ctl = self
            .ctl
            .take()
            .expect("the container is here between calls");
        let rt = rt.clone();
        let (ctl, r) = blocking(move || {
            let r = f(&mut ctl, &rt);
            (ctl, r)
        })
        .await;
        self.ctl = Some(ctl);
        r
    }
}

enum Phase {
    /// Waiting for the services it starts after.
    After(Vec<watch::Receiver<Status>>),
    Down,
    /// Restarting at this instant.
    Waiting(tokio::time::Instant),
    Up(Box<Instance>),
}

enum LaunchError {
    /// The bundle or its settings cannot be used: retrying would not help.
    Config(String),
    /// A step failed; it may work next time.
    Launch(String),
    /// A step failed (the reason) and its rollback left something behind: starting again
    /// on top of it would not help either.
    Leftovers(String, UndoFailures),
}

impl LaunchError {
    fn reason(&self) -> &str {
        match self {
            LaunchError::Config(r) | LaunchError::Launch(r) | LaunchError::Leftovers(r, _) => r,
        }
    }
}

struct Task {
    sup: Arc<Sup>,
    name: String,
    dir: PathBuf,
    rx: mpsc::UnboundedReceiver<Cmd>,
    status: watch::Sender<Status>,
    /// None while it could not be set up (see [`spawn`]).
    output: Option<Output>,
    history: History,
    policy: Policy,
    grace: Duration,
    /// The log files' size cap and rotation, from the settings.
    log_policy: logs::Policy,
    restarts: u32,
    /// A command taken while a launch was being cut short, acted on once it is.
    deferred: Option<Cmd>,
}

/// How long the init may take to end after SIGKILL before the stop goes on without it.
const KILL_EXIT_WAIT: Duration = Duration::from_secs(5);

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

impl Task {
    fn rt(&self) -> &OciRuntime {
        &self.sup.ctx.runtime
    }

    /// Its output, set up now if it could not be before.
    fn output(&mut self) -> Result<&Output, String> {
        let o = match self.output.take() {
            Some(o) => o,
            None => Output::open(
                self.sup.state_dir(),
                &self.sup.log_dir,
                &self.sup.memlogd,
                &self.name,
            )
            .map_err(|e| format!("cannot set up its output: {e}"))?,
        };
        Ok(self.output.insert(o))
    }

    /// The next command: one deferred while a launch was cut short, then the queue's.
    async fn recv(&mut self) -> Option<Cmd> {
        match self.deferred.take() {
            Some(c) => Some(c),
            None => self.rx.recv().await,
        }
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            f(s);
            s.restarts = self.restarts;
        });
    }

    /// Enters a state where nothing runs.
    /// Running since `since`; the start order counts from now, for "last started first".
    fn set_running(&self, pid: i32, since: SystemTime, adopted: bool) {
        let seq = self.sup.seq.fetch_add(1, Ordering::Relaxed);
        self.set(|s| {
            s.state = State::Running;
            s.pid = Some(pid);
            s.since = since;
            s.reason = None;
            s.adopted = adopted;
            s.started = Some((since, seq));
            s.settled = true;
        });
    }

    fn set_down(&self, state: State, reason: Option<String>) {
        self.set(|s| {
            s.state = state;
            s.pid = None;
            s.since = SystemTime::now();
            s.reason = reason;
            s.adopted = false;
            s.started = None;
            s.settled = true;
        });
    }

    fn persist(&self, service: Persisted) {
        let r = Record {
            v: record::VERSION,
            name: self.name.clone(),
            bundle: self.dir.clone(),
            restarts: self.restarts,
            since: unix_secs(SystemTime::now()),
            service,
        };
        if let Err(e) = record::save(self.sup.state_dir(), &r) {
            let fault = match &e {
                record::RecordError::Io { source, .. } => {
                    super::throttle::io_fault("record", source)
                }
                record::RecordError::Invalid { .. } => "record".to_string(),
            };
            super::throttle::log(
                log::Level::Warn,
                &fault,
                format_args!(
                    "{}: cannot record its state: {}",
                    self.name,
                    crate::error_chain(&e)
                ),
            );
        }
    }

    fn unpersist(&self) {
        record::remove(self.sup.state_dir(), &self.name);
    }

    /// Applies the service's settings (best effort for one that is already running).
    fn apply(&mut self, s: &Settings) {
        self.policy = Policy::from(s);
        self.grace = s.stop_grace;
        // Given to the output at the next launch, before the new run's first line.
        self.log_policy = s.logs.policy();
        if let Some(o) = &self.output {
            o.log_policy().set(self.log_policy);
        }
    }

    async fn run(mut self, boot: Boot) {
        let mut phase = self.boot(boot).await;
        loop {
            phase = match phase {
                Phase::After(deps) => self.after(deps).await,
                Phase::Down => self.down().await,
                Phase::Waiting(at) => self.waiting(at).await,
                Phase::Up(inst) => self.up(inst).await,
            };
            if self.rx.is_closed() && matches!(phase, Phase::Down) {
                return;
            }
        }
    }

    async fn boot(&mut self, boot: Boot) -> Phase {
        match boot {
            Boot::Start { after } => Phase::After(after),
            Boot::Idle => {
                self.set_down(State::Stopped, None);
                Phase::Down
            }
            Boot::Failed(reason) => {
                log::error!("{}: {reason}", self.name);
                self.set_down(State::Failed, Some(reason));
                Phase::Down
            }
            Boot::Record(rec) => self.resume(*rec).await,
        }
    }

    /// Picks up where an earlier supervisor left this service.
    async fn resume(&mut self, rec: Record) -> Phase {
        self.restarts = rec.restarts;
        // What still runs writes into its FIFOs, which need draining.
        if matches!(
            rec.service,
            Persisted::Running { .. } | Persisted::Stopping { .. }
        ) && let Err(e) = self.output()
        {
            log::error!("{}: {e}", self.name);
        }
        let since = from_unix_secs(rec.since);
        if let Ok(s) = settings::load(&self.dir, &self.name) {
            self.apply(&s);
        }
        let down = |t: &Task, state, reason| {
            t.set_down(state, reason);
            t.set(|s| s.since = since);
            Phase::Down
        };
        match rec.service {
            Persisted::Stopped => down(self, State::Stopped, None),
            Persisted::Exited => down(self, State::Exited, None),
            Persisted::Failed { reason } => down(self, State::Failed, Some(reason)),
            Persisted::Restarting => self.start(None).await,
            Persisted::Launching => {
                log::warn!(
                    "{}: was being started when the last supervisor ended; clearing what it left",
                    self.name
                );
                let (rt, name, dir) = (self.rt().clone(), self.name.clone(), self.dir.clone());
                let f =
                    blocking(move || container::clear_interrupted_launch(&rt, &name, &dir)).await;
                if !f.is_empty() {
                    self.fail_cleanup(&f);
                    return Phase::Down;
                }
                self.start(None).await
            }
            Persisted::Running { container } => match self.take_over(container, since).await {
                Ok(inst) => Phase::Up(inst),
                Err(left) if !left.is_empty() => {
                    self.fail_cleanup(&left);
                    Phase::Down
                }
                Err(_) => {
                    let d = self.history.on_exit(&self.policy, Instant::now(), false);
                    self.decide(d)
                }
            },
            Persisted::Stopping { container } => {
                let left = match self.take_over(container, since).await {
                    Ok(mut inst) => {
                        log::info!(
                            "{}: finishing the stop the last supervisor began",
                            self.name
                        );
                        self.stop(&mut inst, None).await.1
                    }
                    Err(left) => left,
                };
                if !left.is_empty() {
                    self.fail_cleanup(&left);
                    return Phase::Down;
                }
                self.set_down(State::Stopped, None);
                self.persist(Persisted::Stopped);
                Phase::Down
            }
        }
    }

    /// Takes over a container an earlier supervisor recorded; when it is gone (or not the
    /// one recorded any more), clears what is left of it and returns what that cleanup
    /// could not undo.
    async fn take_over(
        &mut self,
        h: Handover,
        since: SystemTime,
    ) -> Result<Box<Instance>, UndoFailures> {
        let rt = self.rt().clone();
        let adopted = blocking(move || container::adopt(&rt, h)).await;
        match adopted {
            Ok(a) => {
                let fd = a
                    .pidfd()
                    .as_owned_fd()
                    .try_clone()
                    // SAFETY: the OwnedFd is a valid descriptor, owned by the AsyncFd for
                    // as long as it is registered.
                    .and_then(|fd| unsafe {
                        AsyncFd::register_with_interest(fd, Interest::READABLE)
                            .map_err(std::io::Error::from)
                    });
                let fd = match fd {
                    Ok(fd) => fd,
                    Err(e) => {
                        log::error!("{}: cannot watch pid {}: {e}", self.name, a.pid());
                        let rt = self.rt().clone();
                        let name = self.name.clone();
                        return Err(
                            blocking(move || Ctl::Adopted(Box::new(a)).retire(&rt, &name)).await,
                        );
                    }
                };
                let pid = a.pid();
                log::info!("{}: adopted, pid {pid}", self.name);
                self.set_running(pid, since, true);
                let handover = Some(a.handover().clone());
                Ok(Box::new(Instance {
                    pid,
                    ctl: Some(Ctl::Adopted(Box::new(a))),
                    exit: ExitWatch::PidFd(fd),
                    handover,
                }))
            }
            Err((e, h)) => {
                log::warn!(
                    "{}: not adopted: {}; clearing what is left of it",
                    self.name,
                    crate::error_chain(&e)
                );
                let rt = self.rt().clone();
                let f = blocking(move || {
                    if let Err(pids) =
                        container::kill_remaining(&rt, &h.name, h.cgroup_procs.as_deref())
                    {
                        log::error!("{}: processes {pids:?} survive SIGKILL", h.name);
                    }
                    container::replay(&rt, &h.cleanup)
                })
                .await;
                self.set(|s| {
                    s.exit = None;
                    s.exit_unknown = true;
                });
                Err(f)
            }
        }
    }

    async fn after(&mut self, mut deps: Vec<watch::Receiver<Status>>) -> Phase {
        deps.retain(|d| !d.borrow().settled);
        if deps.is_empty() {
            return self.start(None).await;
        }
        let waiting: Vec<String> = deps.iter().map(|d| d.borrow().name.clone()).collect();
        self.set(|s| {
            s.state = State::Starting;
            s.reason = Some(format!("waiting for {}", waiting.join(", ")));
        });
        let ev = tokio::select! {
            r = deps[0].changed() => Ok(r.is_err()),
            cmd = self.recv() => Err(cmd),
        };
        match ev {
            Ok(gone) => {
                if gone {
                    deps.remove(0);
                }
                Phase::After(deps)
            }
            Err(None) => Phase::Down,
            Err(Some(Cmd::Start(r))) | Err(Some(Cmd::Restart(r))) => self.start(Some(r)).await,
            Err(Some(Cmd::Stop(r))) => {
                self.set_down(State::Stopped, None);
                self.persist(Persisted::Stopped);
                let _ = r.send(Ok(format!("{}: stopped", self.name)));
                Phase::Down
            }
            Err(Some(Cmd::Shutdown { signalled, done })) => {
                self.shut(signalled, done);
                Phase::Down
            }
        }
    }

    /// Acknowledges a shutdown of a service with nothing running.
    fn shut(&mut self, signalled: oneshot::Sender<()>, done: oneshot::Sender<()>) {
        self.set_down(State::Stopped, None);
        self.unpersist();
        match &self.output {
            Some(o) => o.remove(),
            // An Output::open that failed part way may have made them (output.rs names
            // them so).
            None => {
                let dir = super::output::io_dir(self.sup.state_dir());
                for stream in ["out", "err"] {
                    let _ = std::fs::remove_file(dir.join(format!("{}.{stream}", self.name)));
                }
            }
        }
        self.rx.close();
        let _ = signalled.send(());
        let _ = done.send(());
    }

    /// A start asked for by an operator: the crash history and restart count begin again.
    async fn start_afresh(&mut self, r: Reply) -> Phase {
        self.history.reset();
        self.restarts = 0;
        self.start(Some(r)).await
    }

    async fn down(&mut self) -> Phase {
        match self.recv().await {
            None => Phase::Down,
            Some(Cmd::Start(r)) | Some(Cmd::Restart(r)) => self.start_afresh(r).await,
            Some(Cmd::Stop(r)) => {
                let _ = r.send(Ok(format!("{}: not running", self.name)));
                Phase::Down
            }
            Some(Cmd::Shutdown { signalled, done }) => {
                self.shut(signalled, done);
                Phase::Down
            }
        }
    }

    async fn waiting(&mut self, at: tokio::time::Instant) -> Phase {
        tokio::select! {
            // A command (a stop, the shutdown) wins over a restart that falls due with it.
            biased;
            cmd = self.recv() => match cmd {
                None => Phase::Down,
                Some(Cmd::Start(r)) | Some(Cmd::Restart(r)) => self.start_afresh(r).await,
                Some(Cmd::Stop(r)) => {
                    self.history.reset();
                    self.set_down(State::Stopped, None);
                    self.persist(Persisted::Stopped);
                    let _ = r.send(Ok(format!("{}: stopped (its restart is cancelled)", self.name)));
                    Phase::Down
                }
                Some(Cmd::Shutdown { signalled, done }) => {
                    self.shut(signalled, done);
                    Phase::Down
                }
            },
            _ = tokio::time::sleep_until(at) => self.start(None).await,
        }
    }

    async fn up(&mut self, mut inst: Box<Instance>) -> Phase {
        enum Ev {
            Exit(Option<ExitStatus>),
            Cmd(Cmd),
        }
        let ev = tokio::select! {
            st = inst.exit.exited() => Ev::Exit(st),
            cmd = self.recv() => match cmd {
                Some(cmd) => Ev::Cmd(cmd),
                // No more commands can come: only the end is left to wait for.
                None => Ev::Exit(inst.exit.exited().await),
            },
        };
        match ev {
            Ev::Exit(st) => {
                match st {
                    Some(st) => log::warn!("{}: pid {} ended: {st}", self.name, inst.pid),
                    None => log::warn!("{}: pid {} ended", self.name, inst.pid),
                }
                let left = self.retire(&mut inst).await;
                self.set(|s| {
                    s.exit = st;
                    s.exit_unknown = st.is_none();
                });
                if !left.is_empty() {
                    self.fail_cleanup(&left);
                    return Phase::Down;
                }
                let success = st.is_some_and(|s| s.success());
                let d = self.history.on_exit(&self.policy, Instant::now(), success);
                self.decide(d)
            }
            Ev::Cmd(Cmd::Start(r)) => {
                let _ = r.send(Err(format!(
                    "{} is already running (pid {})",
                    self.name, inst.pid
                )));
                Phase::Up(inst)
            }
            Ev::Cmd(Cmd::Stop(r)) => {
                let (st, left) = self.stop(&mut inst, None).await;
                self.history.reset();
                if !left.is_empty() {
                    let _ = r.send(Err(self.not_cleaned_up(st, &left)));
                    return Phase::Down;
                }
                self.set_down(State::Stopped, None);
                self.persist(Persisted::Stopped);
                let _ = r.send(Ok(format!("{}: stopped, {}", self.name, exit_words(st))));
                Phase::Down
            }
            Ev::Cmd(Cmd::Restart(r)) => {
                let (st, left) = self.stop(&mut inst, None).await;
                self.history.reset();
                if !left.is_empty() {
                    let _ = r.send(Err(self.not_cleaned_up(st, &left)));
                    return Phase::Down;
                }
                self.restarts = 0;
                self.start(Some(r)).await
            }
            Ev::Cmd(Cmd::Shutdown { signalled, done }) => {
                let (_, left) = self.stop(&mut inst, Some(signalled)).await;
                if !left.is_empty() {
                    log::error!("{}: cleanup failed: {left}", self.name);
                }
                let (s, _) = oneshot::channel();
                self.shut(s, done);
                Phase::Down
            }
        }
    }

    /// SIGTERM, the grace period, SIGKILL; then nothing of it remains, or what its cleanup
    /// could not undo is returned. Every step after the grace is bounded (the runtime's
    /// commands by their own limits, the waits here), so a stop ends within the grace and
    /// a fixed margin whatever the container's hooks do.
    async fn stop(
        &mut self,
        inst: &mut Instance,
        signalled: Option<oneshot::Sender<()>>,
    ) -> (Option<ExitStatus>, UndoFailures) {
        log::info!(
            "{}: stopping pid {} (SIGTERM, SIGKILL after {})",
            self.name,
            inst.pid,
            secs(self.grace)
        );
        self.set(|s| {
            s.state = State::Stopping;
            s.since = SystemTime::now();
        });
        if let Some(h) = &inst.handover {
            self.persist(Persisted::Stopping {
                container: h.clone(),
            });
        }
        let rt = self.rt().clone();
        inst.with_ctl(&rt, |c, rt| c.terminate(rt)).await;
        if let Some(s) = signalled {
            let _ = s.send(());
        }
        let st = match tokio::time::timeout(self.grace, inst.exit.exited()).await {
            Ok(st) => st,
            Err(_) => {
                log::warn!(
                    "{}: still running {} after SIGTERM: SIGKILL",
                    self.name,
                    secs(self.grace)
                );
                inst.with_ctl(&rt, |c, rt| c.kill(rt)).await;
                match tokio::time::timeout(KILL_EXIT_WAIT, inst.exit.exited()).await {
                    Ok(st) => st,
                    Err(_) => {
                        log::error!("{}: pid {} survives SIGKILL", self.name, inst.pid);
                        None
                    }
                }
            }
        };
        let left = self.retire(inst).await;
        if let Some(o) = &self.output {
            o.flush().await;
        }
        self.set(|s| {
            s.exit = st;
            s.exit_unknown = st.is_none();
        });
        if left.is_empty() {
            log::info!("{}: stopped, {}", self.name, exit_words(st));
        }
        (st, left)
    }

    /// The end of a container: kill what is left, delete it, undo its preparation; what
    /// could not be undone is returned.
    async fn retire(&mut self, inst: &mut Instance) -> UndoFailures {
        let Some(ctl) = inst.ctl.take() else {
            return UndoFailures::default();
        };
        let rt = self.rt().clone();
        let name = self.name.clone();
        blocking(move || ctl.retire(&rt, &name)).await
    }

    /// A container whose cleanup left something behind (a mount, the runtime's container):
    /// the service is failed, never reported stopped nor started again on top of what is
    /// left, and says what that is. Returns the reason.
    fn fail_cleanup(&mut self, left: &UndoFailures) -> String {
        let reason = format!("cleanup failed: {left}");
        log::error!("{}: {reason}", self.name);
        self.set_down(State::Failed, Some(reason.clone()));
        self.persist(Persisted::Failed {
            reason: reason.clone(),
        });
        reason
    }

    /// The answer to a stop whose cleanup failed (the service is failed then).
    fn not_cleaned_up(&mut self, st: Option<ExitStatus>, left: &UndoFailures) -> String {
        let reason = self.fail_cleanup(left);
        format!(
            "{}: its processes are gone ({}), but it is not stopped: {reason}",
            self.name,
            exit_words(st)
        )
    }

    /// Acts on a restart decision.
    fn decide(&mut self, d: Decision) -> Phase {
        match d {
            Decision::Restart(delay) => {
                self.restarts += 1;
                log::info!(
                    "{}: restart {} in {}",
                    self.name,
                    self.restarts,
                    secs(delay)
                );
                self.set_down(
                    State::Restarting,
                    Some(format!("restart {} after {}", self.restarts, secs(delay))),
                );
                self.persist(Persisted::Restarting);
                Phase::Waiting(tokio::time::Instant::now() + delay)
            }
            Decision::Stay => {
                log::info!("{}: left down, as its restart policy says", self.name);
                self.set_down(State::Exited, None);
                self.persist(Persisted::Exited);
                Phase::Down
            }
            Decision::Fail { exits, window } => {
                let reason = format!("crash loop: {exits} exits within {}", secs(window));
                log::error!("{}: {reason}; marked failed", self.name);
                self.set_down(State::Failed, Some(reason.clone()));
                self.persist(Persisted::Failed { reason });
                Phase::Down
            }
        }
    }

    /// Launches the container; a failure counts as an exit (or fails the service for good
    /// when the bundle itself is wrong). A stop, restart or shutdown that comes meanwhile
    /// cuts the launch short (a hook may hold it up for as long as the runtime's bound).
    async fn start(&mut self, reply: Option<Reply>) -> Phase {
        self.set(|s| {
            s.state = State::Starting;
            s.since = SystemTime::now();
            s.reason = None;
            s.pid = None;
            s.adopted = false;
        });
        if let Some(e) = super::name_error(&self.name, &self.sup.log_dir) {
            return self.launch_failed(LaunchError::Config(e), reply);
        }
        // Read first: a launch that fails follows them too (restart policy, backoff).
        let (dir, name) = (self.dir.clone(), self.name.clone());
        match blocking(move || settings::load(&dir, &name)).await {
            Ok(s) => self.apply(&s),
            Err(e) => {
                return self.launch_failed(LaunchError::Config(crate::error_chain(&e)), reply);
            }
        }
        self.persist(Persisted::Launching);
        let cancel = Cancel::new();
        let mut job = match self.launch_job(&cancel) {
            Ok(j) => j,
            Err(e) => return self.launch_failed(e, reply),
        };
        let mut interrupt = None;
        let mut open = true;
        let launched = loop {
            tokio::select! {
                r = &mut job => break r,
                cmd = self.rx.recv(), if open && interrupt.is_none() => match cmd {
                    None => open = false,
                    Some(Cmd::Start(r)) => {
                        let _ = r.send(Err(format!("{} is being started already", self.name)));
                    }
                    Some(cmd) => {
                        log::info!("{}: cutting its start short", self.name);
                        let c = cancel.clone();
                        blocking(move || c.fire()).await;
                        interrupt = Some(cmd);
                    }
                },
            }
        };
        super::memory::after_work();
        let launched = match launched {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match (launched, interrupt) {
            (Ok(running), interrupt) => {
                let inst = self.running(running);
                let msg = format!("{}: running, pid {}", self.name, inst.pid);
                log::info!("{msg}");
                let _ = reply.map(|r| r.send(Ok(msg)));
                // Up before the command could cut it short: it is acted on as it would be
                // a moment later.
                self.deferred = interrupt;
                Phase::Up(inst)
            }
            (Err(e), Some(cmd)) => self.launch_cut_short(e, reply, cmd),
            (Err(e), None) => self.launch_failed(e, reply),
        }
    }

    fn launch_failed(&mut self, e: LaunchError, reply: Option<Reply>) -> Phase {
        match e {
            LaunchError::Config(reason) | LaunchError::Leftovers(reason, _) => {
                log::error!("{}: {reason}", self.name);
                self.set_down(State::Failed, Some(reason.clone()));
                self.persist(Persisted::Failed {
                    reason: reason.clone(),
                });
                let _ = reply.map(|r| r.send(Err(format!("{}: {reason}", self.name))));
                Phase::Down
            }
            LaunchError::Launch(reason) => {
                log::error!("{}: {reason}", self.name);
                self.set(|s| {
                    s.exit = None;
                    s.exit_unknown = false;
                });
                let _ = reply.map(|r| r.send(Err(format!("{}: {reason}", self.name))));
                let d = self.history.on_exit(&self.policy, Instant::now(), false);
                let phase = self.decide(d);
                self.set(|s| {
                    s.reason = Some(match &s.reason {
                        Some(r) => format!("{r}: {reason}"),
                        None => reason.clone(),
                    })
                });
                phase
            }
        }
    }

    /// A launch cut short by `cmd` (a stop, restart or shutdown): nothing of it runs, and
    /// the command is answered (or, for a restart, carried out).
    fn launch_cut_short(&mut self, e: LaunchError, reply: Option<Reply>, cmd: Cmd) -> Phase {
        let reason = e.reason();
        log::info!("{}: its start was cut short: {reason}", self.name);
        let _ = reply.map(|r| {
            r.send(Err(format!(
                "{}: its start was cut short: {reason}",
                self.name
            )))
        });
        self.history.reset();
        if let LaunchError::Leftovers(_, left) = &e {
            let leftover = self.fail_cleanup(left);
            match cmd {
                Cmd::Stop(r) | Cmd::Restart(r) | Cmd::Start(r) => {
                    let _ = r.send(Err(format!("{}: it is not stopped: {leftover}", self.name)));
                }
                Cmd::Shutdown { signalled, done } => self.shut(signalled, done),
            }
            return Phase::Down;
        }
        self.set_down(State::Stopped, None);
        self.persist(Persisted::Stopped);
        match cmd {
            Cmd::Stop(r) => {
                let _ = r.send(Ok(format!(
                    "{}: stopped (its start was cut short)",
                    self.name
                )));
            }
            Cmd::Shutdown { signalled, done } => self.shut(signalled, done),
            restart @ (Cmd::Restart(_) | Cmd::Start(_)) => self.deferred = Some(restart),
        }
        Phase::Down
    }

    /// Starts the launch on a blocking thread; `cancel` cuts its runtime commands short.
    fn launch_job(
        &mut self,
        cancel: &Cancel,
    ) -> Result<tokio::task::JoinHandle<Result<Running, LaunchError>>, LaunchError> {
        let io_dir = super::output::io_dir(self.sup.state_dir());
        let output = self.output().map_err(LaunchError::Launch)?;
        let stdio = output.stdio().map_err(|e| {
            LaunchError::Launch(format!(
                "cannot open its output FIFOs in {}: {e}",
                io_dir.display()
            ))
        })?;
        output.reopen_logs();
        output.log_policy().set(self.log_policy);
        let dir = self.dir.clone();
        let ctx = Ctx {
            runtime: self.rt().cancelled_by(cancel),
            ..self.sup.ctx.clone()
        };
        Ok(tokio::task::spawn_blocking(move || {
            let bundle =
                Bundle::open(&dir).map_err(|e| LaunchError::Config(crate::error_chain(&e)))?;
            container::launch(&bundle, &ctx, &stdio, Mode::Detached).map_err(|e| {
                if e.undo.is_empty() {
                    LaunchError::Launch(e.report())
                } else {
                    LaunchError::Leftovers(e.report(), e.undo.clone())
                }
            })
        }))
    }

    /// A launched container becomes the running instance.
    fn running(&mut self, mut running: Running) -> Box<Instance> {
        let waiter = running.exit_waiter();
        let handover = running.handover();
        let pid = waiter.pid();
        if let Some(h) = &handover {
            self.persist(Persisted::Running {
                container: h.clone(),
            });
        }
        self.set_running(pid, SystemTime::now(), false);
        Box::new(Instance {
            pid,
            ctl: Some(Ctl::Ours(Box::new(running))),
            exit: ExitWatch::Child(waiter),
            handover,
        })
    }
}

fn exit_words(st: Option<ExitStatus>) -> String {
    match st {
        Some(st) => st.to_string(),
        None => "exit status unknown".into(),
    }
}
