//! The single place that reaps children.
//!
//! lkinit is a child subreaper (or PID 1), so besides the runtimes it spawns it inherits
//! container processes and their orphans. If two places called wait, one could steal the
//! exit status the other is waiting for. So SIGCHLD is blocked in every thread from the start
//! of `main`, one thread waits for it and reaps everything, and whoever wants a status
//! registers the pid first and gets the status handed over.
//!
//! Spawning happens under the registry lock, so a child that exits at once is still known
//! when it is reaped (and std's own reap of a child whose exec failed cannot race us).
//! Processes that become our children later (a container's init after `runtime create`)
//! are registered before they can exit: the init waits for `runtime start`.

use super::exit::{ExitStatus, decode_wait_status};
use super::pidfd::PidFd;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where one pid's status is delivered; serves blocking and async waiters alike.
#[derive(Default)]
struct Slot {
    status: Mutex<Option<ExitStatus>>,
    cond: Condvar,
    notify: tokio::sync::Notify,
}

impl Slot {
    fn deliver(&self, st: ExitStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(st);
        self.cond.notify_all();
        self.notify.notify_one();
    }
}

/// A claim on the exit status of one child.
#[derive(Clone)]
pub struct Waiter {
    pid: i32,
    slot: Arc<Slot>,
}

impl Waiter {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The status if the process has ended.
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.slot.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until the process ends.
    pub fn wait(&self) -> ExitStatus {
        let mut g = self.slot.status.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = *g {
                return s;
            }
            g = self.slot.cond.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until the process ends or `timeout` passes.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut g = self.slot.status.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = *g {
                return Some(s);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            g = self
                .slot
                .cond
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits without blocking a thread (for the tokio supervisor).
    pub async fn wait_async(&self) -> ExitStatus {
        loop {
            let notified = self.slot.notify.notified();
            if let Some(s) = self.try_status() {
                return s;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
impl Waiter {
    /// A claim that no reaper serves, for tests of code that only holds one.
    pub(crate) fn unregistered(pid: i32) -> Waiter {
        Waiter {
            pid,
            slot: Arc::default(),
        }
    }
}

/// Statuses of unregistered children kept for a late claim; bounded so orphans cannot grow it.
const UNCLAIMED_MAX: usize = 256;

#[derive(Default)]
pub(super) struct Registry {
    waiting: HashMap<i32, Arc<Slot>>,
    unclaimed: VecDeque<(i32, ExitStatus)>,
}

pub struct Reaper {
    registry: Mutex<Registry>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// The process-wide reaper. The first call makes this process a child subreaper and starts
/// the reaping thread.
pub fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            log::warn!("cannot become a child subreaper: {e}");
        }
        let r = Reaper {
            registry: Mutex::new(Registry::default()),
        };
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(reaper_thread)
            .expect("the reaper thread must start");
        r
    })
}

fn reaper_thread() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    loop {
        reaper().reap_all();
        // A SIGCHLD that arrives while reaping stays pending, so none is lost.
        let _ = set.wait();
    }
}

impl Reaper {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap_all(&self) {
        let mut reg = self.lock();
        loop {
            let mut raw: libc::c_int = 0;
            // SAFETY: waitpid writes the status into a local. Raw, not nix's: see
            // `decode_wait_status`.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                match Errno::last() {
                    Errno::ECHILD => return,
                    Errno::EINTR => continue,
                    e => {
                        log::error!("reaper: waitpid: {e}");
                        return;
                    }
                }
            }
            let Some(status) = decode_wait_status(raw) else {
                continue;
            };
            match reg.waiting.remove(&pid) {
                Some(slot) => slot.deliver(status),
                None => {
                    log::debug!("reaped orphan {pid}: {status}");
                    if reg.unclaimed.len() >= UNCLAIMED_MAX {
                        reg.unclaimed.pop_front();
                    }
                    reg.unclaimed.push_back((pid, status));
                }
            }
        }
    }

    pub(super) fn register(reg: &mut Registry, pid: i32) -> Waiter {
        let slot = Arc::new(Slot::default());
        if let Some(i) = reg.unclaimed.iter().position(|(p, _)| *p == pid) {
            let (_, st) = reg.unclaimed.remove(i).expect("index is in range");
            slot.deliver(st);
        } else {
            reg.waiting.insert(pid, slot.clone());
        }
        Waiter { pid, slot }
    }

