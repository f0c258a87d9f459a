//! A service's stdout and stderr: FIFOs under the state directory, drained into its log
//! files by the supervisor.
//!
//! A plain pipe would die with the supervisor: its read end is gone, and the service's
//! next write kills it with SIGPIPE. So each stream is a FIFO (`STATE_DIR/io/NAME.out`,
//! `NAME.err`) that the container holds open read-write: there is always a reader, a
//! supervisor killed with SIGKILL costs the service nothing until the pipe buffer is full,
//! and the next supervisor opens the same FIFO and drains what waited. The supervisor
//! holds its end read-write too, so it never sees an end of file between restarts of the
//! service, and one drain serves every run of it.
//!
//! Draining never waits for anything but the pipe: the log file is written at once, and a
//! write that fails (a full disk) drops that output and says so once, so the service is
//! never stopped by its logs. Readers (`service logs`) read the files, never the pipe.

use crate::logs;
use crate::oci_runtime::ContainerStdio;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// Room for output while no supervisor drains it (a restart of the supervisor).
const PIPE_SIZE: i32 = 256 * 1024;

/// Read at most this much per wake-up before letting other tasks run.
const BURST: usize = 256 * 1024;

/// One service's output plumbing.
pub struct Output {
    fifos: [PathBuf; 2],
    pub out_log: PathBuf,
    pub err_log: PathBuf,
    reopen: Arc<AtomicBool>,
    /// Asks each drain to empty its pipe now and say when it has.
    flush: Vec<mpsc::UnboundedSender<oneshot::Sender<()>>>,
}

pub fn io_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("io")
}

fn make_fifo(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => return Ok(()),
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(io::Error::from)
}

fn open_fifo(path: &Path, nonblock: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    // Read-write: opening never waits for a peer, and the holder counts as a reader.
    o.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
    if nonblock {
        o.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    o.open(path)
}

impl Output {
    /// Makes (or finds again) the FIFOs of service `name` and starts draining them into
    /// `LOGDIR/NAME.out.log` and `LOGDIR/NAME.log`. Must run inside the tokio runtime.
    pub fn open(state_dir: &Path, log_dir: &Path, name: &str) -> io::Result<Output> {
        let dir = io_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let (out_log, err_log) = logs::log_paths(log_dir, "", name);
        let fifos = [
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.err")),
        ];
        let reopen = Arc::new(AtomicBool::new(false));
        let mut flush = Vec::new();
        for (fifo, log) in fifos.iter().zip([&out_log, &err_log]) {
            make_fifo(fifo)?;
            let f = open_fifo(fifo, true)?;
            let _ = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
            let drain = Drain {
                name: name.to_string(),
                log_path: log.clone(),
                log: logs::open_log(log).ok(),
                failing: None,
                reopen: reopen.clone(),
            };
            if drain.log.is_none() {
                log::warn!(
                    "{name}: cannot open {}; its output is dropped",
                    log.display()
                );
            }
            // SAFETY: the File owns a valid descriptor for as long as the AsyncFd holds it.
            let fd = unsafe { AsyncFd::register_with_interest(f, Interest::READABLE) }
                .map_err(io::Error::from)?;
            let (tx, rx) = mpsc::unbounded_channel();
            flush.push(tx);
            tokio::spawn(drain.run(fd, rx));
        }
        Ok(Output {
            fifos,
            out_log,
            err_log,
            reopen,
            flush,
        })
    }

    /// The container's stdout and stderr: the FIFOs, opened read-write and blocking (a
    /// service writing faster than the disk takes waits, as with any pipe).
    pub fn stdio(&self) -> io::Result<ContainerStdio> {
        Ok(ContainerStdio {
            stdout: open_fifo(&self.fifos[0], false)?.into(),
            stderr: open_fifo(&self.fifos[1], false)?.into(),
        })
    }

    /// Opens the log files again before the next write (a new run of the service writes
    /// to the files that are there now, if someone moved the old ones away).
    pub fn reopen_logs(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Returns once what the service wrote so far is in its log files (its last words
    /// before a stop are there when the stop is reported).
    pub async fn flush(&self) {
        let mut acks = Vec::new();
        for f in &self.flush {
            let (tx, rx) = oneshot::channel();
            if f.send(tx).is_ok() {
                acks.push(rx);
            }
        }
        for a in acks {
            let _ = a.await;
        }
    }

    /// Removes the FIFOs (nothing holds them any more).
    pub fn remove(&self) {
        for f in &self.fifos {
            let _ = std::fs::remove_file(f);
        }
    }
}

struct Drain {
    name: String,
    log_path: PathBuf,
    log: Option<File>,
    /// Since when writes fail (each failure episode is reported once).
    failing: Option<Instant>,
    reopen: Arc<AtomicBool>,
}

impl Drain {
    async fn run(
        mut self,
        fd: AsyncFd<File>,
        mut flush: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        loop {
            let ready = tokio::select! {
                biased;
                Some(ack) = flush.recv() => {
                    // Bounded: a writer that never stops must not hold the flush forever.
                    for _ in 0..64 {
                        if self.drain(fd.get_ref()).is_err() {
                            break;
                        }
                    }
                    let _ = ack.send(());
                    continue;
                }
                r = fd.readable() => r,
            };
            let Ok(mut guard) = ready else {
                return;
            };
            match guard.try_io(|f| self.drain(f.get_ref())) {
                // A full burst: more may be waiting; let the others run first.
                Ok(Ok(())) => tokio::task::yield_now().await,
                Ok(Err(e)) => {
                    log::error!("{}: reading its output: {e}", self.name);
                    return;
                }
                // Drained: readiness was cleared, wait for the next write.
                Err(_would_block) => {}
            }
        }
    }

    /// Reads until the pipe is empty (WouldBlock) or a burst is done, writing each chunk.
    fn drain(&mut self, mut f: &File) -> io::Result<()> {
        // One buffer on the stack of the runtime thread, reused by every drain.
        let mut buf = [0u8; 16 * 1024];
        let mut done = 0;
        while done < BURST {
            let n = match f.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::WouldBlock.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write(&buf[..n]);
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) {
        if self.reopen.swap(false, Ordering::Relaxed) || self.log.is_none() {
            // Retried at most once a second while it fails.
            if self.log.is_some()
                || self
                    .failing
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            {
                self.log = logs::open_log(&self.log_path).ok();
            }
        }
        let r = match &mut self.log {
            Some(l) => l.write_all(data),
            None => Err(io::ErrorKind::NotFound.into()),
        };
        match r {
            Ok(()) => {
                if let Some(since) = self.failing.take() {
                    log::warn!(
                        "{}: writing {} again (output since {:.0}s ago was lost)",
                        self.name,
                        self.log_path.display(),
                        since.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                if self.failing.is_none() {
                    log::warn!(
                        "{}: cannot write {}: {e}; dropping its output until writes work again",
                        self.name,
                        self.log_path.display()
                    );
                    self.failing = Some(Instant::now());
                }
            }
        }
    }
}
