//! A service's stdout and stderr: FIFOs under the state directory, drained by the
//! supervisor into memlogd or the service's log files (`logs::Sink` decides which).
//!
//! A plain pipe would die with the supervisor: its read end is gone, and the service's
//! next write kills it with SIGPIPE. So each stream is a FIFO (`STATE_DIR/io/NAME.out`,
//! `NAME.err`) that the container holds open read-write: there is always a reader, a
//! supervisor killed with SIGKILL costs the service nothing until the pipe buffer is full,
//! and the next supervisor opens the same FIFO and drains what waited. The supervisor
//! holds its end read-write too, so it never sees an end of file between restarts of the
//! service, and one drain serves every run of it.
//!
//! With memlogd the supervisor still drains the FIFO itself and writes into a stream it
//! handed memlogd (one copy), rather than handing memlogd the FIFO: a FIFO memlogd reads
//! would be read by nobody once memlogd dies, and the service would block on it; with the
//! supervisor as the one reader, a memlogd that dies or stalls is left for the log file
//! at once, and a new supervisor hands memlogd fresh streams for the same FIFOs.
//!
//! Draining never waits for anything but the pipe and, within a bound, memlogd: a write
//! to the file that fails (a full disk) drops that output and says so once, so the
//! service is never stopped by its logs. Readers (`service logs`) read the files and
//! memlogd's query socket, never the pipe.

use crate::logs::ContainerStdio;
use crate::logs::{self, Memlogd, Sink};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Launches so far: a drain that sees a new one looks at memlogd again.
    launches: Arc<AtomicU64>,
    /// How the log files are kept (the service's settings, read at each start).
    policy: LogPolicy,
    /// Asks each drain to empty its pipe now and say when it has.
    flush: Vec<mpsc::UnboundedSender<oneshot::Sender<()>>>,
}

/// The log policy the drains of one service apply; set from its settings before each
/// launch, so the new run's first line is already written as they say.
#[derive(Clone)]
pub struct LogPolicy {
    policy: Arc<Mutex<logs::Policy>>,
    launches: Arc<AtomicU64>,
}

