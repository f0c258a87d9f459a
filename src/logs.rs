//! Container output: pipes drained at once into log files and, for onboot, onto lkinit's
//! own stdout (the console, under PID 1).
//!
//! The runtime hands its stdio to the container, so a pipe that nobody drains would block
//! the container, and a write end left open here would hide the end of the output. Each
//! stream gets a thread that reads until every writer is gone.

use crate::oci_runtime::ContainerStdio;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Reader threads of one container's output.
pub struct Tee {
    done: mpsc::Receiver<()>,
    streams: usize,
}

impl Tee {
    /// Waits until both streams reached their end, or `grace` passed (a process that
    /// outlives the container may hold a pipe open; its output keeps flowing to the log).
    pub fn finish(self, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        for _ in 0..self.streams {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                log::debug!("container output still open after the container ended");
                return;
            }
        }
    }
}

/// Opens a log file for appending (logs accumulate across runs and restarts).
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn forward(read: OwnedFd, mut log: File, echo: bool, done: mpsc::Sender<()>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("log".into())
        .spawn(move || {
            let mut r = File::from(read);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                // A full disk loses log lines, it must not stop the container.
                let _ = log.write_all(&buf[..n]);
                if echo {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
            let _ = done.send(());
        })?;
    Ok(())
}

/// Names of a container's two log files: `PREFIXNAME.out.log` (stdout) and `PREFIXNAME.log`
/// (stderr), as LinuxKit names them.
pub fn log_paths(dir: &Path, prefix: &str, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{prefix}{name}.out.log")),
        dir.join(format!("{prefix}{name}.log")),
    )
}

/// Pipes for a container's stdout and stderr, each drained into its log file (and onto our
/// stdout when `echo`).
pub fn tee(out_log: &Path, err_log: &Path, echo: bool) -> io::Result<(ContainerStdio, Tee)> {
    let out_file = open_log(out_log)?;
    let err_file = open_log(err_log)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (tx, rx) = mpsc::channel();
    forward(out_r, out_file, echo, tx.clone())?;
    forward(err_r, err_file, echo, tx)?;
    Ok((
        ContainerStdio {
            stdout: out_w,
            stderr: err_w,
        },
        Tee {
            done: rx,
            streams: 2,
        },
    ))
}
