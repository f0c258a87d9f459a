//! The control socket: root only (mode 0600, and the peer's uid checked with SO_PEERCRED,
//! which also covers a socket whose mode was loosened or that was passed elsewhere), one
//! request per connection (see protocol.rs).

use super::output;
use super::protocol::{LogFiles, MAX_REQUEST, Op, RequestError, Response, ServiceInfo};
use super::service;
use super::throttle;
use super::types::{Boot, Cmd, Handle, Reply, ServiceError, Sup};
use crate::bundle;
use crate::logs::NameCollision;
use crate::safefile::FileError;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another supervisor answers on {0}")]
    InUse(PathBuf),
    #[error("cannot create the socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the socket's directory {dir} is writable by others (mode {mode:04o}): anyone could \
         bind the socket's path first and answer the service CLI; use a directory only root \
         can write (lkinit makes a missing one with mode 0700)"
    )]
    OpenDir { dir: PathBuf, mode: u32 },
    #[error(
        "the socket's directory {dir} belongs to uid {uid}, who could put another socket in \
         its place; use a directory of root's"
    )]
    ForeignDir { dir: PathBuf, uid: u32 },
}

/// Why a request was not carried out: its Display is the error the client is answered.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("permission denied: only root may control services (this client runs as uid {0})")]
    NotRoot(u32),
    /// `dir` is the directory of service bundles.
    #[error("no service `{name}` (the services are the bundles in {})", dir.display())]
    Unknown { name: String, dir: PathBuf },
    /// `dir` is where its bundle would be.
    #[error("no service `{name}`: {} is not a bundle directory", dir.display())]
    NotABundle { name: String, dir: PathBuf },
    #[error(transparent)]
    Name(#[from] NameCollision),
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A log file that cannot be opened for the client.
    #[error("{}", crate::error_chain(.0))]
    Log(FileError),
}

