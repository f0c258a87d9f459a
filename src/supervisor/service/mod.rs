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
//! A service with `ready:` stays `starting`, its container up, until it is ready; not
//! ready within `readyTimeout`, or unhealthy once ready, it is stopped and its end counts
//! as an exit, with the reason (see ready.rs, which watches it).
//!
//! Everything that blocks (the runtime, mounts, the bundle on disk) runs on tokio's
//! blocking threads; the task itself only waits: for the init's exit (the reaper's waiter
//! for our own children, the pidfd for adopted ones), for commands, for timers.

use super::output::Output;
use super::policy::{Decision, History, Policy};
use super::protocol::State;
use super::ready::{self, Event, Inputs, Monitor, Plan};
use super::record::{self, Persisted, Record};
use super::settings::Settings;
use super::types::{
    Boot, Cmd, Handle, Reply, ServiceError, Status, Sup, exit_words, from_unix_secs, unix_secs,
};
use crate::container::{Handover, Running};
use crate::logs::{self};
use crate::oci_runtime::{Cancel, OciRuntime};
use crate::process::{ExitStatus, Waiter};
use crate::undo::UndoFailures;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, watch};

mod adopt;
mod effects;
mod instance;
mod launch;
mod stop;
#[cfg(test)]
mod tests;
mod up;

use effects::{Container, Effects, Exit, System};
use instance::Instance;
use launch::SetupError;
use std::io;

/// Starts the task of service `name` (bundle `dir`) and registers it. Its output is set up
/// here, or, when that fails (no descriptor left), again at each launch, which fails with
/// the reason meanwhile: the service is listed either way.
pub fn spawn(sup: &Arc<Sup>, name: &str, dir: PathBuf, boot: Boot) -> Handle {
    spawn_with(sup, System::new(&sup.ctx), name, dir, boot)
}

