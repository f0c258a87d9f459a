//! Starting a service: its settings read first, the launch on a blocking thread (cut
//! short by a stop or a shutdown), and what a failed launch becomes.

use super::*;

impl Task {
    /// Launches the container; a failure counts as an exit (or fails the service for good
    /// when the bundle itself is wrong). A stop, restart or shutdown that comes meanwhile
    /// cuts the launch short (a hook may hold it up for as long as the runtime's bound).
    pub(super) async fn start(&mut self, reply: Option<Reply>) -> Phase {
        self.set(|s| {
            s.state = State::Starting;
            s.since = SystemTime::now();
            s.reason = None;
            s.pid = None;
            s.adopted = false;
        });
        if let Some(e) = crate::supervisor::name_error(&self.name, &self.sup.log_dir) {
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
        crate::supervisor::memory::after_work();
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

    pub(super) fn launch_failed(&mut self, e: LaunchError, reply: Option<Reply>) -> Phase {
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
    pub(super) fn launch_cut_short(
        &mut self,
        e: LaunchError,
        reply: Option<Reply>,
        cmd: Cmd,
    ) -> Phase {
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
    pub(super) fn launch_job(
        &mut self,
        cancel: &Cancel,
    ) -> Result<tokio::task::JoinHandle<Result<Running, LaunchError>>, LaunchError> {
        let io_dir = crate::supervisor::output::io_dir(self.sup.state_dir());
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
    pub(super) fn running(&mut self, mut running: Running) -> Box<Instance> {
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
