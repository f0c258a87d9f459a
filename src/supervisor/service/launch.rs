//! Starting a service: its settings read first, the launch on a blocking thread (cut
//! short by a stop or a shutdown), and what a failed launch becomes.

use super::*;
use crate::bundle::ConfigExtra;
use crate::supervisor::checks::Ready;
use crate::supervisor::notify::{self, NotifySocket};
use crate::supervisor::ready::ReadyFifo;

/// What a launch needs of the supervisor itself and could not get.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("cannot set up its output: {0}")]
    Output(io::Error),
    /// `dir` holds the FIFOs.
    #[error("cannot open its output FIFOs in {}: {source}", dir.display())]
    OutputFifos { dir: PathBuf, source: io::Error },
    #[error("cannot bind its notify socket {}: {source}", path.display())]
    NotifySocket { path: PathBuf, source: io::Error },
    /// `dir` holds the FIFO.
    #[error("cannot make its readiness FIFO in {}: {source}", dir.display())]
    ReadyFifo { dir: PathBuf, source: io::Error },
    #[error("/dev/null: {0}")]
    DevNull(io::Error),
}

impl From<SetupError> for LaunchError {
    fn from(e: SetupError) -> Self {
        LaunchError::Launch(e.to_string())
    }
}

/// A launch under way on a blocking thread.
pub(super) type Job<C> = tokio::task::JoinHandle<Result<C, LaunchError>>;

