//! The container behind a running service, ours or adopted, and how its end is seen: the
//! running instance the task holds, and the real [`Container`] and [`Exit`].

use super::effects::{Container, Exit};
use super::*;
use crate::container::Adopted;
use std::io;

/// The container behind a running service, ours or adopted, with the runtime that drives
/// it.
pub(crate) struct Ctl {
    rt: OciRuntime,
    of: Of,
}

enum Of {
    Ours(Box<Running>),
    Adopted(Box<Adopted>),
}

impl Ctl {
    pub(super) fn ours(r: Running, rt: &OciRuntime) -> Ctl {
        Ctl {
            rt: rt.clone(),
            of: Of::Ours(Box::new(r)),
        }
    }

    pub(super) fn adopted(a: Adopted, rt: &OciRuntime) -> Ctl {
        Ctl {
            rt: rt.clone(),
            of: Of::Adopted(Box::new(a)),
        }
    }
}

impl Container for Ctl {
    type Exit = ExitWatch;

    fn pid(&self) -> i32 {
        match &self.of {
            Of::Ours(r) => r.exit_waiter().pid(),
            Of::Adopted(a) => a.pid(),
        }
    }

    fn handover(&mut self) -> Option<Handover> {
        match &mut self.of {
            Of::Ours(r) => r.handover(),
            Of::Adopted(a) => Some(a.handover().clone()),
        }
    }

    fn exit(&self) -> io::Result<ExitWatch> {
        match &self.of {
            Of::Ours(r) => Ok(ExitWatch::Child(r.exit_waiter())),
            Of::Adopted(a) => a
                .pidfd()
                .as_owned_fd()
                .try_clone()
                // SAFETY: the OwnedFd is a valid descriptor, owned by the AsyncFd for as
                // long as it is registered.
                .and_then(|fd| unsafe {
                    AsyncFd::register_with_interest(fd, Interest::READABLE).map_err(io::Error::from)
                })
                .map(ExitWatch::PidFd),
        }
    }

    fn terminate(&mut self) {
        match &mut self.of {
            Of::Ours(r) => r.terminate(&self.rt),
            Of::Adopted(a) => a.terminate(&self.rt),
        }
    }

    fn kill(&mut self) {
        match &mut self.of {
            Of::Ours(r) => r.kill(&self.rt),
            Of::Adopted(a) => a.kill(&self.rt),
        }
    }

    fn retire(self, name: &str) -> UndoFailures {
        let rt = &self.rt;
        let left = match &self.of {
            Of::Ours(r) => r.kill_remaining(rt),
            Of::Adopted(a) => a.kill_remaining(rt),
        };
        if let Err(pids) = left {
            log::error!("{name}: processes {pids:?} are still alive after SIGKILL");
        }
        match self.of {
            Of::Ours(r) => r.finish(rt),
            Of::Adopted(a) => a.finish(rt),
        }
    }
}

/// How the end of a real container's init is seen.
pub(crate) enum ExitWatch {
    /// Our child: the reaper hands over its status.
    Child(Waiter),
    /// Not our child: its pidfd polls readable when it ends.
    PidFd(AsyncFd<OwnedFd>),
}

impl Exit for ExitWatch {
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

/// A running service's container, as its task holds it.
pub(super) struct Instance<C: Container> {
    pub(super) pid: i32,
    pub(super) ctl: Option<C>,
    pub(super) exit: C::Exit,
    /// What the record says about it, for a supervisor that takes over.
    pub(super) handover: Option<Handover>,
    /// What watches its readiness and health, if its settings ask for that.
    pub(super) monitor: Option<Monitor>,
}

impl<C: Container> Instance<C> {
    /// Runs `f` on the container on a blocking thread.
    pub(super) async fn with_ctl<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut C) -> R + Send + 'static,
    ) -> R {
        let mut ctl = self
            .ctl
            .take()
            .expect("the container is here between calls");
        let (ctl, r) = blocking(move || {
            let r = f(&mut ctl);
            (ctl, r)
        })
        .await;
        self.ctl = Some(ctl);
        r
    }
}