/// [`spawn`], with what the task does outside itself going through `fx`.
fn spawn_with<E: Effects>(sup: &Arc<Sup>, fx: E, name: &str, dir: PathBuf, boot: Boot) -> Handle {
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
            Persisted::Running { container, .. } => (
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
        notify_status: None,
        check: None,
    });
    let handle = Handle {
        tx,
        status: st_rx,
        out_log,
        err_log,
    };
    sup.services().insert(name.to_string(), handle.clone());
    let task = Task {
        fx,
        sup: sup.clone(),
        name: name.to_string(),
        dir,
        rx,
        status: st_tx,
        output,
        history: History::default(),
        policy: Policy::from(&Settings::default()),
        grace: Settings::default().stop_grace,
        plan: Plan::default(),
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

/// Now, on tokio's clock (paused in the tests), for the policy's and the monitor's
/// `std` instants.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

enum Phase<C: Container> {
    /// Waiting for the services it starts after to be ready, until the instant.
    After(Vec<watch::Receiver<Status>>, tokio::time::Instant),
    Down,
    /// Restarting at this instant.
    Waiting(tokio::time::Instant),
    Up(Box<Instance<C>>),
}

/// Why a launch failed.
#[derive(Debug)]
pub(crate) enum LaunchError {
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

struct Task<E: Effects> {
    /// What it does outside itself.
    fx: E,
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
    /// Its readiness and health checks, from the settings.
    plan: Plan,
    /// The log files' size cap and rotation, from the settings.
    log_policy: logs::Policy,
    restarts: u32,
    /// A command taken while a launch was being cut short, acted on once it is.
    deferred: Option<Cmd>,
}

/// How long the init may take to end after SIGKILL before the stop goes on without it.
const KILL_EXIT_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// The phase of a task whose world is `E`.
type PhaseOf<E> = Phase<<E as Effects>::Container>;

impl<E: Effects> Task<E> {
    /// Its output, set up now if it could not be before.
    fn output(&mut self) -> Result<&Output, SetupError> {
        let o = match self.output.take() {
            Some(o) => o,
            None => Output::open(
                self.sup.state_dir(),
                &self.sup.log_dir,
                &self.sup.memlogd,
                &self.name,
            )
            .map_err(SetupError::Output)?,
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

    /// Up since `since`, `running` if ready, `starting` until then; the start order counts
    /// from now, for "last started first".
    fn set_running(&self, pid: i32, since: SystemTime, adopted: bool, ready: bool) {
        let seq = self.sup.seq.fetch_add(1, Ordering::Relaxed);
        let waiting = (!ready).then(|| self.plan.waiting());
        self.set(|s| {
            s.state = if ready {
                State::Running
            } else {
                State::Starting
            };
            s.pid = Some(pid);
            s.since = since;
            s.reason = waiting;
            s.adopted = adopted;
            s.started = Some((since, seq));
            s.settled = ready;
        });
    }

    /// Starts watching a container that is up, if its settings ask for anything.
    fn monitor(
        &self,
        inst: &Instance<E::Container>,
        inputs: Inputs,
        ready: bool,
    ) -> Option<Monitor> {
        if !self.plan.watches() {
            return None;
        }
        let pid = inst.pid;
        let ident = self.fx.identity(pid);
        let start_time = match &inst.handover {
            Some(h) => h.start_time,
            None => crate::process::start_time(pid),
        };
        let (fx, name) = (self.fx.clone(), self.name.clone());
        let prober: ready::Prober = Box::new(move |p| fx.probe(&name, pid, start_time, p));
        Some(ready::start(
            &self.name,
            self.plan.clone(),
            ident,
            prober,
            inputs,
            ready,
        ))
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
        if let Err(e) = self.fx.save_record(&r) {
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
        self.fx.remove_record(&self.name);
    }

    /// Applies the service's settings (best effort for one that is already running).
    fn apply(&mut self, s: &Settings) {
        self.policy = Policy::from(s);
        self.grace = s.stop_grace;
        self.plan = Plan::of(s);
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
                Phase::After(deps, until) => self.after(deps, until).await,
                Phase::Down => self.down().await,
                Phase::Waiting(at) => self.waiting(at).await,
                Phase::Up(inst) => self.up(inst).await,
            };
            if self.rx.is_closed() && matches!(phase, Phase::Down) {
                return;
            }
        }
    }

    async fn boot(&mut self, boot: Boot) -> PhaseOf<E> {
        match boot {
            Boot::Start { after, within } => {
                Phase::After(after, tokio::time::Instant::now() + within)
            }
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

    async fn after(
        &mut self,
        mut deps: Vec<watch::Receiver<Status>>,
        until: tokio::time::Instant,
    ) -> PhaseOf<E> {
        deps.retain(|d| !d.borrow().settled);
        if deps.is_empty() {
            return self.start(None).await;
        }
        let waiting: Vec<String> = deps.iter().map(|d| d.borrow().name.clone()).collect();
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        self.set(|s| {
            s.state = State::Starting;
            s.reason = Some(format!(
                "waiting for {} to be ready (at most {} more)",
                waiting.join(", "),
                secs(Duration::from_secs(
                    left.as_secs() + u64::from(left.subsec_nanos() > 0)
                ))
            ));
        });
        let ev = tokio::select! {
            r = deps[0].changed() => Ok(r.is_err()),
            cmd = self.recv() => Err(cmd),
            _ = tokio::time::sleep_until(until) => {
                log::warn!(
                    "{}: {} not ready after its afterTimeout; starting without waiting longer",
                    self.name,
                    waiting.join(", ")
                );
                return self.start(None).await;
            }
        };
        match ev {
            Ok(gone) => {
                if gone {
                    deps.remove(0);
                }
                Phase::After(deps, until)
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
    async fn start_afresh(&mut self, r: Reply) -> PhaseOf<E> {
        self.history.reset();
        self.restarts = 0;
        self.start(Some(r)).await
    }

    async fn down(&mut self) -> PhaseOf<E> {
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

    async fn waiting(&mut self, at: tokio::time::Instant) -> PhaseOf<E> {
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

    /// Acts on a restart decision.
    fn decide(&mut self, d: Decision) -> PhaseOf<E> {
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
}
