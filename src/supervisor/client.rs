//! The service CLI: `list`, `status`, `start`, `stop`, `restart`, `logs [-f]`. A plain,
//! blocking client of the control socket (no runtime, no threads).
//!
//! Exit status: 0 done (for `status`: running), 3 `status` of a service that is not
//! running, 1 anything else (no supervisor, unknown service, refused, failed, no answer
//! in time).
//!
//! Whoever listens on the socket is trusted only if it runs as root (or as the client's
//! own user): the socket's directory may be one where others can bind first. Every name
//! and message the supervisor sends is printed escaped, so none can start a line of its
//! own.

use super::protocol::{LogFiles, MAX_FDS, Op, Response, ResponseError, ServiceInfo, State};
use crate::bundle::printable_name as printable;
use crate::cli::{ClientArgs, Command};
use crate::logs::follow::Stream;
use crate::logs::memlogd::{Entry, Query};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, connect,
    getsockopt, recvmsg, socket, sockopt,
};
use std::fs::File;
use std::io::{self, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// `status` of a service that is not running (the LSB code for "not running").
pub const NOT_RUNNING: i32 = 3;

/// How long the CLI waits for an answer by default: the supervisor answers `list`,
/// `status` and `logs` from what it knows, at once.
const QUICK_ANSWER: Duration = Duration::from_secs(30);

/// The same for `start`, `stop` and `restart`, which wait for the runtime: longer than a
/// start or a stop takes with the runtime's bounds and a grace period of a few minutes.
const SLOW_ANSWER: Duration = Duration::from_secs(300);

/// The time the CLI gives the supervisor for `op`: `--timeout`, else the default; None is
/// no limit.
fn answer_within(op: &Op, client: &ClientArgs) -> Option<Duration> {
    match client.timeout {
        Some(t) if t <= 0.0 || !t.is_finite() => None,
        Some(t) => Some(Duration::from_secs_f64(t.min(1e9))),
        None => Some(match op {
            Op::List | Op::Status(_) | Op::Logs(_) | Op::Runtime => QUICK_ANSWER,
            Op::Start(_) | Op::Stop(_) | Op::Restart(_) => SLOW_ANSWER,
        }),
    }
}

/// Runs one CLI command against the supervisor on `sock`; returns the exit status.
pub fn run(sock: &Path, cmd: &Command) -> i32 {
    let (op, follow, client) = match cmd {
        Command::List { client } => (Op::List, false, client),
        Command::Status { name, client } => (Op::Status(name.clone()), false, client),
        Command::Start { name, client } => (Op::Start(name.clone()), false, client),
        Command::Stop { name, client } => (Op::Stop(name.clone()), false, client),
        Command::Restart { name, client } => (Op::Restart(name.clone()), false, client),
        Command::Logs {
            follow,
            name,
            client,
        } => (Op::Logs(name.clone()), *follow, client),
        other => {
            log::error!("{other:?} is not a service command");
            return 1;
        }
    };
    let (r, fds) = match request(sock, &op, answer_within(&op, client)) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    if !r.ok {
        log::error!(
            "{}",
            printable(r.error.as_deref().unwrap_or("the supervisor refused"))
        );
        return 1;
    }
    let mut out = io::stdout().lock();
    let printed = match op {
        Op::List => print_list(&mut out, r.services.as_deref().unwrap_or_default()),
        Op::Status(_) => {
            let Some(s) = r.service else {
                log::error!("the supervisor sent no status");
                return 1;
            };
            let code = if s.state == State::Running {
                0
            } else {
                NOT_RUNNING
            };
            return match print_status(&mut out, &s) {
                Ok(()) => code,
                Err(_) => 1,
            };
        }
        Op::Start(_) | Op::Stop(_) | Op::Restart(_) => match &r.message {
            Some(m) => writeln!(out, "{}", printable(m)),
            None => Ok(()),
        },
        Op::Logs(_) => {
            drop(out);
            return logs(fds, r.logs, follow);
        }
        Op::Runtime => match &r.runtime {
            Some(rt) => writeln!(out, "{}", rt.bin),
            None => Ok(()),
        },
    };
    i32::from(printed.is_err())
}

/// The OCI runtime and runtime root of the supervisor on `sock`, when one answers there
/// (quickly: `exec`, `mount` and `umount` fall back to their own options otherwise).
pub fn supervisor_runtime(sock: &Path) -> Option<super::protocol::RuntimeInfo> {
    match request(sock, &Op::Runtime, Some(Duration::from_secs(5))) {
        Ok((r, _)) if r.ok => r.runtime,
        Ok((r, _)) => {
            log::debug!("{}: {}", sock.display(), r.error.unwrap_or_default());
            None
        }
        Err(e) => {
            log::debug!("{e}");
            None
        }
    }
}

/// Why the CLI got no usable answer from the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket's path cannot be used, or the socket not set up.
    #[error("{}: {source}", sock.display())]
    Path { sock: PathBuf, source: io::Error },
    #[error("cannot make a socket: {0}")]
    Socket(Errno),
    #[error(
        "no answer from the supervisor on {}: its queue of connections stayed full (it is \
         overloaded or hung)",
        sock.display()
    )]
    QueueFull { sock: PathBuf },
    #[error(
        "no supervisor is running: cannot connect to {}: {source} (start one with `lkinit \
         system-init`)",
        sock.display()
    )]
    NoSupervisor { sock: PathBuf, source: io::Error },
    #[error("permission denied on {}: the service socket is root's only", sock.display())]
    NotRoot { sock: PathBuf },
    #[error("cannot connect to {}: {source}", sock.display())]
    Connect { sock: PathBuf, source: io::Error },
    #[error("cannot read the credentials of {}: {source}", sock.display())]
    Credentials { sock: PathBuf, source: Errno },
    /// Whoever listens on the socket is neither root nor the client's user.
    #[error(
        "refusing to talk to {}: the process listening there (pid {pid}) runs as uid {uid}, \
         not as root; it is not the supervisor (someone else may have bound that path)",
        sock.display()
    )]
    Untrusted { sock: PathBuf, pid: i32, uid: u32 },
    #[error("talking to the supervisor on {}: {source}", sock.display())]
    Lost { sock: PathBuf, source: io::Error },
    #[error(
        "talking to the supervisor on {}: it closed the connection without an answer",
        sock.display()
    )]
    Closed { sock: PathBuf },
    /// No answer within `timeout` (None: no limit was set, and yet the time ran out).
    #[error(
        "no answer from the supervisor on {} within {} (it is busy or hung; what was asked \
         may still be done; --timeout SECS waits longer, 0 for ever)",
        sock.display(),
        timeout.map_or_else(String::new, |t| format!("{}s", t.as_secs_f64()))
    )]
    Late {
        sock: PathBuf,
        timeout: Option<Duration>,
    },
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// Connects to `sock` by `deadline` (a supervisor that does not accept leaves the
/// connection waiting in its queue, and a full queue makes `connect` wait).
fn connect_by(sock: &Path, deadline: Option<Instant>) -> Result<UnixStream, ClientError> {
    let path = |source| ClientError::Path {
        sock: sock.to_path_buf(),
        source,
    };
    let addr = UnixAddr::new(sock).map_err(|e| path(io::Error::from(e)))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(ClientError::Socket)?;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(Errno::EAGAIN) if deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::EAGAIN) => {
                return Err(ClientError::QueueFull {
                    sock: sock.to_path_buf(),
                });
            }
            Err(e) => {
                let source = io::Error::from(e);
                let sock = sock.to_path_buf();
                return Err(match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        ClientError::NoSupervisor { sock, source }
                    }
                    io::ErrorKind::PermissionDenied => ClientError::NotRoot { sock },
                    _ => ClientError::Connect { sock, source },
                });
            }
        }
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false).map_err(path)?;
    Ok(s)
}

