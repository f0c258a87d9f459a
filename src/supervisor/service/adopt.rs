//! Taking over what a killed supervisor left: a recorded service resumed, a running
//! container adopted, what it was doing finished.

use super::*;
use crate::supervisor::checks::Ready;
use crate::supervisor::notify::NotifySocket;
use crate::supervisor::ready::ReadyFifo;

impl<E: Effects> Task<E> {
    /// Picks up where an earlier supervisor left this service.
    pub(super) async fn resume(&mut self, rec: Record) -> PhaseOf<E> {
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
        if let Ok(s) = self.fx.settings(&self.dir, &self.name) {
            self.apply(&s);
        }
        let down = |t: &Self, state, reason| {
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
                let (fx, name, dir) = (self.fx.clone(), self.name.clone(), self.dir.clone());
                let f = blocking(move || fx.clear_interrupted_launch(&name, &dir)).await;
                if !f.is_empty() {
                    self.fail_cleanup(&f);
                    return Phase::Down;
                }
                self.start(None).await
            }
            Persisted::Running { container, ready } => {
                match self.take_over(container, since, ready).await {
                    Ok(mut inst) => {
                        let inputs = self.readopt_inputs(ready);
                        inst.monitor = self.monitor(&inst, inputs, ready);
                        Phase::Up(inst)
                    }
                    Err(left) if !left.is_empty() => {
                        self.fail_cleanup(&left);
                        Phase::Down
                    }
                    Err(_) => {
                        let d = self.history.on_exit(&self.policy, now(), false);
                        self.decide(d)
                    }
                }
            }
            Persisted::Stopping { container } => {
                let left = match self.take_over(container, since, true).await {
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

    /// What an adopted container's readiness and watchdog are read from: a fresh notify
    /// socket at the path the container already sees, and the readiness FIFO it holds
    /// (a line written while no supervisor ran waits in it). A READY=1 sent while no
    /// supervisor listened is lost: a service not ready yet gets its readyTimeout again.
    fn readopt_inputs(&self, ready: bool) -> Inputs {
        let state_dir = self.sup.state_dir();
        let mut inputs = Inputs::default();
        if self.plan.wants_notify() {
            match NotifySocket::bind(state_dir, &self.name) {
                Ok(s) => inputs.notify = Some(s),
                Err(e) => log::error!("{}: cannot bind its notify socket again: {e}", self.name),
            }
        }
        if !ready && let Some(Ready::Fd(_)) = self.plan.ready {
            match ReadyFifo::reopen(state_dir, &self.name) {
                Ok(f) => inputs.fifo = Some(f),
                Err(e) => log::error!("{}: cannot open its readiness FIFO again: {e}", self.name),
            }
        }
        inputs
    }

    /// Takes over a container an earlier supervisor recorded; when it is gone (or not the
    /// one recorded any more), clears what is left of it and returns what that cleanup
    /// could not undo.
    pub(super) async fn take_over(
        &mut self,
        h: Handover,
        since: SystemTime,
        ready: bool,
    ) -> Result<Box<Instance<E::Container>>, UndoFailures> {
        let fx = self.fx.clone();
        let adopted = blocking(move || fx.adopt(h)).await;
        match adopted {
            Ok(mut a) => {
                let exit = match a.exit() {
                    Ok(exit) => exit,
                    Err(e) => {
                        log::error!("{}: cannot watch pid {}: {e}", self.name, a.pid());
                        let name = self.name.clone();
                        return Err(blocking(move || a.retire(&name)).await);
                    }
                };
                let pid = a.pid();
                log::info!("{}: adopted, pid {pid}", self.name);
                self.set_running(pid, since, true, ready);
                let handover = a.handover();
                Ok(Box::new(Instance {
                    pid,
                    ctl: Some(a),
                    exit,
                    handover,
                    monitor: None,
                }))
            }
            Err((e, h)) => {
                log::warn!(
                    "{}: not adopted: {}; clearing what is left of it",
                    self.name,
                    crate::error_chain(&e)
                );
                let fx = self.fx.clone();
                let f = blocking(move || fx.clear(&h)).await;
                self.set(|s| {
                    s.exit = None;
                    s.exit_unknown = true;
                });
                Err(f)
            }
        }
    }
}
