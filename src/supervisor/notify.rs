//! systemd's notification protocol, for `ready: notify` and the watchdog: a datagram
//! socket the supervisor binds for each service, which the container sees as
//! `NOTIFY_SOCKET`, and what arrives on it.
//!
//! The socket lives in `STATE_DIR/notify/NAME/`, and that directory (not the socket file)
//! is bound read-only into the container at [`CONTAINER_DIR`]: a supervisor started again
//! binds a fresh socket at the same path, and the container, which sees the directory,
//! reaches it without a new mount. A read-only bind still lets the container send (a
//! socket's permissions are checked, not the mount's), and nothing else can be made there.
//!
//! Anything can be sent to a socket that a container can reach, so every datagram is
//! checked: at most [`MAX_MESSAGE`] bytes, descriptors sent along closed at once, and the
//! sender (its pid, from SCM_CREDENTIALS, which the kernel fills in and translates into
//! the supervisor's pid namespace) must be one of the service's processes: its init, in its
//! pid namespace or in its cgroup. Anything else is ignored and logged (at most once per
//! 10 s). A process holding CAP_SYS_ADMIN over the service's pid namespace may claim any
//! pid the kernel lets it name; that is root on the host, which needs no forged message to
//! stop a service.

use crate::bundle::{Bind, ConfigExtra};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Where the container finds the socket's directory.
pub const CONTAINER_DIR: &str = "/run/lkinit-notify";
const SOCKET_NAME: &str = "notify.sock";

/// The longest datagram taken (systemd's own limit); a longer one is dropped whole.
pub const MAX_MESSAGE: usize = 4096;

/// The longest `STATUS=` text kept (the rest of a longer one is cut, at a character).
pub const MAX_STATUS: usize = 1024;

/// Descriptors one datagram can carry (the kernel's SCM_MAX_FD): room for all of them, so
/// none is left open in the supervisor for want of space to see it.
const MAX_FDS: usize = 253;

/// The directories of every service's socket.
pub fn root_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("notify")
}

fn dir_of(state_dir: &Path, name: &str) -> PathBuf {
    root_dir(state_dir).join(name)
}

/// Removes the socket of service `name` and its directory, once its container is gone.
pub fn remove(state_dir: &Path, name: &str) {
    let dir = dir_of(state_dir, name);
    let _ = std::fs::remove_file(dir.join(SOCKET_NAME));
    let _ = std::fs::remove_dir(&dir);
}

/// One service's notification socket. Dropped, it removes its file (if it is still the
/// one it bound: a newer socket of the same service may have replaced it) and directory.
pub struct NotifySocket {
    fd: AsyncFd<OwnedFd>,
    dir: PathBuf,
    path: PathBuf,
    /// Device and inode of the socket file bound.
    bound: (u64, u64),
}

/// What one datagram brought.
#[derive(Debug)]
pub enum Received {
    /// The sender's pid (None: the kernel gave no credentials) and the message.
    Message { pid: Option<i32>, data: Vec<u8> },
    /// Longer than [`MAX_MESSAGE`]: dropped.
    TooLong { pid: Option<i32>, len: usize },
}

