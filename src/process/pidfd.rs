//! Naming one process for sure: a pid file descriptor (signals and waits reach exactly the
//! process it was opened for, never a later one that reused the pid), and a process's start
//! time, which with its pid names it for the life of the system.

use super::exit::ExitStatus;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The start time of a process (clock ticks since boot, field 22 of `/proc/PID/stat`):
/// together with the pid it names one process for the life of the system.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A pid file descriptor: signals reach exactly the process it was opened for, never a
/// later process that reused the pid.
pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
}

impl PidFd {
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(Errno::EOVERFLOW))?;
        // SAFETY: the kernel just returned this descriptor to us; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PidFd { fd, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A second descriptor for the same process (close-on-exec, as every descriptor here).
    pub fn try_clone(&self) -> io::Result<PidFd> {
        Ok(PidFd {
            fd: self.fd.try_clone()?,
            pid: self.pid,
        })
    }

    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        // SAFETY: the descriptor is valid for the life of self; no siginfo is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // ESRCH: it has already exited, which is what a kill wants.
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether the process has exited (the descriptor polls readable then); works for
    /// processes that are not our children.
    pub fn has_exited(&self) -> bool {
        self.wait_exited(Duration::ZERO)
    }

    /// Waits up to `limit` for the process to exit; whether it has.
    pub fn wait_exited(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let mut p = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let left = end.saturating_duration_since(Instant::now());
            // A bound past poll's range waits in turns.
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut p, timeout) {
                Ok(n)
                    if n > 0
                        && p[0]
                            .revents()
                            .is_some_and(|r| r.contains(PollFlags::POLLIN)) =>
                {
                    return true;
                }
                Ok(_) | Err(Errno::EINTR) => {}
                // Only a bug gets here (a bad descriptor): the process is not seen to end.
                Err(e) => {
                    log::error!("poll on the pidfd of {}: {e}", self.pid);
                    return false;
                }
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }

    /// The exit status of a child of ours that has ended, read without reaping it (the
    /// reaper still does that): the thread that saw the pidfd turn readable need not wait
    /// for the reaper thread to run. None if it has not ended, is not our child, or was
    /// reaped already.
    pub fn peek_exit(&self) -> Option<ExitStatus> {
        // Raw, not nix's waitid: its WaitStatus has no room for a real-time signal (see
        // `decode_wait_status`).
        let id = libc::id_t::try_from(self.fd.as_raw_fd()).ok()?;
        // SAFETY: an all-zero siginfo_t is valid (si_pid 0 means "nothing has ended").
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes into `info`; the pidfd is open for as long as `self`.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                id,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        // SAFETY: for a child's state change the kernel fills the SIGCHLD fields.
        if r != 0 || unsafe { info.si_pid() } == 0 {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe { info.si_status() };
        match info.si_code {
            libc::CLD_EXITED => Some(ExitStatus::Code(value)),
            libc::CLD_KILLED | libc::CLD_DUMPED => Some(ExitStatus::Signal(value)),
            _ => None,
        }
    }

    pub fn as_owned_fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
