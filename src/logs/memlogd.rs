//! LinuxKit's memlogd, spoken to as LinuxKit's own tools do.
//!
//! Writing: a datagram to the log socket carries a log's name and one descriptor
//! (SCM_RIGHTS); memlogd reads lines from that descriptor until its end, each kept under
//! the name. lkinit sends one end of a fresh socket pair and writes into the other, so it
//! stays the one reader of the container's pipe and can turn to the log file when memlogd
//! goes away.
//!
//! Reading: a stream connection to the query socket, one mode byte (0 dump, 2 dump then
//! follow), then one JSON object per line: `{"time":..,"source":NAME,"msg":LINE}`.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, connect, sendmsg,
    socket, socketpair,
};
use serde::Deserialize;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// LinuxKit's default paths (memlogd's `-socket-log` and `-socket-query`).
pub const DEFAULT_LOG_SOCKET: &str = "/var/run/linuxkit-external-logging.sock";
pub const DEFAULT_QUERY_SOCKET: &str = "/var/run/memlogdq.sock";

#[derive(Debug, thiserror::Error)]
pub enum MemlogdError {
    #[error("no memlogd socket at {0}")]
    Absent(PathBuf),
    #[error("cannot hand `{name}` to memlogd on {socket}")]
    Send {
        name: String,
        socket: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("memlogd on {socket} stopped taking `{name}`")]
    Write {
        name: String,
        socket: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("memlogd on {socket} took nothing of `{name}` for {}s", .after.as_secs())]
    Stalled {
        name: String,
        socket: PathBuf,
        after: Duration,
    },
    #[error("cannot query memlogd on {socket}")]
    Query {
        socket: PathBuf,
        #[source]
        source: Errno,
    },
}

/// Where memlogd listens, and whether it failed us last time we tried (so that losing it
/// is said once, not once per stream).
#[derive(Debug, Clone)]
pub struct Memlogd {
    pub log_socket: PathBuf,
    pub query_socket: PathBuf,
    failed: Arc<AtomicBool>,
}

impl Default for Memlogd {
    fn default() -> Self {
        Memlogd::new(DEFAULT_LOG_SOCKET.into(), DEFAULT_QUERY_SOCKET.into())
    }
}

impl Memlogd {
    pub fn new(log_socket: PathBuf, query_socket: PathBuf) -> Memlogd {
        Memlogd {
            log_socket,
            query_socket,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A stream whose lines memlogd keeps under `name`; `Absent` when no memlogd socket is
    /// there, which is the usual case of an image without memlogd, not a failure.
    pub fn connect(&self, name: &str) -> Result<OwnedFd, MemlogdError> {
        if let Err(e) = std::fs::symlink_metadata(&self.log_socket)
            && e.kind() == io::ErrorKind::NotFound
        {
            return Err(MemlogdError::Absent(self.log_socket.clone()));
        }
        let err = |source| MemlogdError::Send {
            name: name.to_string(),
            socket: self.log_socket.clone(),
            source,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(err)?;
        let dgram = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err)?;
        let addr = UnixAddr::new(&self.log_socket).map_err(err)?;
        // Not waiting: a memlogd that does not drain its socket must not hold up a
        // container's start.
        sendmsg(
            dgram.as_raw_fd(),
            &[IoSlice::new(name.as_bytes())],
            &[ControlMessage::ScmRights(&[theirs.as_raw_fd()])],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            Some(&addr),
        )
        .map_err(err)?;
        if self.failed.swap(false, Ordering::Relaxed) {
            log::info!(
                "memlogd on {} takes container output again",
                self.log_socket.display()
            );
        }
        Ok(ours)
    }

    /// Says once (until memlogd works again) that output goes to files instead.
    pub fn note_failure(&self, e: &MemlogdError, instead: &Path) {
        let why = crate::error_chain(e);
        if self.failed.swap(true, Ordering::Relaxed) {
            log::debug!("{why}; writing {}", instead.display());
        } else {
            log::warn!(
                "{why}; container output goes to log files instead (such as {}) until memlogd works again",
                instead.display()
            );
        }
    }

    /// A connection to the query socket, not yet asked anything (the reader writes the
    /// mode byte, see [`Query::start`]). Never waits: a memlogd whose backlog is full is an
    /// error.
    pub fn query_connection(&self) -> Result<OwnedFd, MemlogdError> {
        let err = |source| MemlogdError::Query {
            socket: self.query_socket.clone(),
            source,
        };
        let s = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(err)?;
        let addr = UnixAddr::new(&self.query_socket).map_err(err)?;
        connect(s.as_raw_fd(), &addr).map_err(err)?;
        set_blocking(s.as_fd()).map_err(err)?;
        Ok(s)
    }
}

fn set_blocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map(drop)
}

/// Writes what the stream takes now, without waiting; `EAGAIN` when it takes nothing.
pub fn send_now(fd: BorrowedFd<'_>, data: &[u8]) -> nix::Result<usize> {
    loop {
        match nix::sys::socket::send(
            fd.as_raw_fd(),
            data,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Waits until `fd` takes more, at most `timeout`; false if it did not.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        // Rounded up, so the time has passed when poll times out.
        let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return false,
            // POLLERR and POLLHUP count as ready: the next send says what happened.
            Ok(_) => return true,
            Err(Errno::EINTR) if !left.is_zero() => continue,
            Err(_) => return true,
        }
    }
}

/// One line memlogd kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    pub time: String,
    pub source: String,
    pub msg: String,
}