impl NotifySocket {
    /// Binds the socket of service `name` (replacing a file left there by a supervisor that
    /// was killed).
    pub fn bind(state_dir: &Path, name: &str) -> io::Result<NotifySocket> {
        let dir = dir_of(state_dir, name);
        std::fs::create_dir_all(&dir)?;
        // The container's root may be another user on the host (a user namespace): it must
        // reach and write the socket. Whether a message counts is decided by its sender.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = dir.join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let sock = std::os::unix::net::UnixDatagram::bind(&path)?;
        sock.set_nonblocking(true)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true)
            .map_err(io::Error::from)?;
        let meta = std::fs::symlink_metadata(&path)?;
        // SAFETY: the OwnedFd is a valid descriptor, owned by the AsyncFd for as long as it
        // is registered.
        let fd =
            unsafe { AsyncFd::register_with_interest(OwnedFd::from(sock), Interest::READABLE) }
                .map_err(io::Error::from)?;
        Ok(NotifySocket {
            fd,
            dir,
            path,
            bound: (meta.dev(), meta.ino()),
        })
    }

    /// What the container's config.json gets: the directory bound in, `NOTIFY_SOCKET`,
    /// and `WATCHDOG_USEC` when a watchdog is set.
    pub fn config(&self, watchdog: Option<Duration>) -> ConfigExtra {
        let mut env = vec![(
            "NOTIFY_SOCKET".to_string(),
            format!("{CONTAINER_DIR}/{SOCKET_NAME}"),
        )];
        if let Some(w) = watchdog {
            env.push(("WATCHDOG_USEC".to_string(), w.as_micros().to_string()));
        }
        ConfigExtra {
            binds: vec![Bind {
                source: self.dir.clone(),
                destination: CONTAINER_DIR.to_string(),
                read_only: true,
            }],
            env,
        }
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_one(fd.get_ref().as_raw_fd())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.bound) {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Reads one datagram without blocking; descriptors that came with it are closed.
fn recv_one(fd: RawFd) -> io::Result<Received> {
    const CMSG_BYTES: usize = 64 + MAX_FDS * 4 + 64;
    // u64s: the control buffer must be aligned for cmsghdr.
    let mut control = [0u64; CMSG_BYTES / 8];
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no buffers) until filled in below.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.as_mut_ptr().cast();
    // `as _`: the field is a size_t with glibc and a socklen_t with musl; the buffer's
    // size (about 1 KiB) fits either.
    mh.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `mh` points into buffers that live past the call, with their
    // true lengths. MSG_TRUNC makes a datagram longer than `buf` return its whole length.
    let n = unsafe {
        libc::recvmsg(
            fd,
            &mut mh,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let mut pid = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within the length
    // it set in `mh`; each header is read only after the macro says it is in bounds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let header = libc::CMSG_LEN(0) as usize;
            let payload = ((*c).cmsg_len as usize).saturating_sub(header);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..payload / std::mem::size_of::<RawFd>() {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        // The kernel installed it in this process: owning it closes it.
                        drop(OwnedFd::from_raw_fd(raw));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if payload >= std::mem::size_of::<libc::ucred>() =>
                {
                    let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    pid = Some(cred.pid).filter(|p| *p > 0);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    if len > buf.len() || mh.msg_flags & libc::MSG_TRUNC != 0 {
        return Ok(Received::TooLong { pid, len });
    }
    buf.truncate(len);
    Ok(Received::Message { pid, data: buf })
}

/// What a notification says (systemd's `sd_notify(3)` variables lkinit acts on; the rest
/// are ignored, as systemd ignores what it does not know).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Message {
    pub ready: bool,
    pub stopping: bool,
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the service asks to be treated as hung.
    pub watchdog_trigger: bool,
    pub status: Option<String>,
    /// `EXTEND_TIMEOUT_USEC`: more time to get ready, from now.
    pub extend: Option<Duration>,
}

/// Parses a datagram: `VAR=VALUE` lines. A NUL byte makes the whole message invalid, as
/// with systemd.
pub fn parse(data: &[u8]) -> Result<Message, &'static str> {
    if data.contains(&0) {
        return Err("it holds a NUL byte");
    }
    let mut m = Message::default();
    for line in data.split(|b| *b == b'\n') {
        let Some(eq) = line.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"READY" => m.ready |= value == b"1",
            b"STOPPING" => m.stopping |= value == b"1",
            b"WATCHDOG" if value == b"1" => m.watchdog = true,
            b"WATCHDOG" if value == b"trigger" => m.watchdog_trigger = true,
            b"STATUS" => {
                let text = String::from_utf8_lossy(value);
                m.status = Some(cut(&text, MAX_STATUS).to_string());
            }
            b"EXTEND_TIMEOUT_USEC" => {
                m.extend = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_micros);
            }
            _ => {}
        }
    }
    Ok(m)
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Who counts as the service when a message arrives: its init, and the processes in its
/// pid namespace or cgroup, where those are its own (not the supervisor's).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub init: i32,
    /// `/proc/INIT/ns/pid`, when it is not the supervisor's.
    pid_ns: Option<String>,
    /// `/proc/INIT/cgroup` entries (hierarchy, path) that are not the supervisor's.
    cgroups: Vec<(String, String)>,
}

