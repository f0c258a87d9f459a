//! Container output: pipes drained into log files and, for onboot, onto lkinit's own stdout
//! (the console, under PID 1).
//!
//! The runtime hands its stdio to the container, so a pipe that nobody drains would block
//! the container, and a write end left open here would hide the end of the output. onboot
//! runs one container at a time and has nothing else to do meanwhile, so the thread that
//! waits for the container copies its output too, woken by poll: no thread per stream.

use crate::oci_runtime::ContainerStdio;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Stream {
    pipe: File,
    log: File,
}

/// The read ends of one container's output, each with its log file.
pub struct Tee {
    /// Streams whose writers are not all gone yet.
    open: Vec<Stream>,
    echo: bool,
    buf: Vec<u8>,
}

impl Tee {
    /// Copies output until `exit` polls readable (the end of the process that ends the
    /// wait; without one, until every stream has ended) or `deadline` passes. True unless
    /// the deadline passed (or poll failed).
    pub fn pump(&mut self, exit: Option<BorrowedFd<'_>>, deadline: Option<Instant>) -> bool {
        loop {
            if exit.is_none() && self.open.is_empty() {
                return true;
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    // Rounded up, so the deadline has passed when poll times out.
                    let ms = left.as_micros().div_ceil(1000);
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds: Vec<PollFd<'_>> = self
                .open
                .iter()
                .map(|s| PollFd::new(s.pipe.as_fd(), PollFlags::POLLIN))
                .collect();
            if let Some(e) = exit {
                fds.push(PollFd::new(e, PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::debug!("container output: poll: {e}");
                    return false;
                }
            }
            let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(true)).collect();
            drop(fds);
            let exited = exit.is_some() && ready[self.open.len()];
            let mut i = 0;
            let (echo, buf) = (self.echo, &mut self.buf);
            self.open.retain_mut(|s| {
                let keep = !ready[i] || copy_once(s, echo, buf);
                i += 1;
                keep
            });
            if exited {
                return true;
            }
        }
    }

    /// After the end: copies what is still in flight until every stream has ended, or
    /// `grace` passed (a process that outlives the container may hold a pipe open; what it
    /// writes later is lost).
    pub fn finish(mut self, grace: Duration) {
        if !self.pump(None, Some(Instant::now() + grace)) {
            log::debug!("container output still open after the container ended");
        }
    }
}

/// One read and its copies; false once the stream has ended.
fn copy_once(s: &mut Stream, echo: bool, buf: &mut [u8]) -> bool {
    let n = match s.pipe.read(buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) => return e.kind() == io::ErrorKind::Interrupted,
    };
    // A full disk loses log lines, it must not stop the container.
    let _ = s.log.write_all(&buf[..n]);
    if echo {
        let mut out = io::stdout().lock();
        let _ = out.write_all(&buf[..n]);
        let _ = out.flush();
    }
    true
}

/// Opens a log file for appending (logs accumulate across runs and restarts).
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Names of a container's two log files: `PREFIXNAME.out.log` (stdout) and `PREFIXNAME.log`
/// (stderr), as LinuxKit names them.
pub fn log_paths(dir: &Path, prefix: &str, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{prefix}{name}.out.log")),
        dir.join(format!("{prefix}{name}.log")),
    )
}

/// Pipes for a container's stdout and stderr, each to be drained (by [`Tee::pump`]) into its
/// log file, and onto our stdout when `echo`.
pub fn tee(out_log: &Path, err_log: &Path, echo: bool) -> io::Result<(ContainerStdio, Tee)> {
    let out_file = open_log(out_log)?;
    let err_file = open_log(err_log)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok((
        ContainerStdio {
            stdout: out_w,
            stderr: err_w,
        },
        Tee {
            open: vec![
                Stream {
                    pipe: File::from(out_r),
                    log: out_file,
                },
                Stream {
                    pipe: File::from(err_r),
                    log: err_file,
                },
            ],
            echo,
            buf: vec![0u8; 16 * 1024],
        },
    ))
}
