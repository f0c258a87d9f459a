//! Where one stream of a container's output goes: memlogd when it is there and takes it,
//! else the stream's log file, capped and rotated as its [`Policy`] says (memlogd's ring
//! bounds what it keeps by itself). onboot and the supervisor both write through a
//! [`Sink`], so this is the one place that decides between the two.
//!
//! Writing never blocks and never loses output silently. memlogd may take less than it is
//! given (it reads as fast as it keeps lines); the rest is queued here, and the caller
//! waits for memlogd its own way (onboot by poll, the supervisor through its event loop)
//! before reading more from the container, which is the back-pressure a slow disk gives
//! too. A memlogd that is gone, refuses the stream or takes nothing for [`STALL`] is left
//! for the file, with what was queued for it: said once, see [`Memlogd::note_failure`].

use super::memlogd::{self, Memlogd, MemlogdError};
use super::rotate::{LogError, LogFile, Policy};
use nix::errno::Errno;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long memlogd may take nothing before output goes to the file instead.
pub const STALL: Duration = Duration::from_secs(5);

/// memlogd's names of a container's two streams: `BASE.out` (stdout) and `BASE` (stderr),
/// as LinuxKit names them (`onboot.NAME`, `shutdown.NAME`, a service's `NAME`).
pub fn stream_names(base: &str) -> [String; 2] {
    [format!("{base}.out"), base.to_string()]
}

/// A name whose stderr log would be another name's stdout log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "`{name}` cannot be {what} name: its stderr log {} would be the stdout log of {what} \
     `{other}`; rename the bundle (names ending in `.out` are refused)",
    log.display()
)]
pub struct NameCollision {
    /// What the name is of (`a service`, `a bundle`).
    pub what: &'static str,
    pub name: String,
    /// The name whose stdout log it would write.
    pub other: String,
    /// Its stderr log.
    pub log: PathBuf,
}

/// Why `name` cannot name a container whose logs are `DIR/PREFIXNAME.out.log` and
/// `DIR/PREFIXNAME.log` (LinuxKit's names): the stderr log of `a.out` would be the stdout log of
/// `a`. `what` says what the name is of (`a service`, `a bundle`).
pub fn name_collision(
    what: &'static str,
    dir: &Path,
    prefix: &str,
    name: &str,
) -> Option<NameCollision> {
    let other = name.strip_suffix(".out")?;
    Some(NameCollision {
        what,
        name: name.to_string(),
        other: other.to_string(),
        log: file_of(dir, &format!("{prefix}{name}")),
    })
}

/// The log file of a stream named `name`: `DIR/NAME.log`.
pub fn file_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Opens a log file for appending (logs accumulate across runs and restarts), never
/// through a symlink or into a FIFO (see [`crate::safefile`]): a container that can see the
/// log directory could otherwise turn lkinit's next write into one to any host file.
pub fn open_log(path: &Path) -> io::Result<File> {
    crate::safefile::open_append(path).map_err(io::Error::other)
}

enum To {
    Memlogd(OwnedFd),
    /// None while the file cannot be opened (retried, see `write_file`).
    File(Option<LogFile>),
}

pub struct Sink {
    /// Whose output this is (a bundle, a service), for messages.
    owner: String,
    /// memlogd's name for the stream.
    name: String,
    path: PathBuf,
    memlogd: Memlogd,
    to: To,
    /// What memlogd has not taken yet.
    queued: Vec<u8>,
    /// Since when file writes fail (each failing episode is said once).
    failing: Option<Instant>,
    /// How the log file is kept.
    policy: Policy,
}

impl Sink {
    /// memlogd if it takes the stream `name` (of `owner`'s output), else the file
    /// `DIR/NAME.log`, kept as `policy` says (an error only if it cannot be opened).
    pub fn open(
        memlogd: &Memlogd,
        dir: &Path,
        owner: &str,
        name: &str,
        policy: Policy,
    ) -> io::Result<Sink> {
        let mut s = Sink::unopened(memlogd, dir, owner, name, policy);
        s.failing = None;
        match s.try_memlogd() {
            Some(fd) => s.to = To::Memlogd(fd),
            None => s.to = To::File(Some(LogFile::open(&s.path).map_err(io::Error::other)?)),
        }
        Ok(s)
    }

    /// A file sink whose file could not be opened: output is dropped, and the file tried
    /// again at most once a second, until it opens.
    pub fn unopened(
        memlogd: &Memlogd,
        dir: &Path,
        owner: &str,
        name: &str,
        policy: Policy,
    ) -> Sink {
        Sink {
            owner: owner.to_string(),
            name: name.to_string(),
            path: file_of(dir, name),
            memlogd: memlogd.clone(),
            to: To::File(None),
            queued: Vec::new(),
            failing: Some(Instant::now()),
            policy,
        }
    }