/// Whether a sender is one of the service's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Service,
    Other,
    /// Gone before it could be looked at.
    Gone,
}

/// `/proc/PID/cgroup` as (hierarchy, path) pairs: `4:memory:/a/b` gives `("4:memory",
/// "/a/b")`, `0::/a` gives `("0:", "/a")`.
pub fn cgroup_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (hier, path) = l.rsplit_once(':')?;
            Some((hier.to_string(), path.to_string()))
        })
        .collect()
}

/// Whether cgroup `path` is `parent` or below it.
pub fn within(parent: &str, path: &str) -> bool {
    path == parent
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('/') || parent.ends_with('/'))
}

fn read_link(p: String) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
}

fn read_cgroups(pid: &str) -> Option<Vec<(String, String)>> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .map(|t| cgroup_entries(&t))
}

impl Identity {
    /// The identity of the service whose init is `init`, as it is now.
    pub fn of(init: i32) -> Identity {
        let ours_ns = read_link("/proc/self/ns/pid".into());
        let pid_ns =
            read_link(format!("/proc/{init}/ns/pid")).filter(|ns| Some(ns) != ours_ns.as_ref());
        let ours = read_cgroups("self").unwrap_or_default();
        let cgroups = read_cgroups(&init.to_string())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !ours.contains(e))
            .collect();
        Identity {
            init,
            pid_ns,
            cgroups,
        }
    }

    /// Whether what is known of a sender (its pid namespace and cgroups) makes it one of
    /// the service's processes.
    pub fn owns(&self, pid_ns: Option<&str>, cgroups: &[(String, String)]) -> bool {
        if self.pid_ns.is_some() && self.pid_ns.as_deref() == pid_ns {
            return true;
        }
        self.cgroups
            .iter()
            .any(|(hier, path)| cgroups.iter().any(|(h, p)| h == hier && within(path, p)))
    }

    /// Looks the sender up.
    pub fn sender(&self, pid: i32) -> Sender {
        if pid == self.init {
            return Sender::Service;
        }
        let pid_ns = read_link(format!("/proc/{pid}/ns/pid"));
        let Some(cgroups) = read_cgroups(&pid.to_string()) else {
            return Sender::Gone;
        };
        if self.owns(pid_ns.as_deref(), &cgroups) {
            Sender::Service
        } else {
            Sender::Other
        }
    }
}

/// A message for the log: control characters escaped, cut short.
pub fn printable(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    crate::bundle::printable_name(cut(&text, 200))
}

