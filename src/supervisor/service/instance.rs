//! The container behind a running service, ours or adopted, and how its end is seen.

use super::*;

/// The container behind a running service, ours or adopted.
pub(super) enum Ctl {
    Ours(Box<Running>),
    Adopted(Box<Adopted>),
}

impl Ctl {
    pub(super) fn terminate(&mut self, rt: &OciRuntime) {
        match self {
            Ctl::Ours(r) => r.terminate(rt),
            Ctl::Adopted(a) => a.terminate(rt),
        }
    }

    pub(super) fn kill(&mut self, rt: &OciRuntime) {
        match self {
            Ctl::Ours(r) => r.kill(rt),
            Ctl::Adopted(a) => a.kill(rt),
        }
    }

    /// After the init's end: nothing of the container may remain, then it is deleted and
    /// what was prepared for it undone.
    pub(super) fn retire(self, rt: &OciRuntime, name: &str) -> UndoFailures {
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
pub(super) enum ExitWatch {
    /// Our child: the reaper hands over its status.
    Child(Waiter),
    /// Not our child: its pidfd polls readable when it ends.
    PidFd(AsyncFd<OwnedFd>),
}

pub(super) struct Instance {
    pub(super) pid: i32,
    pub(super) ctl: Option<Ctl>,
    pub(super) exit: ExitWatch,
    /// What the record says about it, for a supervisor that takes over.
    pub(super) handover: Option<Handover>,
    /// What watches its readiness and health, if its settings ask for that.
    pub(super) monitor: Option<Monitor>,
}

impl ExitWatch {
    /// The init's exit; None when it is not ours to know.
    pub(super) async fn exited(&self) -> Option<ExitStatus> {
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
    pub(super) async fn with_ctl<R: Send + 'static>(
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