/// Whether whoever answers on `s` may be trusted: root, or the client's own user (a
/// supervisor run by hand for testing). Anyone else may have bound the path first, and
/// what it says (services, log descriptors) would be lies.
fn check_server(s: &UnixStream, sock: &Path) -> Result<(), ClientError> {
    let cred =
        getsockopt(s, sockopt::PeerCredentials).map_err(|source| ClientError::Credentials {
            sock: sock.to_path_buf(),
            source,
        })?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        return Ok(());
    }
    Err(ClientError::Untrusted {
        sock: sock.to_path_buf(),
        pid: cred.pid(),
        uid: cred.uid(),
    })
}

/// Sends one request and reads the response line, with any descriptors sent along, giving
/// up at `timeout` after the start.
fn request(
    sock: &Path,
    op: &Op,
    timeout: Option<Duration>,
) -> Result<(Response, Vec<OwnedFd>), ClientError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut s = connect_by(sock, deadline)?;
    check_server(&s, sock)?;
    let lost = |e: io::Error| ClientError::Lost {
        sock: sock.to_path_buf(),
        source: e,
    };
    let late = || ClientError::Late {
        sock: sock.to_path_buf(),
        timeout,
    };
    // SO_RCVTIMEO and SO_SNDTIMEO: what is left of the time, for each wait.
    let set_left = |s: &UnixStream| -> Result<(), ClientError> {
        let Some(d) = deadline else { return Ok(()) };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        s.set_read_timeout(Some(left))
            .and_then(|_| s.set_write_timeout(Some(left)))
            .map_err(lost)
    };
    set_left(&s)?;
    // A supervisor that refuses may answer and close before reading everything; its
    // answer is still there to read.
    if let Err(e) = s.write_all(op.encode().as_bytes()) {
        match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {}
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Err(late()),
            _ => return Err(lost(e)),
        }
    }
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        set_left(&s)?;
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EAGAIN) => return Err(late()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(lost(e.into())),
        };
        for c in msg.cmsgs().map_err(|e| lost(e.into()))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
        if line.ends_with(b"\n") {
            break;
        }
    }
    if line.is_empty() {
        return Err(ClientError::Closed {
            sock: sock.to_path_buf(),
        });
    }
    Ok((Response::decode(line.trim_ascii_end())?, fds))
}