    /// Like `watch`, with a pidfd for the process opened while no reaping can happen, so it
    /// names this child: None if the child has ended and been reaped already (its pid may
    /// name another process by then), or on a kernel without pidfds.
    pub fn watch_with_pidfd(&self, pid: i32) -> (Waiter, Option<PidFd>) {
        let mut reg = self.lock();
        let w = Self::register(&mut reg, pid);
        let fd = match w.try_status() {
            Some(_) => None,
            None => PidFd::open(pid).ok(),
        };
        (w, fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Spawn, pid_of};
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    use std::process::Command;

    /// Taken by the tests that reap by hand and by those that peek at a zombie, which a
    /// reap running beside them would take away.
    static REAPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn reaping() -> std::sync::MutexGuard<'static, ()> {
        REAPING.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status is read through the pidfd once it is readable, and reading it does not
    /// reap: the child is still a zombie for the reaper.
    #[test]
    fn peek_reads_the_status_without_reaping() {
        let _g = reaping();
        let mut s = Spawn::new("sh");
        s.args(["-c", "exit 3"]);
        let child = reaper().start(&s).unwrap();
        let fd = child.pidfd.unwrap();
        // Held while peeking, so the reaper thread cannot reap the child meanwhile.
        let reg = reaper().lock();
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        assert_eq!(fd.peek_exit(), Some(ExitStatus::Code(3)));
        // Peeking did not reap: the child is still a zombie, and its status can be read
        // again (a reaping read would leave nothing the second time).
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", fd.pid())).unwrap();
        let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
        assert_eq!(state, Some("Z"), "{stat}");
        assert_eq!(fd.peek_exit(), Some(ExitStatus::Code(3)));
        drop(reg);
        reaper().reap_all();
        assert_eq!(
            child.waiter.wait_timeout(Duration::from_secs(10)),
            Some(ExitStatus::Code(3))
        );
    }

    /// A child killed by a real-time signal (here 40) is reaped with its status, through
    /// the pidfd and through the reaper, and its waiter hears of it.
    #[test]
    fn a_real_time_signal_death_is_reported() {
        let _g = reaping();
        let mut s = Spawn::new("sleep");
        s.arg("30");
        let child = reaper().start(&s).unwrap();
        let fd = child.pidfd.unwrap();
        // Held while peeking, so the reaper thread cannot reap the child meanwhile.
        let reg = reaper().lock();
        // SAFETY: a signal to our own child, which is alive until it is reaped.
        assert_eq!(unsafe { libc::kill(fd.pid(), 40) }, 0);
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        assert_eq!(fd.peek_exit(), Some(ExitStatus::Signal(40)));
        drop(reg);
        // The reaper thread may not hear the SIGCHLD here (unit tests' threads do not
        // block it): reap as it would.
        reaper().reap_all();
        assert_eq!(
            child.waiter.wait_timeout(Duration::from_secs(10)),
            Some(ExitStatus::Signal(40))
        );
        assert_eq!(ExitStatus::Signal(40).code(), 168);
    }

    /// A pidfd is handed out only while the child has not been reaped: after that its pid
    /// may be another process's.
    #[test]
    // The reaper reaps them: that is what is tested.
    #[allow(clippy::zombie_processes)]
    fn watch_with_pidfd_gives_no_pidfd_for_a_reaped_child() {
        let _g = reaping();
        let alive = Command::new("sleep").arg("30").spawn().unwrap();
        let gone = Command::new("true").spawn().unwrap();
        let (alive, gone) = (pid_of(&alive), pid_of(&gone));
        // `true` has exited once its pidfd polls readable (no pidfd: another test's
        // reap_all took it already); then reap it as the reaper would.
        if let Ok(fd) = PidFd::open(gone) {
            let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        }
        reaper().reap_all();
        let (w, none) = reaper().watch_with_pidfd(gone);
        assert_eq!(w.try_status(), Some(ExitStatus::Code(0)));
        assert!(none.is_none());
        let (w, some) = reaper().watch_with_pidfd(alive);
        let some = some.expect("a pidfd for a live child");
        assert_eq!(some.pid(), alive);
        assert!(w.try_status().is_none());
        some.signal(Signal::SIGKILL).unwrap();
        let mut p = [PollFd::new(some.as_fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        reaper().reap_all();
        assert_eq!(
            w.wait_timeout(Duration::from_secs(10)),
            Some(ExitStatus::Signal(9))
        );
    }
}