    /// From the next write on, the file is kept as `policy` says.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn to_memlogd(&self) -> bool {
        matches!(self.to, To::Memlogd(_))
    }

    fn try_memlogd(&self) -> Option<OwnedFd> {
        match self.memlogd.connect(&self.name) {
            Ok(fd) => Some(fd),
            Err(MemlogdError::Absent(_)) => None,
            Err(e) => {
                self.memlogd.note_failure(&e, &self.path);
                None
            }
        }
    }

    /// At a new launch: memlogd if it is there now (a sink that already writes to memlogd
    /// keeps its stream), else the file opened again, so a new run writes to the file that
    /// is there now if someone moved the old one away.
    pub fn reconsider(&mut self) {
        if self.to_memlogd() {
            return;
        }
        match self.try_memlogd() {
            Some(fd) => self.to = To::Memlogd(fd),
            None => {
                if let To::File(Some(_)) = &self.to {
                    self.to = To::File(self.open_file());
                }
            }
        }
    }

    /// The log file opened again; when it cannot be, says why (once until it can) and
    /// starts dropping the output.
    fn open_file(&mut self) -> Option<LogFile> {
        match LogFile::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) => {
                if self.failing.is_none() {
                    log::warn!(
                        "{}: {}; dropping its output until the file can be written",
                        self.owner,
                        crate::error_chain(&e)
                    );
                    self.failing = Some(Instant::now());
                }
                None
            }
        }
    }

    /// Writes `data` without waiting; what memlogd does not take now stays queued.
    pub fn write(&mut self, data: &[u8]) {
        if !self.to_memlogd() {
            self.write_file(data);
            return;
        }
        if !self.queued.is_empty() {
            self.queued.extend_from_slice(data);
            self.push();
            return;
        }
        let To::Memlogd(fd) = &self.to else {
            return;
        };
        match memlogd::send_now(fd.as_fd(), data) {
            Ok(n) => self.queued.extend_from_slice(&data[n..]),
            Err(Errno::EAGAIN) => self.queued.extend_from_slice(data),
            Err(source) => {
                self.queued.extend_from_slice(data);
                self.memlogd_failed(MemlogdError::Write {
                    name: self.name.clone(),
                    socket: self.memlogd.log_socket.clone(),
                    source,
                });
            }
        }
    }

    /// Bytes memlogd has not taken yet.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The stream to memlogd while something waits for it (to poll for room).
    pub fn waiting_on(&self) -> Option<BorrowedFd<'_>> {
        match &self.to {
            To::Memlogd(fd) if !self.queued.is_empty() => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// Hands memlogd what it takes of the queue now.
    pub fn push(&mut self) {
        let To::Memlogd(fd) = &self.to else {
            return;
        };
        let mut sent = 0;
        let r = loop {
            if sent == self.queued.len() {
                break Ok(());
            }
            match memlogd::send_now(fd.as_fd(), &self.queued[sent..]) {
                Ok(n) => sent += n,
                Err(e) => break Err(e),
            }
        };
        self.queued.drain(..sent);
        match r {
            Ok(()) | Err(Errno::EAGAIN) => {}
            Err(source) => self.memlogd_failed(MemlogdError::Write {
                name: self.name.clone(),
                socket: self.memlogd.log_socket.clone(),
                source,
            }),
        }
    }

    /// memlogd took nothing for [`STALL`] while output waited: the file takes over.
    pub fn stalled(&mut self) {
        self.memlogd_failed(MemlogdError::Stalled {
            name: self.name.clone(),
            socket: self.memlogd.log_socket.clone(),
            after: STALL,
        });
    }

    /// Blocks until memlogd has taken the queue, or memlogd stalls and the file takes it.
    pub fn wait(&mut self) {
        while let Some(fd) = self.waiting_on() {
            if memlogd::wait_writable(fd, STALL) {
                self.push();
            } else {
                self.stalled();
            }
        }
    }

    /// memlogd failed this stream: one more try (memlogd may have been restarted), then
    /// the file, queue first.
    fn memlogd_failed(&mut self, e: MemlogdError) {
        if !matches!(e, MemlogdError::Stalled { .. })
            && let Ok(fd) = self.memlogd.connect(&self.name)
        {
            self.to = To::Memlogd(fd);
            log::debug!("{}: memlogd took `{}` again", self.owner, self.name);
            self.push();
            return;
        }
        self.memlogd.note_failure(&e, &self.path);
        self.to = To::File(None);
        self.failing = None;
        let q = std::mem::take(&mut self.queued);
        self.write_file(&q);
    }

    fn write_file(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // Retried at most once a second while it fails.
        if matches!(self.to, To::File(None))
            && self
                .failing
                .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            let opened = self.open_file();
            self.to = To::File(opened);
        }
        let To::File(file) = &mut self.to else {
            return;
        };
        let Some(f) = file else {
            return;
        };
        let r = f.write(data, &self.policy);
        if let Err(LogError::Reopen { .. }) = &r {
            // Retried as any file that cannot be opened.
            *file = None;
        }
        match r {
            Ok(()) => {
                if let Some(since) = self.failing.take() {
                    log::warn!(
                        "{}: writing {} again (output since {:.0}s ago was lost)",
                        self.owner,
                        self.path.display(),
                        since.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                if self.failing.is_none() {
                    log::warn!(
                        "{}: {}; dropping its output until writes work again",
                        self.owner,
                        crate::error_chain(&e)
                    );
                    self.failing = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::net::UnixDatagram;

    /// A stand-in for memlogd's receiving side: hands back each stream it is sent.
    fn receiver(path: &Path) -> UnixDatagram {
        UnixDatagram::bind(path).unwrap()
    }

    fn receive(server: &UnixDatagram) -> (String, File) {
        use std::os::fd::AsRawFd;
        let mut name = [0u8; 256];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [io::IoSliceMut::new(&mut name)];
        let msg = nix::sys::socket::recvmsg::<()>(
            server.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(r) = c {
                fd = Some(r[0]);
            }
        }
        let n = msg.bytes;
        // SAFETY: the descriptor was just received.
        let f = unsafe { File::from_raw_fd(fd.unwrap()) };
        (String::from_utf8_lossy(&name[..n]).into_owned(), f)
    }

    #[test]
    fn names_as_linuxkit_gives_them() {
        assert_eq!(stream_names("onboot.net"), ["onboot.net.out", "onboot.net"]);
        assert_eq!(
            file_of(Path::new("/run/log/shutdown"), "shutdown.x.out"),
            Path::new("/run/log/shutdown/shutdown.x.out.log")
        );
    }

    #[test]
    fn without_memlogd_the_file() {
        let d = tempfile::tempdir().unwrap();
        let m = Memlogd::new(d.path().join("none.sock"), d.path().join("q.sock"));
        let mut s = Sink::open(&m, d.path(), "web", "web.out", Policy::default()).unwrap();
        assert!(!s.to_memlogd());
        s.write(b"a\n");
        s.write(b"b\n");
        assert_eq!(
            std::fs::read_to_string(d.path().join("web.out.log")).unwrap(),
            "a\nb\n"
        );
    }

    #[test]
    fn memlogd_full_queues_then_a_stall_goes_to_the_file_with_the_queue() {
        let d = tempfile::tempdir().unwrap();
        let m = Memlogd::new(d.path().join("log.sock"), d.path().join("q.sock"));
        let server = receiver(&m.log_socket);
        let mut s = Sink::open(&m, d.path(), "web", "web.out", Policy::default()).unwrap();
        assert!(s.to_memlogd());
        let (name, theirs) = receive(&server);
        assert_eq!(name, "web.out");
        // Nobody reads `theirs`: the socket fills, and the rest queues.
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while s.queued() == 0 {
            s.write(&chunk);
            written += chunk.len();
            assert!(written < 64 << 20, "the socket never filled");
        }
        let queued = s.queued();
        s.stalled();
        assert!(!s.to_memlogd());
        assert_eq!(s.queued(), 0);
        s.write(b"after\n");
        let file = std::fs::read(d.path().join("web.out.log")).unwrap();
        assert_eq!(file.len(), queued + 6);
        assert!(file[..queued].iter().all(|&b| b == b'x'));
        assert!(file.ends_with(b"after\n"));
        drop(theirs);
    }

    #[test]
    fn memlogd_gone_goes_to_the_file_and_a_new_launch_takes_memlogd_again() {
        let d = tempfile::tempdir().unwrap();
        let m = Memlogd::new(d.path().join("log.sock"), d.path().join("q.sock"));
        let server = receiver(&m.log_socket);
        let mut s = Sink::open(&m, d.path(), "svc", "svc", Policy::default()).unwrap();
        let (_, mut theirs) = receive(&server);
        s.write(b"one\n");
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"one\n");
        // memlogd dies: its socket file stays, nobody listens, the stream is closed.
        drop(server);
        drop(theirs);
        s.write(b"two\n");
        assert!(!s.to_memlogd());
        assert_eq!(
            std::fs::read_to_string(d.path().join("svc.log")).unwrap(),
            "two\n"
        );
        // A new memlogd; the next launch finds it.
        std::fs::remove_file(&m.log_socket).unwrap();
        let server = receiver(&m.log_socket);
        s.reconsider();
        assert!(s.to_memlogd());
        s.write(b"three\n");
        let (_, theirs) = receive(&server);
        drop(s);
        let mut rest = String::new();
        { theirs }.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "three\n");
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_to_open() {
        let d = tempfile::tempdir().unwrap();
        let m = Memlogd::new(d.path().join("none.sock"), d.path().join("q.sock"));
        std::fs::create_dir(d.path().join("x.log")).unwrap();
        assert!(Sink::open(&m, d.path(), "x", "x", Policy::default()).is_err());
    }
}