fn pid_text(s: &ServiceInfo) -> String {
    s.pid.map_or_else(|| "-".into(), |p| p.to_string())
}

fn print_list(out: &mut impl Write, services: &[ServiceInfo]) -> io::Result<()> {
    let names: Vec<String> = services.iter().map(|s| printable(&s.name)).collect();
    let w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "{:<w$}  {:<10}  {:>7}  {:>8}",
        "NAME", "STATE", "PID", "RESTARTS"
    )?;
    for (s, name) in services.iter().zip(&names) {
        let line = format!(
            "{:<w$}  {:<10}  {:>7}  {:>8}",
            name,
            s.state.as_str(),
            pid_text(s),
            s.restarts
        );
        match &s.reason {
            Some(r) => writeln!(out, "{line}  {}", printable(r))?,
            None => writeln!(out, "{}", line.trim_end())?,
        }
    }
    Ok(())
}

fn print_status(out: &mut impl Write, s: &ServiceInfo) -> io::Result<()> {
    writeln!(out, "name:     {}", printable(&s.name))?;
    writeln!(out, "state:    {}", s.state.as_str())?;
    writeln!(out, "pid:      {}", pid_text(s))?;
    writeln!(out, "restarts: {}", s.restarts)?;
    writeln!(
        out,
        "exit:     {}",
        printable(s.exit.as_deref().unwrap_or("-"))
    )?;
    writeln!(out, "since:    {}", since_text(s.since))?;
    if let Some(r) = &s.reason {
        writeln!(out, "reason:   {}", printable(r))?;
    }
    if s.adopted {
        writeln!(out, "adopted:  yes (started by an earlier supervisor)")?;
    }
    if let Some(t) = &s.status_text {
        writeln!(out, "status:   {}", printable(t))?;
    }
    if let Some(c) = &s.check {
        let verdict = match (c.ok, c.failures) {
            (true, _) => "ok".to_string(),
            (false, 0) => "failed".to_string(),
            (false, n) => format!("failed ({n} in a row)"),
        };
        writeln!(
            out,
            "check:    {} {verdict}: {}, in {} ms, {}",
            printable(&c.kind),
            printable(&c.result),
            c.took_ms,
            since_text(c.at)
        )?;
        if !c.output.is_empty() {
            writeln!(out, "output:   {}", printable(&c.output))?;
        }
    }
    Ok(())
}

/// `2024-05-01 12:00:03 UTC (1m12s ago)`.
fn since_text(since: f64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(since);
    let ago = Duration::try_from_secs_f64(now - since).map_or(0, |d| d.as_secs());
    let ago = match ago {
        a if a < 60 => format!("{a}s"),
        a if a < 3600 => format!("{}m{}s", a / 60, a % 60),
        a if a < 86400 => format!("{}h{}m", a / 3600, (a % 3600) / 60),
        a => format!("{}d{}h", a / 86400, (a % 86400) / 3600),
    };
    // Rust's float-to-int `as` saturates: a time no supervisor sends prints as a wrong date.
    #[expect(clippy::cast_possible_truncation, reason = "saturating, see above")]
    let since = since as i64;
    format!("{} ({ago} ago)", utc(since))
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, proleptic Gregorian).
pub fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    let (y, m, d) = crate::civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// How often `logs -f` looks for more.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// How long memlogd may take to send the next part of its dump.
const MEMLOGD_PATIENCE: Duration = Duration::from_secs(10);