/// Reading memlogd's answer to one query.
pub struct Query {
    sock: std::fs::File,
    buf: Vec<u8>,
}

const MODE_DUMP: u8 = 0;
const MODE_DUMP_FOLLOW: u8 = 2;

impl Query {
    /// Asks memlogd on a query connection for every line it keeps, and with `follow`
    /// every line that comes after.
    pub fn start(conn: OwnedFd, follow: bool) -> io::Result<Query> {
        let mut sock = std::fs::File::from(conn);
        sock.write_all(&[if follow { MODE_DUMP_FOLLOW } else { MODE_DUMP }])?;
        Ok(Query {
            sock,
            buf: Vec::new(),
        })
    }

    /// One read: each whole entry that came goes to `f`. False once memlogd has ended the
    /// answer (a dump is complete; a follow ends only with memlogd).
    pub fn read_some(&mut self, mut f: impl FnMut(Entry)) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.sock.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Some(nl) = self.buf[used..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[used..used + nl];
            used += nl + 1;
            match serde_json::from_slice::<Entry>(line) {
                Ok(e) => f(e),
                Err(e) => log::warn!("memlogd sent a line that is not a log entry: {e}"),
            }
        }
        self.buf.drain(..used);
        Ok(n > 0)
    }

    /// Reads until memlogd ends the answer, waiting at most `patience` for each part.
    pub fn read_to_end(&mut self, patience: Duration, mut f: impl FnMut(Entry)) -> io::Result<()> {
        loop {
            if !self.readable_within(patience)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("memlogd sent nothing for {}s", patience.as_secs()),
                ));
            }
            if !self.read_some(&mut f)? {
                return Ok(());
            }
        }
    }

    /// Whether something (or the end) arrives within `t`.
    pub fn readable_within(&self, t: Duration) -> io::Result<bool> {
        let ms = i32::try_from(t.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_across_reads_and_bad_lines_skipped() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let mut peer = std::fs::File::from(b);
        let mut q = Query::start(a, true).unwrap();
        let mut mode = [0u8; 1];
        peer.read_exact(&mut mode).unwrap();
        assert_eq!(mode, [MODE_DUMP_FOLLOW]);
        peer.write_all(br#"{"time":"t1","source":"web.out","msg":"hel"#)
            .unwrap();
        let mut got = Vec::new();
        assert!(q.read_some(|e| got.push(e)).unwrap());
        assert!(got.is_empty());
        peer.write_all(b"lo\"}\nnot json\n{\"time\":\"t2\",\"source\":\"web\",\"msg\":\"x;y\"}\n")
            .unwrap();
        drop(peer);
        q.read_to_end(Duration::from_secs(5), |e| got.push(e))
            .unwrap();
        assert_eq!(
            got,
            vec![
                Entry {
                    time: "t1".into(),
                    source: "web.out".into(),
                    msg: "hello".into()
                },
                Entry {
                    time: "t2".into(),
                    source: "web".into(),
                    msg: "x;y".into()
                }
            ]
        );
    }

    #[test]
    fn no_socket_is_absent_and_a_dead_one_fails_to_send() {
        let d = tempfile::tempdir().unwrap();
        let m = Memlogd::new(d.path().join("log.sock"), d.path().join("q.sock"));
        assert!(matches!(m.connect("x"), Err(MemlogdError::Absent(_))));
        // A socket file nobody listens on, as a killed memlogd leaves it.
        drop(std::os::unix::net::UnixDatagram::bind(&m.log_socket).unwrap());
        match m.connect("x") {
            Err(e @ MemlogdError::Send { .. }) => {
                assert!(crate::error_chain(&e).contains("log.sock"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(m.query_connection().is_err());
    }

    #[test]
    fn the_name_and_the_stream_arrive_together() {
        let d = tempfile::tempdir().unwrap();
        let m = Memlogd::new(d.path().join("log.sock"), d.path().join("q.sock"));
        let server = std::os::unix::net::UnixDatagram::bind(&m.log_socket).unwrap();
        let ours = m.connect("onboot.x.out").unwrap();
        let mut name = [0u8; 64];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [io::IoSliceMut::new(&mut name)];
        let msg = nix::sys::socket::recvmsg::<()>(
            server.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        let n = msg.bytes;
        assert_eq!(&name[..n], b"onboot.x.out");
        assert_eq!(fds.len(), 1);
        // SAFETY: the descriptor was just received.
        let mut theirs = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        assert_eq!(send_now(ours.as_fd(), b"line\n").unwrap(), 5);
        drop(ours);
        let mut s = String::new();
        theirs.read_to_string(&mut s).unwrap();
        assert_eq!(s, "line\n");
    }
}