impl<E: Effects> Task<E> {
    /// Launches the container; a failure counts as an exit (or fails the service for good
    /// when the bundle itself is wrong). A stop, restart or shutdown that comes meanwhile
    /// cuts the launch short (a hook may hold it up for as long as the runtime's bound).
    pub(super) async fn start(&mut self, reply: Option<Reply>) -> PhaseOf<E> {
        self.set(|s| {
            s.state = State::Starting;
            s.since = SystemTime::now();
            s.reason = None;
            s.pid = None;
            s.adopted = false;
            s.notify_status = None;
            s.check = None;
        });
        if let Some(e) = crate::supervisor::name_error(&self.name, &self.sup.log_dir) {
            return self.launch_failed(LaunchError::Config(e.to_string()), reply);
        }
        // Read first: a launch that fails follows them too (restart policy, backoff).
        let (dir, name) = (self.dir.clone(), self.name.clone());
        let fx = self.fx.clone();
        match blocking(move || fx.settings(&dir, &name)).await {
            Ok(s) => self.apply(&s),
            Err(e) => {
                return self.launch_failed(LaunchError::Config(crate::error_chain(&e)), reply);
            }
        }
        self.persist(Persisted::Launching);
        let cancel = Cancel::new();
        let (mut job, inputs) = match self.launch_job(&cancel) {
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
                        let _ = r.send(Err(ServiceError::Starting {
                            name: self.name.clone(),
                        }));
                    }
                    Some(cmd) => {
                        log::info!("{}: cutting its start short", self.name);
                        let (fx, c) = (self.fx.clone(), cancel.clone());
                        blocking(move || fx.cut_short(&c)).await;
                        interrupt = Some(cmd);
                    }
                },
            }
        };
        crate::supervisor::memory::after_work();
        let launched = match launched {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let launched = match launched {
            Ok(running) => self.running(running, inputs).await,
            Err(e) => Err(e),
        };
        match (launched, interrupt) {
            (Ok(inst), interrupt) => {
                let msg = if self.plan.ready.is_some() {
                    let waiting = self.plan.waiting();
                    format!("{}: started, pid {}; {waiting}", self.name, inst.pid)
                } else {
                    format!("{}: running, pid {}", self.name, inst.pid)
                };
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

    pub(super) fn launch_failed(&mut self, e: LaunchError, reply: Option<Reply>) -> PhaseOf<E> {
        crate::bundle::remove_generated(self.sup.state_dir(), &self.name);
        match e {
            LaunchError::Config(reason) | LaunchError::Leftovers(reason, _) => {
                log::error!("{}: {reason}", self.name);
                self.set_down(State::Failed, Some(reason.clone()));
                self.persist(Persisted::Failed {
                    reason: reason.clone(),
                });
                let name = self.name.clone();
                let _ = reply.map(|r| r.send(Err(ServiceError::Launch { name, reason })));
                Phase::Down
            }
            LaunchError::Launch(reason) => {
                log::error!("{}: {reason}", self.name);
                self.set(|s| {
                    s.exit = None;
                    s.exit_unknown = false;
                });
                let _ = reply.map(|r| {
                    r.send(Err(ServiceError::Launch {
                        name: self.name.clone(),
                        reason: reason.clone(),
                    }))
                });
                let d = self.history.on_exit(&self.policy, now(), false);
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
    pub(super) fn launch_cut_short(
        &mut self,
        e: LaunchError,
        reply: Option<Reply>,
        cmd: Cmd,
    ) -> PhaseOf<E> {
        crate::bundle::remove_generated(self.sup.state_dir(), &self.name);
        let reason = e.reason();
        log::info!("{}: its start was cut short: {reason}", self.name);
        let _ = reply.map(|r| {
            r.send(Err(ServiceError::CutShort {
                name: self.name.clone(),
                reason: reason.to_string(),
            }))
        });
        self.history.reset();
        if let LaunchError::Leftovers(_, left) = &e {
            self.fail_cleanup(left);
            match cmd {
                Cmd::Stop(r) | Cmd::Restart(r) | Cmd::Start(r) => {
                    let _ = r.send(Err(ServiceError::LeftBehind {
                        name: self.name.clone(),
                        left: left.clone(),
                    }));
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
    /// Also returns what the container's readiness and health are read from (its notify
    /// socket, its readiness FIFO), made before the container can use them.
    pub(super) fn launch_job(
        &mut self,
        cancel: &Cancel,
    ) -> Result<(Job<E::Container>, Inputs), LaunchError> {
        let io_dir = crate::supervisor::output::io_dir(self.sup.state_dir());
        let (inputs, extra, fds) = self.readiness_inputs()?;
        let output = self.output()?;
        let mut stdio = output.stdio().map_err(|source| SetupError::OutputFifos {
            dir: io_dir,
            source,
        })?;
        stdio.extra = fds;
        output.reopen_logs();
        output.log_policy().set(self.log_policy);
        let (fx, dir, cancel) = (self.fx.clone(), self.dir.clone(), cancel.clone());
        let job = tokio::task::spawn_blocking(move || fx.launch(&dir, extra, &stdio, &cancel));
        Ok((job, inputs))
    }

    /// What the container needs for its readiness and watchdog: the notify socket (bound
    /// into it, with its variables), the readiness FIFO as descriptor N (3 to N-1 are
    /// /dev/null: the runtime hands over a run of descriptors from 3).
    fn readiness_inputs(&self) -> Result<(Inputs, ConfigExtra, Vec<OwnedFd>), SetupError> {
        let state_dir = self.sup.state_dir();
        let mut inputs = Inputs::default();
        let mut extra = ConfigExtra::default();
        let mut fds = Vec::new();
        if self.plan.wants_notify() {
            let sock = NotifySocket::bind(state_dir, &self.name).map_err(|source| {
                SetupError::NotifySocket {
                    path: notify::host_path(state_dir, &self.name),
                    source,
                }
            })?;
            extra = sock.config(self.plan.watchdog());
            inputs.notify = Some(sock);
        }
        if let Some(Ready::Fd(n)) = self.plan.ready {
            let (fifo, theirs) = ReadyFifo::create(state_dir, &self.name).map_err(|source| {
                SetupError::ReadyFifo {
                    dir: ready::fifo_dir(state_dir),
                    source,
                }
            })?;
            for _ in 3..n {
                let null = std::fs::File::open("/dev/null").map_err(SetupError::DevNull)?;
                fds.push(OwnedFd::from(null));
            }
            fds.push(theirs);
            inputs.fifo = Some(fifo);
        }
        Ok((inputs, extra, fds))
    }

    /// A launched container becomes the running instance, watched as its settings say; one
    /// whose end cannot be watched is retired at once, as a launch that failed.
    pub(super) async fn running(
        &mut self,
        mut running: E::Container,
        inputs: Inputs,
    ) -> Result<Box<Instance<E::Container>>, LaunchError> {
        let exit = match running.exit() {
            Ok(exit) => exit,
            Err(e) => {
                let reason = format!("cannot watch pid {}: {e}", running.pid());
                let name = self.name.clone();
                let left = blocking(move || running.retire(&name)).await;
                return Err(if left.is_empty() {
                    LaunchError::Launch(reason)
                } else {
                    LaunchError::Leftovers(reason, left)
                });
            }
        };
        let handover = running.handover();
        let pid = running.pid();
        let ready = self.plan.ready.is_none();
        if let Some(h) = &handover {
            self.persist(Persisted::Running {
                container: h.clone(),
                ready,
            });
        }
        self.set_running(pid, SystemTime::now(), false, ready);
        let mut inst = Box::new(Instance {
            pid,
            ctl: Some(running),
            exit,
            handover,
            monitor: None,
        });
        inst.monitor = self.monitor(&inst, inputs, ready);
        Ok(inst)
    }
}
