//! Netlink from plain threads. A netlink socket acts in the network namespace it was
//! opened in, and rtnetlink is async: one thread runs a small current-thread tokio runtime
//! with one rtnetlink connection per namespace it is asked about, each made by entering that
//! namespace for the moment its socket is made and coming back (a network namespace is per
//! thread, so this is safe in a multi-threaded process). Callers hand it requests and block
//! on the answer, so this works the same from onboot's plain threads, from PID 1 and from
//! the supervisor's blocking threads, and no tokio worker ever changes namespace. A
//! namespace is named by a descriptor, not a pid or path, so a later request (an undo)
//! reaches exactly the namespace the first one did, also one joined by path that outlives
//! the container.

use super::{LinkUndoError, NetError, link_name};
use futures::TryStreamExt;
use futures::future::{BoxFuture, FutureExt};
use netlink_packet_route::link::LinkMessage;
use nix::sched::CloneFlags;
use rtnetlink::{Handle, LinkUnspec};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The netlink thread, started on the first request and stopped by [`Netlink::close`]
/// (a later request starts it again).
#[derive(Default)]
pub(super) struct Netlink {
    worker: Mutex<Option<Worker>>,
}

impl Netlink {
    pub(super) fn new() -> Arc<Netlink> {
        Arc::default()
    }

    /// Ends the thread and its connections.
    pub(super) fn close(&self) {
        let w = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(w);
    }