impl LogPolicy {
    pub fn set(&self, p: logs::Policy) {
        let mut cur = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        if *cur != p {
            *cur = p;
            // The drains pick it up with the next launch they see.
            self.launches.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self) -> logs::Policy {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    /// memlogd (`NAME.out`, `NAME`) or `LOGDIR/NAME.out.log` and `LOGDIR/NAME.log`. Must run
    /// inside the tokio runtime.
    pub fn open(
        state_dir: &Path,
        log_dir: &Path,
        memlogd: &Memlogd,
        name: &str,
    ) -> io::Result<Output> {
        let dir = io_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let streams = logs::stream_names(name);
        let [out_log, err_log] = streams.clone().map(|s| logs::file_of(log_dir, &s));
        let fifos = [
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.err")),
        ];
        let launches = Arc::new(AtomicU64::new(0));
        let policy = LogPolicy {
            policy: Arc::new(Mutex::new(logs::Policy::default())),
            launches: launches.clone(),
        };
        let mut flush = Vec::new();
        for ((fifo, log), stream) in fifos.iter().zip([&out_log, &err_log]).zip(&streams) {
            make_fifo(fifo)?;
            let f = open_fifo(fifo, true)?;
            let _ = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
            let p = policy.get();
            let sink = Sink::open(memlogd, log_dir, name, stream, p).unwrap_or_else(|e| {
                log::warn!(
                    "{name}: cannot open {}: {e}; its output is dropped",
                    log.display()
                );
                Sink::unopened(memlogd, log_dir, name, stream, p)
            });
            if sink.to_memlogd() {
                // There even while memlogd has the output: `logs` opens it, and `logs -f`
                // follows what falls back to it.
                let _ = logs::open_log(log);
            }
            let drain = Drain {
                sink,
                launches: launches.clone(),
                policy: policy.clone(),
                seen: 0,
            };
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
            launches,
            policy,
            flush,
        })
    }

    /// Where the service's settings set how its log files are kept.
    pub fn log_policy(&self) -> LogPolicy {
        self.policy.clone()
    }

    /// The container's stdout and stderr: the FIFOs, opened read-write and blocking (a
    /// service writing faster than the disk takes waits, as with any pipe).
    pub fn stdio(&self) -> io::Result<ContainerStdio> {
        Ok(ContainerStdio {
            stdout: open_fifo(&self.fifos[0], false)?.into(),
            stderr: open_fifo(&self.fifos[1], false)?.into(),
            extra: Vec::new(),
        })
    }

    /// A new launch: before its next write, each stream looks for memlogd again, or opens
    /// its log file again (a new run of the service writes to the file that is there now,
    /// if someone moved the old one away).
    pub fn reopen_logs(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns once what the service wrote so far is in memlogd or its log files (its
    /// last words before a stop are there when the stop is reported).
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

/// memlogd's names of service `name`'s streams and a connection to memlogd's query
/// socket, for `logs`; None when memlogd does not answer there.
pub fn memlogd_query(memlogd: &Memlogd, name: &str) -> Option<([String; 2], OwnedFd)> {
    match memlogd.query_connection() {
        Ok(conn) => Some((logs::stream_names(name), conn)),
        Err(e) => {
            log::debug!("{name}: logs: {}", crate::error_chain(&e));
            None
        }
    }
}

struct Drain {
    sink: Sink,
    launches: Arc<AtomicU64>,
    policy: LogPolicy,
    /// The launch this drain last looked at memlogd for.
    seen: u64,
}

/// A descriptor owned elsewhere, registered with tokio only while it is waited on.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Drain {
    async fn run(
        mut self,
        fd: AsyncFd<File>,
        mut flush: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        loop {
            // memlogd is behind: nothing more is read until it has taken what waits, so
            // the FIFO holds the rest and the service waits, as for a slow disk.
            if self.sink.queued() > 0 {
                self.wait_for_memlogd().await;
                continue;
            }
            let ready = tokio::select! {
                biased;
                Some(ack) = flush.recv() => {
                    // Bounded: a writer that never stops must not hold the flush forever.
                    for _ in 0..64 {
                        self.wait_for_memlogd().await;
                        if self.drain(fd.get_ref()).is_err() {
                            break;
                        }
                    }
                    self.wait_for_memlogd().await;
                    let _ = ack.send(());
                    continue;
                }
                r = fd.readable() => r,
            };
            let Ok(mut guard) = ready else {
                return;
            };
            match guard.try_io(|f| self.drain(f.get_ref())) {
                // A full burst (or memlogd behind): more may be waiting; let the others
                // run first.
                Ok(Ok(())) => tokio::task::yield_now().await,
                Ok(Err(e)) => {
                    log::error!("{}: reading its output: {e}", self.sink.owner());
                    return;
                }
                // Drained: readiness was cleared, wait for the next write.
                Err(_would_block) => {}
            }
        }
    }

    /// Until memlogd has taken what waits for it, or has stalled and the file took it.
    async fn wait_for_memlogd(&mut self) {
        while let Some(fd) = self.sink.waiting_on() {
            let fd = Borrowed(fd.as_raw_fd());
            // SAFETY: the sink owns the descriptor and is left alone until this AsyncFd is
            // dropped, at the end of this match.
            let room = match unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) } {
                Ok(afd) => tokio::time::timeout(logs::sink::STALL, afd.writable())
                    .await
                    .is_ok(),
                // Cannot be watched: treated as a stall, the file takes over.
                Err(_) => false,
            };
            if room {
                self.sink.push();
            } else {
                self.sink.stalled();
            }
        }
    }

    /// Reads until the pipe is empty (WouldBlock), a burst is done, or memlogd is behind,
    /// writing each chunk.
    fn drain(&mut self, mut f: &File) -> io::Result<()> {
        // One buffer on the stack of the runtime thread, reused by every drain.
        let mut buf = [0u8; 16 * 1024];
        let mut done = 0;
        while done < BURST && self.sink.queued() == 0 {
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
        let launches = self.launches.load(Ordering::Relaxed);
        if launches != self.seen {
            self.seen = launches;
            self.sink.set_policy(self.policy.get());
            self.sink.reconsider();
        }
        self.sink.write(data);
    }
}
