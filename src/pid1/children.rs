//! The children PID 1 watches (onboot, onshutdown, the supervisor, the volumes, a hook):
//! starting lkinit again with PID 1's options, waiting for a child's end or a signal, and
//! stopping a child.

use super::{Init, ShutdownRequest, action_for};
use crate::process::{self, ExitStatus, PidFd, Waiter};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often a child without a pidfd is looked at.
const CHILD_POLL: Duration = Duration::from_millis(200);

/// A child of PID 1 that it watches: onboot, onshutdown, the supervisor.
pub(super) struct Child {
    pub(super) what: &'static str,
    pub(super) waiter: Waiter,
    pub(super) pidfd: Option<PidFd>,
    pub(super) started: Instant,
}

pub(super) enum Event {
    Exited(ExitStatus),
    Signal(ShutdownRequest),
    Timeout,
}

impl Init<'_> {
    /// `/proc/self/exe` with PID 1's global options and `args`.
    fn lkinit(&self, args: &[&str]) -> Command {
        let g = self.g;
        let mut c = Command::new("/proc/self/exe");
        c.arg0("lkinit");
        if g.quiet {
            c.arg("-q");
        }
        if g.verbose {
            c.arg("-v");
        }
        c.arg("--runtime").arg(&g.runtime);
        if let Some(r) = &g.runtime_root {
            c.arg("--runtime-root").arg(r);
        }
        c.arg("--sock").arg(&g.sock);
        c.arg("--state-dir").arg(&g.state_dir);
        c.arg("--memlogd-socket").arg(&g.memlogd_socket);
        c.arg("--memlogd-query-socket").arg(&g.memlogd_query_socket);
        c.args(args);
        // Output goes to the console; nothing reads it.
        c.stdin(Stdio::null());
        c
    }

    pub(super) fn spawn(&self, what: &'static str, args: &[&str]) -> Option<Child> {
        match process::reaper().spawn(&mut self.lkinit(args)) {
            Ok((child, waiter)) => {
                let pidfd = PidFd::open(process::pid_of(&child)).ok();
                Some(Child {
                    what,
                    waiter,
                    pidfd,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                log::error!("{what}: cannot start: {e}");
                None
            }
        }
    }

    pub(super) fn read_request(&self) -> Option<ShutdownRequest> {
        let si = self.sigfd.read_signal().ok()??;
        let signal = Signal::try_from(i32::try_from(si.ssi_signo).ok()?).ok()?;
        let action = action_for(signal)?;
        Some(ShutdownRequest {
            action,
            signal,
            from: si.ssi_pid,
        })
    }

    /// Waits for a signal, the end of `child`, or `deadline` (every caller that waits
    /// again after a signal keeps its first deadline).
    pub(super) fn wait(&self, child: Option<&Child>, deadline: Option<Instant>) -> Event {
        loop {
            if let Some(c) = child
                && let Some(st) = c.waiter.try_status()
            {
                return Event::Exited(st);
            }
            let mut left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) => Some(l),
                    None => return Event::Timeout,
                },
                None => None,
            };
            // Without a pidfd the child's end is only seen by looking again.
            if child.is_some_and(|c| c.pidfd.is_none()) {
                left = Some(left.map_or(CHILD_POLL, |l| l.min(CHILD_POLL)));
            }
            let left = match left {
                Some(l) => PollTimeout::try_from(l).unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
            let child_fd = child.and_then(|c| c.pidfd.as_ref());
            if let Some(p) = child_fd {
                fds.push(PollFd::new(p.as_owned_fd().as_fd(), PollFlags::POLLIN));
            }
            let (sig_ready, child_ready) = match poll(&mut fds, left) {
                Ok(_) => (
                    fds[0].revents().is_some_and(|r| !r.is_empty()),
                    fds.get(1)
                        .and_then(|f| f.revents())
                        .is_some_and(|r| !r.is_empty()),
                ),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    (false, false)
                }
            };
            if sig_ready && let Some(req) = self.read_request() {
                return Event::Signal(req);
            }
            if let Some(c) = child
                && child_ready
            {
                // It has exited; the reaper hands the status over as soon as it reaps.
                return Event::Exited(c.waiter.wait());
            }
        }
    }

    /// Stops `child` with SIGTERM, SIGKILL after `grace`; returns its status.
    pub(super) fn stop(&self, c: &Child, grace: Duration) -> ExitStatus {
        let signal = |s: Signal| match &c.pidfd {
            Some(fd) => {
                let _ = fd.signal(s);
            }
            None => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.waiter.pid()), s);
            }
        };
        signal(Signal::SIGTERM);
        if let Some(st) = c.waiter.wait_timeout(grace) {
            return st;
        }
        log::warn!(
            "{} did not stop within {}s: SIGKILL",
            c.what,
            grace.as_secs()
        );
        signal(Signal::SIGKILL);
        c.waiter.wait()
    }
}