/// The socket path of service `name` on the host (what a test can forge messages to).
pub fn host_path(state_dir: &Path, name: &str) -> PathBuf {
    dir_of(state_dir, name).join(SOCKET_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let m = parse(b"READY=1\nSTATUS=serving 3 clients\n").unwrap();
        assert!(m.ready && !m.stopping && !m.watchdog);
        assert_eq!(m.status.as_deref(), Some("serving 3 clients"));
        assert!(parse(b"WATCHDOG=1").unwrap().watchdog);
        assert!(parse(b"WATCHDOG=trigger").unwrap().watchdog_trigger);
        assert!(parse(b"STOPPING=1").unwrap().stopping);
        assert_eq!(
            parse(b"EXTEND_TIMEOUT_USEC=2500000").unwrap().extend,
            Some(Duration::from_millis(2500))
        );
        // What is not known, or not quite right, is no signal.
        let m =
            parse(b"READY=0\nREADY\nMAINPID=4\nready=1\nX=READY=1\nEXTEND_TIMEOUT_USEC=x").unwrap();
        assert_eq!(m, Message::default());
        assert!(parse(b"READY=1\0").is_err());
        let long = format!("STATUS={}", "é".repeat(1000));
        let s = parse(long.as_bytes()).unwrap().status.unwrap();
        assert!(
            s.len() <= MAX_STATUS && s.chars().all(|c| c == 'é'),
            "{}",
            s.len()
        );
        assert_eq!(
            parse(b"STATUS=a\xffb").unwrap().status.as_deref(),
            Some("a\u{fffd}b")
        );
    }

    #[test]
    fn cgroups() {
        let e = cgroup_entries("12:pids:/lk/web\n1:name=systemd:/lk/web\n0::/lk/web\n");
        assert_eq!(
            e,
            vec![
                ("12:pids".to_string(), "/lk/web".to_string()),
                ("1:name=systemd".into(), "/lk/web".into()),
                ("0:".into(), "/lk/web".into())
            ]
        );
        assert!(within("/lk/web", "/lk/web"));
        assert!(within("/lk/web", "/lk/web/child"));
        assert!(!within("/lk/web", "/lk/web2"));
        assert!(!within("/lk/web", "/lk"));
        assert!(within("/", "/anything"));
    }

    /// A sender counts when it shares the service's own pid namespace or sits in its own
    /// cgroup (or below); what the service shares with the supervisor proves nothing.
    #[test]
    fn who_is_the_service() {
        let id = Identity {
            init: 100,
            pid_ns: Some("pid:[1]".into()),
            cgroups: vec![("0:".into(), "/lk/web".into())],
        };
        let cg = |p: &str| vec![("0:".to_string(), p.to_string())];
        assert!(id.owns(Some("pid:[1]"), &cg("/elsewhere")));
        assert!(id.owns(Some("pid:[2]"), &cg("/lk/web")));
        assert!(id.owns(None, &cg("/lk/web/sub")));
        assert!(!id.owns(Some("pid:[2]"), &cg("/lk/web2")));
        assert!(!id.owns(Some("pid:[2]"), &[("4:pids".into(), "/lk/web".into())]));
        let shared = Identity {
            init: 100,
            pid_ns: None,
            cgroups: Vec::new(),
        };
        assert!(!shared.owns(None, &cg("/lk/web")));
        assert_eq!(shared.sender(100), Sender::Service);
    }

    /// Senders seen for real: this process is not the service of another process, and a
    /// datagram with descriptors leaves none open here.
    #[tokio::test]
    async fn a_real_socket() {
        let t = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(t.path(), "web").unwrap();
        let path = host_path(t.path(), "web");
        let extra = sock.config(Some(Duration::from_secs(3)));
        assert_eq!(extra.binds[0].source, path.parent().unwrap());
        assert!(
            extra
                .env
                .contains(&("WATCHDOG_USEC".into(), "3000000".into()))
        );
        let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
        c.send_to(b"READY=1", &path).unwrap();
        match sock.recv().await.unwrap() {
            Received::Message { pid, data } => {
                assert_eq!(pid, Some(i32::try_from(std::process::id()).unwrap()));
                assert_eq!(data, b"READY=1");
            }
            r => panic!("{r:?}"),
        }
        // Descriptors of a file of its own: none may be open here once it is received.
        let marker = t.path().join("marker");
        let file = std::fs::File::create(&marker).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.connect(&path).unwrap();
        let raws = [file.as_raw_fd(); 8];
        let iov = [std::io::IoSlice::new(b"READY=1")];
        nix::sys::socket::sendmsg::<()>(
            client.as_raw_fd(),
            &iov,
            &[nix::sys::socket::ControlMessage::ScmRights(&raws)],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(file);
        assert!(matches!(
            sock.recv().await.unwrap(),
            Received::Message { .. }
        ));
        let open: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| *t == marker)
            .collect();
        assert!(open.is_empty(), "{open:?}");
        client.send(&vec![b'x'; MAX_MESSAGE + 1]).unwrap();
        assert!(matches!(
            sock.recv().await.unwrap(),
            Received::TooLong { len, .. } if len == MAX_MESSAGE + 1
        ));
        let other = Identity::of(i32::try_from(std::process::id()).unwrap() + 1_000_000);
        assert_eq!(
            other.sender(i32::try_from(std::process::id()).unwrap()),
            Sender::Other
        );
        drop(sock);
        assert!(!path.exists() && !path.parent().unwrap().exists());
    }
}