/// Checks that nobody but root (or this supervisor's user) can put a socket at `dir/..`:
/// `dir` owned by us and writable by nobody else, and every directory above it owned by
/// root or us and writable by others only when sticky (as /tmp is: others can then not
/// rename what is ours).
fn check_socket_dir(dir: &Path) -> Result<(), SocketError> {
    let dir = std::fs::canonicalize(dir).map_err(|source| SocketError::Bind {
        path: dir.to_path_buf(),
        source,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    for (i, d) in dir.ancestors().enumerate() {
        let m = std::fs::metadata(d).map_err(|source| SocketError::Bind {
            path: d.to_path_buf(),
            source,
        })?;
        let mode = m.mode() & 0o7777;
        if m.uid() != 0 && m.uid() != me {
            return Err(SocketError::ForeignDir {
                dir: d.to_path_buf(),
                uid: m.uid(),
            });
        }
        let open = mode & 0o022 != 0;
        let sticky = mode & 0o1000 != 0;
        if open && (i == 0 || !sticky) {
            return Err(SocketError::OpenDir {
                dir: d.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

/// Binds the socket at `path`, mode 0600 from the moment it has its name: it is made under
/// a temporary name, restricted, then renamed into place. A socket file nobody answers on
/// (left by a killed supervisor) is replaced. Its directory is made mode 0700 when it is
/// missing, and refused when others could put a socket there (see [`check_socket_dir`]).
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let err = |source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    check_socket_dir(dir)?;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(SocketError::InUse(path.to_path_buf()));
    }
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        file.unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let l = std::os::unix::net::UnixListener::bind(&tmp).map_err(err)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    l.set_nonblocking(true).map_err(err)?;
    UnixListener::from_std(l).map_err(err)
}

/// A descriptor held in reserve for the control socket: when the supervisor runs out of
/// descriptors, `accept` fails and a client would wait in the queue for ever. The reserve
/// is given up for one connection, which is served (an operator's `list` shows what is
/// wrong), and taken back the moment that connection ends, before anything else can take
/// the descriptor it frees. Taken before the services start, which may use up the rest.
#[derive(Clone)]
pub struct Reserve(Arc<std::sync::Mutex<Option<std::fs::File>>>);

impl Reserve {
    pub fn take() -> Reserve {
        let r = Reserve(Arc::new(std::sync::Mutex::new(None)));
        r.refill();
        r
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<std::fs::File>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a descriptor again, if there is one to be had.
    fn refill(&self) {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = std::fs::File::open("/dev/null").ok();
        }
    }

    /// Gives the descriptor up; false if there was none.
    fn release(&self) -> bool {
        self.slot().take().is_some()
    }
}

/// Whether `accept` failed for want of descriptors (of the process, or of the system).
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The longest pause between tries of an `accept` that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub async fn serve(listener: UnixListener, sup: Arc<Sup>, reserve: Reserve) {
    let mut backoff = Duration::from_millis(10);
    loop {
        reserve.refill();
        let e = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                tokio::spawn(connection(stream, sup.clone()));
                continue;
            }
            Err(e) => e,
        };
        let fault = throttle::io_fault("control socket: accept", &e);
        if out_of_descriptors(&e) && reserve.release() {
            throttle::log(
                log::Level::Error,
                &fault,
                format_args!(
                    "control socket: {e}: serving clients one at a time with a descriptor \
                     kept in reserve; the services may be short of descriptors too"
                ),
            );
            match listener.accept().await {
                Ok((stream, _)) => {
                    let (sup, reserve) = (sup.clone(), reserve.clone());
                    tokio::spawn(async move {
                        connection(stream, sup).await;
                        reserve.refill();
                    });
                }
                Err(_) => reserve.refill(),
            }
            continue;
        }
        throttle::log(
            log::Level::Error,
            &fault,
            format_args!("control socket: {e}"),
        );
        // Not spinning on an error that persists: a pause, longer each time.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn connection(mut stream: UnixStream, sup: Arc<Sup>) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            log::warn!("control socket: cannot read the peer's credentials: {e}");
            return;
        }
    };
    // The request is read in any case, so the client always gets to send it and then
    // reads the answer, a refusal included.
    let mut line = Vec::new();
    let read = {
        let mut r = BufReader::new(&mut stream).take(MAX_REQUEST as u64 + 1);
        tokio::time::timeout(REQUEST_TIMEOUT, r.read_until(b'\n', &mut line)).await
    };
    if uid != 0 {
        log::warn!("control socket: refused a client running as uid {uid}");
        let r = Response::error(ControlError::NotRoot(uid).to_string());
        let _ = stream.write_all(r.encode().as_bytes()).await;
        return;
    }
    // MAX_REQUEST bytes and the newline that ends them is the longest request.
    let request = line.strip_suffix(b"\n").unwrap_or(&line);
    let op = match read {
        Ok(Ok(_)) if request.len() > MAX_REQUEST => Err(RequestError::TooLong),
        Ok(Ok(_)) => Op::decode(request),
        Ok(Err(e)) => Err(RequestError::Read(e)),
        Err(_) => Err(RequestError::TimedOut),
    };
    let (response, fds) = match op {
        Ok(op) => answer(&sup, op).await,
        Err(e) => (Response::error(e.to_string()), Vec::new()),
    };
    if let Err(e) = send(&mut stream, &response, &fds).await {
        log::debug!("control socket: cannot answer: {e}");
    }
}

/// Writes the response line, with `fds` attached to its first byte.
async fn send(stream: &mut UnixStream, r: &Response, fds: &[OwnedFd]) -> io::Result<()> {
    let line = r.encode();
    let bytes = line.as_bytes();
    let mut sent = 0;
    if !fds.is_empty() {
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        sent = stream
            .async_io(tokio::io::Interest::WRITABLE, || {
                sendmsg::<()>(
                    stream.as_raw_fd(),
                    &[IoSlice::new(bytes)],
                    &[ControlMessage::ScmRights(&raw)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            })
            .await?;
    }
    stream.write_all(&bytes[sent..]).await
}

fn lookup(sup: &Sup, name: &str) -> Result<Handle, ControlError> {
    sup.services()
        .get(name)
        .cloned()
        .ok_or_else(|| ControlError::Unknown {
            name: name.to_string(),
            dir: sup.path.clone(),
        })
}

fn info(h: &Handle) -> ServiceInfo {
    h.status.borrow().info()
}

/// The service to start: a known one, or a bundle that appeared in the directory since.
fn find_or_add(sup: &Arc<Sup>, name: &str) -> Result<Handle, ControlError> {
    if let Ok(h) = lookup(sup, name) {
        return Ok(h);
    }
    let dir = sup.path.join(name);
    if !bundle::valid_name(name) || !dir.is_dir() {
        return Err(ControlError::NotABundle {
            name: name.to_string(),
            dir,
        });
    }
    Ok(service::spawn(sup, name, dir, Boot::Idle))
}

async fn command(h: &Handle, make: impl FnOnce(Reply) -> Cmd) -> Result<String, ControlError> {
    let (tx, rx) = oneshot::channel();
    h.tx.send(make(tx))
        .map_err(|_| ControlError::ShuttingDown)?;
    Ok(rx.await.map_err(|_| ControlError::ShuttingDown)??)
}

async fn answer(sup: &Arc<Sup>, op: Op) -> (Response, Vec<OwnedFd>) {
    let with_service = |h: &Handle, message: Option<String>| Response {
        service: Some(info(h)),
        message,
        ..Response::ok()
    };
    let r = match op {
        Op::List => Ok(Response {
            services: Some(sup.services().values().map(info).collect()),
            ..Response::ok()
        }),
        Op::Runtime => Ok(Response {
            runtime: Some(super::protocol::RuntimeInfo {
                bin: sup.ctx.runtime.bin.clone(),
                root: sup.ctx.runtime.root.clone(),
            }),
            ..Response::ok()
        }),
        Op::Status(name) => lookup(sup, &name).map(|h| with_service(&h, None)),
        Op::Start(name) => match find_or_add(sup, &name) {
            Ok(h) => command(&h, Cmd::Start)
                .await
                .map(|m| with_service(&h, Some(m))),
            Err(e) => Err(e),
        },
        Op::Stop(name) => match lookup(sup, &name) {
            Ok(h) => command(&h, Cmd::Stop)
                .await
                .map(|m| with_service(&h, Some(m))),
            Err(e) => Err(e),
        },
        Op::Restart(name) => match find_or_add(sup, &name) {
            Ok(h) => command(&h, Cmd::Restart)
                .await
                .map(|m| with_service(&h, Some(m))),
            Err(e) => Err(e),
        },
        Op::Logs(name) => {
            let found =
                lookup(sup, &name).and_then(|h| match super::name_error(&name, &sup.log_dir) {
                    Some(e) => Err(ControlError::Name(e)),
                    None => Ok(h),
                });
            return match found.and_then(|h| open_logs(&h)) {
                Ok((mut files, mut fds, rotated)) => {
                    if let Some((names, conn)) = output::memlogd_query(&sup.memlogd, &name) {
                        files.memlogd = Some(names);
                        fds.push(conn);
                    }
                    fds.extend(rotated);
                    (
                        Response {
                            logs: Some(files),
                            ..Response::ok()
                        },
                        fds,
                    )
                }
                Err(e) => (Response::error(e.to_string()), Vec::new()),
            };
        }
    };
    (
        r.unwrap_or_else(|e| Response::error(e.to_string())),
        Vec::new(),
    )
}

/// The service's two log files, opened read-only for the client: it reads (and follows)
/// them itself, so a slow reader costs the supervisor nothing. Their rotated files, oldest
/// first, come last (after memlogd's connection, which the caller adds).
fn open_logs(h: &Handle) -> Result<(LogFiles, Vec<OwnedFd>, Vec<OwnedFd>), ControlError> {
    // Not through a symlink, and never waiting on a FIFO put where the file was.
    let open = |p: &PathBuf| {
        crate::safefile::open_read(p)
            .map(OwnedFd::from)
            .map_err(ControlError::Log)
    };
    let fds = vec![open(&h.out_log)?, open(&h.err_log)?];
    let [out, err] = [&h.out_log, &h.err_log].map(|p| crate::logs::rotate::open_rotated(p));
    let rotated = [out.len(), err.len()];
    Ok((
        LogFiles {
            stdout: h.out_log.clone(),
            stderr: h.err_log.clone(),
            memlogd: None,
            rotated,
        },
        fds,
        out.into_iter().chain(err).map(OwnedFd::from).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client is told, in these very words.
    #[test]
    fn control_errors_in_words() {
        let name = || "web".to_string();
        let cases = [
            (
                ControlError::NotRoot(1000),
                "permission denied: only root may control services (this client runs as uid \
                 1000)",
            ),
            (
                ControlError::Unknown {
                    name: name(),
                    dir: "/containers/services".into(),
                },
                "no service `web` (the services are the bundles in /containers/services)",
            ),
            (
                ControlError::NotABundle {
                    name: name(),
                    dir: "/containers/services/web".into(),
                },
                "no service `web`: /containers/services/web is not a bundle directory",
            ),
            (
                ControlError::ShuttingDown,
                "the supervisor is shutting down",
            ),
            (
                ControlError::Request(RequestError::TooLong),
                "bad request: too long",
            ),
            (
                ControlError::Service(ServiceError::Starting { name: name() }),
                "web is being started already",
            ),
            (
                ControlError::Name(
                    super::super::name_error("a.out", Path::new("/var/log")).unwrap(),
                ),
                "`a.out` cannot be a service name: its stderr log /var/log/a.out.log would be \
                 the stdout log of a service `a`; rename the bundle (names ending in `.out` \
                 are refused)",
            ),
        ];
        for (e, words) in cases {
            assert_eq!(e.to_string(), words);
        }
    }
}
