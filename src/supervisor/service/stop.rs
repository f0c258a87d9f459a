//! Stopping a running service: SIGTERM, its grace, SIGKILL, what is left in its cgroup,
//! then its cleanup, whose failure is the caller's error.

use super::*;

impl<E: Effects> Task<E> {
    /// SIGTERM, the grace period, SIGKILL; then nothing of it remains, or what its cleanup
    /// could not undo is returned. Every step after the grace is bounded (the runtime's
    /// commands by their own limits, the waits here), so a stop ends within the grace and
    /// a fixed margin whatever the container's hooks do.
    pub(super) async fn stop(
        &mut self,
        inst: &mut Instance<E::Container>,
        signalled: Option<oneshot::Sender<()>>,
    ) -> (Option<ExitStatus>, UndoFailures) {
        // No check may fail it, nor run in it, while it goes.
        inst.monitor = None;
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
        inst.with_ctl(|c| c.terminate()).await;
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
                inst.with_ctl(|c| c.kill()).await;
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
    pub(super) async fn retire(&mut self, inst: &mut Instance<E::Container>) -> UndoFailures {
        inst.monitor = None;
        let Some(ctl) = inst.ctl.take() else {
            return UndoFailures::default();
        };
        let name = self.name.clone();
        let state_dir = self.sup.state_dir().to_path_buf();
        blocking(move || {
            let left = ctl.retire(&name);
            if left.is_empty() {
                crate::bundle::remove_generated(&state_dir, &name);
            }
            // Gone with the container: its watcher (ended above) may be dropped later.
            crate::supervisor::notify::remove(&state_dir, &name);
            crate::supervisor::ready::remove_fifo(&state_dir, &name);
            left
        })
        .await
    }

    /// A container whose cleanup left something behind (a mount, the runtime's container):
    /// the service is failed, never reported stopped nor started again on top of what is
    /// left, and says what that is. Returns the reason.
    pub(super) fn fail_cleanup(&mut self, left: &UndoFailures) -> String {
        let reason = format!("cleanup failed: {left}");
        log::error!("{}: {reason}", self.name);
        self.set_down(State::Failed, Some(reason.clone()));
        self.persist(Persisted::Failed {
            reason: reason.clone(),
        });
        reason
    }

    /// The answer to a stop whose cleanup failed (the service is failed then).
    pub(super) fn not_cleaned_up(
        &mut self,
        st: Option<ExitStatus>,
        left: &UndoFailures,
    ) -> ServiceError {
        self.fail_cleanup(left);
        ServiceError::NotCleanedUp {
            name: self.name.clone(),
            exit: st,
            left: left.clone(),
        }
    }
}
