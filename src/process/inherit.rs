//! What every child inherits from lkinit, and what it must not: SIGCHLD is blocked in
//! lkinit's every thread for the reaper, lkinit may have been started with signals blocked
//! or ignored and with descriptors open; a runtime, a container or a helper gets none of
//! that. [`super::Reaper::spawn`] and [`super::Reaper::start`] use what is here.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use std::io;
use std::os::fd::RawFd;

/// Sets the calling thread's signal mask to exactly SIGCHLD; call first thing in `main`,
/// before any thread exists, so every later thread inherits the mask and only the reaper
/// thread sees it. Whatever else the parent left blocked is unblocked: a blocked SIGTERM
/// would otherwise never reach the supervisor or PID 1.
/// std's spawn does not reset the mask of a child: [`Reaper::spawn`] does.
pub fn block_sigchld() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&set), None);
}

/// Marks every descriptor above stdio that lkinit inherited close-on-exec, so none of them
/// reaches a runtime, a container or a helper (lkinit opens its own with close-on-exec;
/// these came from whoever started it). Call early in `main`, before any thread exists.
pub fn close_inherited_on_exec() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC changes descriptor flags only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one descriptor at a time (the listing's own is close-on-exec).
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // Raw, not nix's fcntl, which takes an open descriptor: the listing's own number is
        // in the list and closed by now (EBADF, which is fine).
        // SAFETY: F_SETFD on a descriptor number; no pointers.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if r == -1 && Errno::last() != Errno::EBADF {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Every signal number a disposition can be set for: all but SIGKILL and SIGSTOP. No
/// allocation, so a forked child may iterate it before exec.
fn resettable_signals() -> impl Iterator<Item = libc::c_int> {
    (1..=libc::SIGRTMAX()).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// Every signal but SIGKILL and SIGSTOP: what a child resets to its default action (an
/// ignored signal would survive the exec). Built bit by bit: the C library's sigaddset
/// refuses its own internal signals (32 and 33), which its posix_spawn would otherwise
/// leave ignored in the child of a parent that handles them (see
/// [`reset_signals_in_child`]).
pub(super) fn default_signals() -> SigSet {
    const WORDS: usize = std::mem::size_of::<libc::sigset_t>() / 8;
    let mut bits = [0u64; WORDS];
    // Signal numbers start at 1.
    for n in resettable_signals().filter_map(|sig| usize::try_from(sig - 1).ok()) {
        bits[n / 64] |= 1 << (n % 64);
    }
    // SAFETY: sigset_t is a plain array of words on Linux (bit N-1 is signal N), of exactly
    // this size; every bit pattern is a valid set.
    let set: libc::sigset_t = unsafe { std::mem::transmute(bits) };
    // SAFETY: a set of real signal numbers.
    unsafe { SigSet::from_sigset_t_unchecked(set) }
}

/// The kernel's `sigset_t` size, which rt_sigaction checks (64 signals on every
/// architecture lkinit is built for).
const KERNEL_SIGSET_SIZE: usize = 8;

/// In a freshly forked child, before exec: every signal back to its default disposition
/// and nothing blocked. exec resets handlers but keeps ignored signals, and lkinit may have
/// been started with some ignored (`nohup`, a shell's background job; glibc's own
/// `posix_spawn` leaves its internal signals 32 and 33 ignored in the children of a parent
/// that handles them); a runtime, a container or a command run in a service must not
/// inherit that. Only async-signal-safe calls.
pub(super) fn reset_signals_in_child() -> io::Result<()> {
    // SAFETY: sigaction, rt_sigaction and sigprocmask are async-signal-safe; the structs
    // are zeroed locals (all zero is SIG_DFL, no flags, an empty mask, in the C library's
    // layout and in the kernel's).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        let kernel_dfl = [0u64; 8];
        for sig in resettable_signals() {
            if libc::sigaction(sig, &dfl, std::ptr::null_mut()) != 0 {
                // The C library refuses the numbers it reserves; the kernel does not, and
                // this process is about to exec, where the C library's use of them ends.
                let r = libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    kernel_dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    KERNEL_SIGSET_SIZE,
                );
                if r != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
