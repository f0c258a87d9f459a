//! A service that is up: its container's end, the commands it takes meanwhile, and what
//! its monitor saw (readiness, health, a failure counted as an exit).

use super::*;

impl<E: Effects> Task<E> {
    pub(super) async fn up(&mut self, mut inst: Box<Instance<E::Container>>) -> PhaseOf<E> {
        enum Ev {
            Exit(Option<ExitStatus>),
            Cmd(Cmd),
            Watched(Option<Event>),
        }
        let ev = tokio::select! {
            st = inst.exit.exited() => Ev::Exit(st),
            cmd = self.recv() => match cmd {
                Some(cmd) => Ev::Cmd(cmd),
                // No more commands can come: only the end is left to wait for.
                None => Ev::Exit(inst.exit.exited().await),
            },
            ev = async {
                match inst.monitor.as_mut() {
                    Some(m) => m.events.recv().await,
                    None => std::future::pending().await,
                }
            } => Ev::Watched(ev),
        };
        match ev {
            Ev::Watched(None) => {
                inst.monitor = None;
                Phase::Up(inst)
            }
            Ev::Watched(Some(ev)) => self.watched(inst, ev).await,
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
                let d = self.history.on_exit(&self.policy, now(), success);
                self.decide(d)
            }
            Ev::Cmd(Cmd::Start(r)) => {
                let _ = r.send(Err(ServiceError::Running {
                    name: self.name.clone(),
                    pid: inst.pid,
                }));
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

    /// What the monitor of the running container saw.
    async fn watched(&mut self, inst: Box<Instance<E::Container>>, ev: Event) -> PhaseOf<E> {
        match ev {
            Event::Ready => {
                let took = self.status.borrow().since.elapsed().unwrap_or_default();
                log::info!(
                    "{}: ready, pid {} ({:.1}s after its start)",
                    self.name,
                    inst.pid,
                    took.as_secs_f64()
                );
                self.set(|s| {
                    s.state = State::Running;
                    s.reason = None;
                    s.since = SystemTime::now();
                    s.settled = true;
                });
                if let Some(h) = &inst.handover {
                    self.persist(Persisted::Running {
                        container: h.clone(),
                        ready: true,
                    });
                }
            }
            Event::Text(t) => self.set(|s| s.notify_status = Some(t)),
            Event::Stopping => {
                log::info!("{}: it says it is stopping (STOPPING=1)", self.name);
                self.set(|s| s.reason = Some("stopping (it sent STOPPING=1)".into()));
            }
            Event::Check(c) => {
                if !c.ok && c.kind == ready::Kind::Health {
                    log::warn!(
                        "{}: health check failed ({} in a row): {}",
                        self.name,
                        c.failures,
                        crate::bundle::printable_name(&c.summary)
                    );
                }
                self.set(|s| s.check = Some(c));
            }
            Event::Fail(why) => return self.unwell(inst, why).await,
        }
        Phase::Up(inst)
    }

    /// A running container that failed what its settings check (readiness in time, its
    /// health, its watchdog): stopped, and its end counted as an exit with the reason.
    async fn unwell(&mut self, mut inst: Box<Instance<E::Container>>, why: String) -> PhaseOf<E> {
        log::warn!("{}: {why}; stopping it", self.name);
        let (_, left) = self.stop(&mut inst, None).await;
        if !left.is_empty() {
            self.fail_cleanup(&left);
            return Phase::Down;
        }
        let d = self.history.on_exit(&self.policy, now(), false);
        let phase = self.decide(d);
        let reason = {
            let st = self.status.borrow();
            match &st.reason {
                Some(r) => format!("{r}: {why}"),
                None => why.clone(),
            }
        };
        if self.status.borrow().state == State::Failed {
            self.persist(Persisted::Failed {
                reason: reason.clone(),
            });
        }
        self.set(|s| s.reason = Some(reason));
        phase
    }
}