/// Prints the stdout log on stdout and the stderr log on stderr, each with its rotated
/// files first, then what memlogd keeps of the two streams (`files.memlogd` names them;
/// its connection is the third descriptor); with `follow`, keeps printing what is
/// appended (and starts over if a file is truncated, goes on with the new file after a
/// rotation) and what memlogd is sent.
fn logs(fds: Vec<OwnedFd>, files: Option<LogFiles>, follow: bool) -> i32 {
    let Some(files) = files else {
        log::error!("the supervisor sent no log files");
        return 1;
    };
    let want = 2 + usize::from(files.memlogd.is_some()) + files.rotated[0] + files.rotated[1];
    if fds.len() != want {
        log::error!(
            "the supervisor sent {} log descriptor(s), not {want}",
            fds.len()
        );
        return 1;
    }
    let mut fds = fds.into_iter().map(File::from);
    let (Some(out), Some(err)) = (fds.next(), fds.next()) else {
        return 1;
    };
    let conn = files.memlogd.as_ref().and_then(|_| fds.next());
    let out_rotated: Vec<File> = fds.by_ref().take(files.rotated[0]).collect();
    let err_rotated: Vec<File> = fds.collect();
    let mut query = match (files.memlogd, conn) {
        (Some(names), Some(conn)) => match Query::start(conn.into(), follow) {
            Ok(q) => Some((names, q)),
            Err(e) => {
                log::warn!("cannot ask memlogd for the service's lines: {e}");
                None
            }
        },
        _ => None,
    };
    let mut streams = [
        Stream::new(out_rotated, out, &files.stdout),
        Stream::new(err_rotated, err, &files.stderr),
    ];
    let pump = |s: &mut Stream, w: &mut dyn Write| {
        let mut w = w;
        if follow {
            s.follow_rotation(&mut w)?;
        }
        s.copy_new(&mut w)
    };
    loop {
        for (i, s) in streams.iter_mut().enumerate() {
            let r = if i == 0 {
                pump(s, &mut io::stdout().lock())
            } else {
                pump(s, &mut io::stderr().lock())
            };
            if let Err(e) = r {
                // Our reader went away (a closed pipe): that ends the job.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return 0;
                }
                log::error!("reading the log: {e}");
                return 1;
            }
        }
        if let Some((names, q)) = &mut query {
            let mut printed = Ok(());
            let mut print = |e: Entry| {
                if printed.is_ok() {
                    printed = print_entry(names, &e);
                }
            };
            let more = if follow {
                q.readable_within(FOLLOW_EVERY).and_then(|ready| {
                    if ready {
                        q.read_some(&mut print)
                    } else {
                        Ok(true)
                    }
                })
            } else {
                q.read_to_end(MEMLOGD_PATIENCE, &mut print).map(|()| false)
            };
            match (printed, more) {
                (Err(e), _) if e.kind() == io::ErrorKind::BrokenPipe => return 0,
                (Err(e), _) => {
                    log::error!("printing the log: {e}");
                    return 1;
                }
                (Ok(()), Ok(true)) => {}
                // The dump is complete, or (following) memlogd has gone: the files go on.
                (Ok(()), Ok(false)) => query = None,
                (Ok(()), Err(e)) => {
                    log::error!("reading memlogd's lines: {e}");
                    return 1;
                }
            }
        } else if follow {
            std::thread::sleep(FOLLOW_EVERY);
        }
        if !follow {
            return 0;
        }
    }
}

/// A line of the service's stdout on stdout, of its stderr on stderr; other logs' lines
/// are not its.
fn print_entry(names: &[String; 2], e: &Entry) -> io::Result<()> {
    let line = |out: &mut dyn Write| {
        out.write_all(e.msg.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    };
    if e.source == names[0] {
        line(&mut io::stdout().lock())
    } else if e.source == names[1] {
        line(&mut io::stderr().lock())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