    /// Runs `f` with a handle on a connection in `ns`.
    fn call<T, F>(&self, ns: &Netns, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> BoxFuture<'static, io::Result<T>> + Send + 'static,
    {
        let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none() {
            *w = Some(Worker::start()?);
        }
        w.as_ref().expect("started above").call(ns, f)
    }
}

/// One network namespace, held open.
pub(super) struct Netns {
    fd: Arc<OwnedFd>,
    /// (device, inode) of the namespace file: equal ids are the same namespace.
    pub(super) id: (u64, u64),
    pub(super) label: String,
    netlink: Arc<Netlink>,
}

impl Netns {
    pub(super) fn open(
        path: &Path,
        label: String,
        netlink: &Arc<Netlink>,
    ) -> Result<Netns, NetError> {
        let err = |source| NetError::Namespace {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(err)?;
        let md = file.metadata().map_err(err)?;
        Ok(Netns {
            fd: Arc::new(file.into()),
            id: (md.dev(), md.ino()),
            label,
            netlink: netlink.clone(),
        })
    }

    /// Runs `f` with a netlink handle opened in this namespace.
    fn call<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> BoxFuture<'static, io::Result<T>> + Send + 'static,
    {
        self.netlink.call(self, f)
    }

    /// The link called `name`, if there is one.
    pub(super) fn link(&self, name: &str) -> io::Result<Option<LinkMessage>> {
        let name = name.to_string();
        self.call(move |h| {
            async move {
                let r = h.link().get().match_name(name).execute().try_next().await;
                absent_is_none(r)
            }
            .boxed()
        })
    }

    pub(super) fn link_by_index(&self, index: u32) -> io::Result<Option<LinkMessage>> {
        self.call(move |h| {
            async move {
                let r = h.link().get().match_index(index).execute().try_next().await;
                absent_is_none(r)
            }
            .boxed()
        })
    }

    /// The index of the link called `name` (ENODEV if there is none).
    pub(super) fn index_of(&self, name: &str) -> io::Result<u32> {
        self.link(name)?
            .map(|l| l.header.index)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    pub(super) fn add(&self, msg: LinkMessage) -> io::Result<()> {
        self.call(move |h| async move { h.link().add(msg).execute().await.map_err(nl_io) }.boxed())
    }

    pub(super) fn set(&self, msg: LinkMessage) -> io::Result<()> {
        self.call(move |h| async move { h.link().set(msg).execute().await.map_err(nl_io) }.boxed())
    }

    pub(super) fn del(&self, index: u32) -> io::Result<()> {
        self.call(move |h| {
            async move { h.link().del(index).execute().await.map_err(nl_io) }.boxed()
        })
    }

    /// Moves the link `index` of this namespace into `to`.
    pub(super) fn move_link(&self, index: u32, to: &Netns) -> io::Result<()> {
        let target = to.fd.clone();
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(target.as_raw_fd())
            .build();
        // `target` lives until the kernel has answered: the message carries its number.
        let r = self.set(msg);
        drop(target);
        r
    }

    /// Deletes `name` if it still has `index` here; gone already (with its namespace, its
    /// veth peer, or by hand) is fine, and a link that is no longer ours is left alone.
    pub(super) fn delete_if_ours(&self, name: &str, index: u32) -> Result<(), LinkUndoError> {
        match self.link_by_index(index) {
            Ok(Some(l)) if link_name(&l) == Some(name) => match self.del(index) {
                Err(source) if source.raw_os_error() != Some(libc::ENODEV) => {
                    Err(LinkUndoError::Delete {
                        name: name.to_string(),
                        ns: self.label.clone(),
                        source,
                    })
                }
                _ => Ok(()),
            },
            Ok(_) => Ok(()),
            Err(source) => Err(self.lookup_failed(name, source)),
        }
    }

    fn lookup_failed(&self, name: &str, source: io::Error) -> LinkUndoError {
        LinkUndoError::Lookup {
            name: name.to_string(),
            ns: self.label.clone(),
            source,
        }
    }

    /// Moves `name` (with `index` here) back to `to`.
    pub(super) fn move_back(
        &self,
        name: &str,
        index: u32,
        to: &Netns,
    ) -> Result<(), LinkUndoError> {
        match self.link_by_index(index) {
            Ok(Some(l)) if link_name(&l) == Some(name) => {
                self.move_link(index, to)
                    .map_err(|source| LinkUndoError::MoveBack {
                        name: name.to_string(),
                        ns: to.label.clone(),
                        source,
                    })
            }
            Ok(_) => Err(LinkUndoError::Gone {
                name: name.to_string(),
                ns: self.label.clone(),
            }),
            Err(source) => Err(self.lookup_failed(name, source)),
        }
    }
}

fn absent_is_none(
    r: Result<Option<LinkMessage>, rtnetlink::Error>,
) -> io::Result<Option<LinkMessage>> {
    match r.map_err(nl_io) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        r => r,
    }
}

/// The kernel's answer as an OS error (the errno is what callers decide on).
fn nl_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// A request for the netlink thread: the namespace it is for, and what to do with a handle
/// there (or with the reason there is none).
struct Job {
    ns: Arc<OwnedFd>,
    id: (u64, u64),
    run: Box<dyn FnOnce(io::Result<Handle>) -> BoxFuture<'static, ()> + Send>,
}

/// The thread with the tokio runtime and the connections, running requests in order.
struct Worker {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn worker_gone() -> io::Error {
    io::Error::other("the netlink thread ended")
}

impl Worker {
    fn start() -> io::Result<Worker> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("lkinit-netlink".into())
            .spawn(move || {
                let setup = || -> io::Result<_> {
                    // Built before the thread enters any namespace: a tokio runtime with I/O
                    // makes process-wide sockets the first time (its signal pipe), and a
                    // socket holds the namespace it was made in alive for as long as it
                    // exists. Made inside, it would keep the first container's namespace
                    // (and the links in it) alive as long as lkinit runs.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()?;
                    let home = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net")?);
                    Ok((rt, home))
                };
                let (rt, home) = match setup() {
                    Ok(x) => {
                        let _ = ready_tx.send(Ok(()));
                        x
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut handles: HashMap<(u64, u64), Handle> = HashMap::new();
                    while let Some(job) = rx.recv().await {
                        let handle = match handles.get(&job.id) {
                            Some(h) => Ok(h.clone()),
                            None => connect_in(&job.ns, &home).inspect(|h| {
                                handles.insert(job.id, h.clone());
                            }),
                        };
                        (job.run)(handle).await;
                    }
                });
            })?;
        let w = Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        ready_rx.recv().map_err(|_| worker_gone())??;
        Ok(w)
    }

    fn call<T, F>(&self, ns: &Netns, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> BoxFuture<'static, io::Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job = Job {
            ns: ns.fd.clone(),
            id: ns.id,
            run: Box::new(move |handle| {
                async move {
                    let r = match handle {
                        Ok(h) => f(h).await,
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(r);
                }
                .boxed()
            }),
        };
        self.jobs
            .as_ref()
            .expect("only taken on drop")
            .send(job)
            .map_err(|_| worker_gone())?;
        rx.recv().map_err(|_| worker_gone())?
    }
}

/// A connection whose socket is made in `ns`, running on this thread's runtime: the thread
/// enters `ns` for that moment only and comes back `home`. Every connection enters its own
/// namespace first, so one that could not come back cannot put a later one elsewhere.
fn connect_in(ns: &OwnedFd, home: &OwnedFd) -> io::Result<Handle> {
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)?;
    let made = rtnetlink::new_connection();
    nix::sched::setns(home, CloneFlags::CLONE_NEWNET)?;
    let (conn, handle, _) = made?;
    tokio::spawn(conn);
    Ok(handle)
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
