//! Container output: pipes drained into memlogd or log files ([`sink`] decides which)
//! and, for onboot, onto lkinit's own stdout (the console, under PID 1).
//!
//! The runtime hands its stdio to the container, so a pipe that nobody drains would block
//! the container, and a write end left open here would hide the end of the output. onboot
//! runs one container at a time and has nothing else to do meanwhile, so the thread that
//! waits for the container copies its output too, woken by poll: no thread per stream.

pub mod follow;
pub mod memlogd;
pub mod rotate;
pub mod sink;

pub use memlogd::Memlogd;
pub use rotate::Policy;
pub use sink::{NameCollision, Sink, file_of, name_collision, open_log, stream_names};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The write ends of a container's stdout and stderr, handed to the runtime (which hands
/// them on to the container).
pub struct ContainerStdio {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The container's descriptors 3, 4, ... in this order (`--preserve-fds`).
    pub extra: Vec<OwnedFd>,
}

/// The read ends of one container's output, each with its sink (same index).
pub struct Tee {
    /// Pipes whose writers are not all gone yet, with the index of their sink.
    open: Vec<(usize, File)>,
    sinks: [Sink; 2],
    echo: bool,
    /// Per stream, what has come since its last newline, held back from the console.
    pending: [Vec<u8>; 2],
    buf: Vec<u8>,
}

/// Longest run without a newline held back from the console before it is written anyway.
const ECHO_HOLD_MAX: usize = 4096;

/// How [`pump_pipes`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Every pipe has reached its end.
    Drained,
    /// The exit descriptor polled readable.
    Exited,
    /// The deadline passed (or poll failed).
    Stopped,
}

/// Reads the pipes of `open` as their data arrives, whichever has some first (a writer
/// that fills one pipe while we block on the other would never finish), handing each
/// chunk to `sink` with the pipe's index, until every pipe has ended, `exit` polls
/// readable, or `deadline` passes. Pipes that end leave `open`.
pub fn pump_pipes(
    open: &mut Vec<(usize, File)>,
    exit: Option<BorrowedFd<'_>>,
    deadline: Option<Instant>,
    buf: &mut [u8],
    mut sink: impl FnMut(usize, &[u8]),
) -> Pumped {
    loop {
        if exit.is_none() && open.is_empty() {
            return Pumped::Drained;
        }
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Pumped::Stopped;
                }
                // Rounded up, so the deadline has passed when poll times out.
                let ms = left.as_micros().div_ceil(1000);
                // Past poll's range: it wakes at its longest, and waits again.
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(e) = exit {
            fds.push(PollFd::new(e, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(0) => return Pumped::Stopped,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::debug!("container output: poll: {e}");
                return Pumped::Stopped;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(true)).collect();
        drop(fds);
        let exited = exit.is_some() && ready[open.len()];
        let mut k = 0;
        open.retain_mut(|(i, f)| {
            let keep = !ready[k]
                || match f.read(buf) {
                    Ok(0) => false,
                    Ok(n) => {
                        sink(*i, &buf[..n]);
                        true
                    }
                    Err(e) => e.kind() == io::ErrorKind::Interrupted,
                };
            k += 1;
            keep
        });
        if exited {
            return Pumped::Exited;
        }
    }
}

impl Tee {
    /// Copies output until `exit` polls readable (the end of the process that ends the
    /// wait; without one, until every stream has ended) or `deadline` passes.
    pub fn pump(&mut self, exit: Option<BorrowedFd<'_>>, deadline: Option<Instant>) -> Pumped {
        let (sinks, echo, pending) = (&mut self.sinks, self.echo, &mut self.pending);
        pump_pipes(&mut self.open, exit, deadline, &mut self.buf, |i, data| {
            sinks[i].write(data);
            // memlogd behind: the container waits for it, as for a slow disk, within the
            // sink's bound.
            sinks[i].wait();
            if echo {
                // Whole lines only: both streams share the console, and a read ends
                // wherever the writer's write did, often inside a line.
                let p = &mut pending[i];
                p.extend_from_slice(data);
                let cut = match p.iter().rposition(|&b| b == b'\n') {
                    Some(n) => n + 1,
                    None if p.len() >= ECHO_HOLD_MAX => p.len(),
                    None => 0,
                };
                if cut > 0 {
                    echo_out(&p[..cut]);
                    p.drain(..cut);
                }
            }
        })
    }

    /// After the end: copies what is still in flight until every stream has ended, or
    /// `grace` passed. A process that outlives the container (one left in the host's pid
    /// namespace) may hold a pipe open: a thread then goes on copying what it writes into
    /// its sinks, so it is neither blocked on a full pipe nor killed by SIGPIPE.
    pub fn finish(mut self, grace: Duration) {
        let drained = self.pump(None, Some(Instant::now() + grace)) == Pumped::Drained;
        // A last line without its newline, ended here so that what is printed next (the
        // bundle's report) starts a line of its own.
        for p in &mut self.pending {
            if !p.is_empty() {
                p.push(b'\n');
                echo_out(p);
                p.clear();
            }
        }
        if drained {
            return;
        }
        log::debug!("container output still open after the container ended; logging on");
        let Tee {
            mut open,
            mut sinks,
            mut buf,
            ..
        } = self;
        let spawned = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || {
                pump_pipes(&mut open, None, None, &mut buf, |i, data| {
                    sinks[i].write(data);
                    sinks[i].wait();
                });
            });
        if let Err(e) = spawned {
            log::warn!("cannot keep logging a container's leftover output: {e}");
        }
    }
}

fn echo_out(data: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(data);
    let _ = out.flush();
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Pipes for `owner`'s stdout and stderr, each to be drained (by [`Tee::pump`]) into its
/// sink (memlogd's `BASE.out` and `BASE`, or `DIR/BASE.out.log` and `DIR/BASE.log`, kept as
/// `policy` says), and onto our stdout when `echo`.
pub fn tee(
    memlogd: &Memlogd,
    dir: &Path,
    owner: &str,
    base: &str,
    echo: bool,
    policy: Policy,
) -> io::Result<(ContainerStdio, Tee)> {
    let [out_name, err_name] = stream_names(base);
    let out = Sink::open(memlogd, dir, owner, &out_name, policy)?;
    let err = Sink::open(memlogd, dir, owner, &err_name, policy)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok((
        ContainerStdio {
            stdout: out_w,
            stderr: err_w,
            extra: Vec::new(),
        },
        Tee {
            open: vec![(0, File::from(out_r)), (1, File::from(err_r))],
            sinks: [out, err],
            pending: [Vec::new(), Vec::new()],
            echo,
            buf: vec![0u8; 16 * 1024],
        },
    ))
}
