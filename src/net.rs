//! runtime.json `interfaces`: links created in, or moved into, the container's network
//! namespace between `create` and `start`, over rtnetlink.
//!
//! - no `add`: the link of that name is moved from the root namespace (lkinit's own) in;
//! - `add: KIND`: a link of that kind is created directly inside;
//! - `peer` (a veth) and `createInRoot`: created in the root namespace, then moved in; a
//!   veth's peer stays in the root namespace.
//!
//! Links are left as the kernel creates them (down, no addresses): configuring them is the
//! container's business, as in LinuxKit.
//!
//! A netlink socket acts on the namespace it was opened in. Each namespace gets one thread
//! that `setns`es into it (a network namespace is per thread, so this is safe in a
//! multi-threaded process) and runs a small current-thread tokio runtime with one rtnetlink
//! connection; callers hand it jobs and block on the answer, so this works the same from
//! plain threads and from inside an async runtime, and no tokio worker ever changes
//! namespace. The namespace is held by a descriptor, not a pid or path, so an undo acts on
//! exactly the namespace the link was put in, also one joined by path that outlives the
//! container.
//!
//! Undo (only when the bundle fails before it starts; the links are the point of the bundle
//! otherwise): links created are deleted where they are (a veth by its peer, which deletes
//! both ends), links moved in are moved back to the root namespace. A link is only deleted
//! if it still has the index and name it was given, so a link someone else made is never
//! touched.

use crate::bundle::Bundle;
use crate::runtime_config::Interface;
use crate::undo::Undo;
use futures::TryStreamExt;
use futures::future::{BoxFuture, FutureExt};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use nix::sched::CloneFlags;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interfaces[{index}]: missing interface name")]
    MissingName { index: usize },
    #[error("interfaces[{index}] `{name}`: a veth link needs a `peer` name")]
    VethWithoutPeer { index: usize, name: String },
    #[error("interfaces[{index}] `{name}`: {reason}")]
    Link {
        index: usize,
        name: String,
        reason: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the network namespace {path}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why a link could not be put back as it was found (the undo of a step above).
#[derive(Debug, thiserror::Error)]
pub enum LinkUndoError {
    #[error("cannot delete `{name}` in {ns}")]
    Delete {
        name: String,
        ns: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot look up `{name}` in {ns}")]
    Lookup {
        name: String,
        ns: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot find `{name}` in {ns} to move it back")]
    Find {
        name: String,
        ns: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot move `{name}` back to {ns}")]
    MoveBack {
        name: String,
        ns: String,
        #[source]
        source: io::Error,
    },
    #[error("`{name}` is no longer in {ns}; it cannot be moved back")]
    Gone { name: String, ns: String },
}

/// Sets up every interface of the bundle for the container whose init is `pid`, pushing
/// the undo of each step as it succeeds.
pub fn apply(bundle: &Bundle, pid: i32, undo: &mut Undo) -> Result<(), NetError> {
    if bundle.runtime.interfaces.is_empty() {
        return Ok(());
    }
    let root = Arc::new(Netns::open(
        Path::new("/proc/self/ns/net"),
        "the root network namespace".into(),
    )?);
    let label = match bundle.netns_path() {
        Some(p) => format!("the network namespace {}", p.display()),
        None => "the container's network namespace".into(),
    };
    let inner = Netns::open(Path::new(&format!("/proc/{pid}/ns/net")), label)?;
    // A container without a network namespace of its own shares the root one: creating
    // "inside" is creating there, and a move is nothing to do.
    let inner = if inner.id == root.id {
        root.clone()
    } else {
        Arc::new(inner)
    };
    let net = Net { root, inner };
    for (index, itf) in bundle.runtime.interfaces.iter().enumerate() {
        net.apply_one(index, itf, undo)?;
    }
    // The undo steps keep the namespaces (by descriptor) but not the threads: they are
    // started again only if a rollback needs them.
    net.root.close();
    net.inner.close();
    Ok(())
}

/// One network namespace, held open, with a netlink thread started on demand.
struct Netns {
    fd: Arc<OwnedFd>,
    /// (device, inode) of the namespace file: equal ids are the same namespace.
    id: (u64, u64),
    label: String,
    worker: Mutex<Option<Worker>>,
}

impl Netns {
    fn open(path: &Path, label: String) -> Result<Netns, NetError> {
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
            worker: Mutex::new(None),
        })
    }

    fn close(&self) {
        let w = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(w);
    }

    /// Runs `f` with a netlink handle opened in this namespace.
    fn call<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> BoxFuture<'static, io::Result<T>> + Send + 'static,
    {
        let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none() {
            *w = Some(Worker::start(self.fd.clone())?);
        }
        w.as_ref().expect("started above").call(f)
    }

    /// The link called `name`, if there is one.
    fn link(&self, name: &str) -> io::Result<Option<LinkMessage>> {
        let name = name.to_string();
        self.call(move |h| {
            async move {
                let r = h.link().get().match_name(name).execute().try_next().await;
                absent_is_none(r)
            }
            .boxed()
        })
    }

    fn link_by_index(&self, index: u32) -> io::Result<Option<LinkMessage>> {
        self.call(move |h| {
            async move {
                let r = h.link().get().match_index(index).execute().try_next().await;
                absent_is_none(r)
            }
            .boxed()
        })
    }

    /// The index of the link called `name` (ENODEV if there is none).
    fn index_of(&self, name: &str) -> io::Result<u32> {
        self.link(name)?
            .map(|l| l.header.index)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    fn add(&self, msg: LinkMessage) -> io::Result<()> {
        self.call(move |h| async move { h.link().add(msg).execute().await.map_err(nl_io) }.boxed())
    }

    fn set(&self, msg: LinkMessage) -> io::Result<()> {
        self.call(move |h| async move { h.link().set(msg).execute().await.map_err(nl_io) }.boxed())
    }

    fn del(&self, index: u32) -> io::Result<()> {
        self.call(move |h| {
            async move { h.link().del(index).execute().await.map_err(nl_io) }.boxed()
        })
    }

    /// Moves the link `index` of this namespace into `to`.
    fn move_link(&self, index: u32, to: &Netns) -> io::Result<()> {
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
    fn delete_if_ours(&self, name: &str, index: u32) -> Result<(), LinkUndoError> {
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
    fn move_back(&self, name: &str, index: u32, to: &Netns) -> Result<(), LinkUndoError> {
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

fn link_name(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_kind(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

type Job = Box<dyn FnOnce(Handle) -> BoxFuture<'static, ()> + Send>;

/// A thread inside one network namespace with an rtnetlink connection, running jobs.
struct Worker {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn worker_gone() -> io::Error {
    io::Error::other("the netlink thread ended")
}

impl Worker {
    fn start(ns: Arc<OwnedFd>) -> io::Result<Worker> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("lkinit-netlink".into())
            .spawn(move || {
                let setup = || -> io::Result<_> {
                    // Built before the namespace changes: a tokio runtime with I/O makes
                    // process-wide sockets the first time (its signal pipe), and a socket
                    // holds the namespace it was made in alive for as long as it exists.
                    // Made inside, it would keep the first container's namespace (and the
                    // links in it) alive as long as lkinit runs.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()?;
                    nix::sched::setns(&*ns, CloneFlags::CLONE_NEWNET)?;
                    // The netlink socket is made here, in the namespace it acts on.
                    let (conn, handle, _) = {
                        let _ctx = rt.enter();
                        rtnetlink::new_connection()?
                    };
                    Ok((rt, conn, handle))
                };
                let (rt, conn, handle) = match setup() {
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
                    tokio::spawn(conn);
                    while let Some(job) = rx.recv().await {
                        job(handle.clone()).await;
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

    fn call<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> BoxFuture<'static, io::Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |h| {
            async move {
                let _ = tx.send(f(h).await);
            }
            .boxed()
        });
        self.jobs
            .as_ref()
            .expect("only taken on drop")
            .send(job)
            .map_err(|_| worker_gone())?;
        rx.recv().map_err(|_| worker_gone())?
    }
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

/// The two namespaces one bundle's interfaces involve.
struct Net {
    root: Arc<Netns>,
    inner: Arc<Netns>,
}

/// Why creating `name` of `kind` in the namespace `ns` failed, in words.
fn create_reason(kind: &str, name: &str, ns: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            format!("the kernel has no `{kind}` link kind (module not loaded?)")
        }
        Some(libc::EEXIST) => format!("the name `{name}` is already taken in {ns}"),
        _ => format!("cannot create `{name}` ({kind}) in {ns}"),
    }
}

/// Why moving `name` from `from` into `to` failed, in words.
fn move_reason(name: &str, kind: Option<&str>, from: &str, to: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EEXIST) => format!("cannot move `{name}` in: the name is already taken in {to}"),
        // The kernel's "The interface netns is immutable" (NETIF_F_NETNS_LOCAL).
        Some(libc::EINVAL) => format!(
            "the kernel does not move `{name}`{} to another namespace: a link of this kind \
             stays where it was created (create it inside instead)",
            kind.map(|k| format!(" ({k})")).unwrap_or_default()
        ),
        _ => format!("cannot move `{name}` from {from} to {to}"),
    }
}

fn kind_msg(kind: &str, name: &str) -> LinkMessage {
    LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::from(kind))
        .name(name)
        .build()
}

impl Net {
    fn same_ns(&self) -> bool {
        Arc::ptr_eq(&self.root, &self.inner)
    }

    fn apply_one(&self, index: usize, itf: &Interface, undo: &mut Undo) -> Result<(), NetError> {
        let name = itf.name.as_str();
        if name.is_empty() {
            return Err(NetError::MissingName { index });
        }
        let fail = |reason: String, source: io::Error| NetError::Link {
            index,
            name: name.to_string(),
            reason,
            source,
        };
        match itf.kind() {
            None => self.move_existing(name, undo).map_err(|(r, e)| fail(r, e)),
            Some("veth") => {
                let peer = itf
                    .peer
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| NetError::VethWithoutPeer {
                        index,
                        name: name.to_string(),
                    })?;
                self.create_veth(name, peer, undo)
                    .map_err(|(r, e)| fail(r, e))
            }
            Some(kind) if itf.create_in_root => self
                .create_in_root(kind, name, undo)
                .map_err(|(r, e)| fail(r, e)),
            Some(kind) => self
                .create_inside(kind, name, undo)
                .map_err(|(r, e)| fail(r, e)),
        }
    }

    /// Moves the root namespace's link `index` (called `name`) in.
    fn move_in(
        &self,
        name: &str,
        index: u32,
        kind: Option<&str>,
    ) -> Result<(), (String, io::Error)> {
        self.root.move_link(index, &self.inner).map_err(|e| {
            let r = move_reason(name, kind, &self.root.label, &self.inner.label, &e);
            (r, e)
        })
    }

    fn move_existing(&self, name: &str, undo: &mut Undo) -> Result<(), (String, io::Error)> {
        let link = self
            .root
            .link(name)
            .and_then(|l| l.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV)))
            .map_err(|e| {
                let reason = if e.raw_os_error() == Some(libc::ENODEV) {
                    format!("no link named `{name}` in {}", self.root.label)
                } else {
                    format!("cannot look up `{name}` in {}", self.root.label)
                };
                (reason, e)
            })?;
        if self.same_ns() {
            return Ok(());
        }
        let kind = link_kind(&link);
        self.move_in(name, link.header.index, kind.as_deref())?;
        let index = self.inner.index_of(name);
        let known = index.as_ref().ok().copied();
        let (inner, root, n) = (self.inner.clone(), self.root.clone(), name.to_string());
        undo.push_persistent(format!("move `{name}` back to {}", root.label), move || {
            let index = match known {
                Some(i) => i,
                None => inner.index_of(&n).map_err(|source| LinkUndoError::Find {
                    name: n.clone(),
                    ns: inner.label.clone(),
                    source,
                })?,
            };
            Ok(inner.move_back(&n, index, &root)?)
        });
        index.map(drop).map_err(|e| {
            let reason = format!(
                "`{name}` cannot be found in {} after the move",
                self.inner.label
            );
            (reason, e)
        })
    }

    /// Records the deletion of `name`, just created in `ns`, and returns its index there.
    /// Should the index not be found, the undo deletes by name.
    fn created(undo: &mut Undo, ns: &Arc<Netns>, name: &str) -> Result<u32, (String, io::Error)> {
        let index = ns.index_of(name);
        let (ns2, n) = (ns.clone(), name.to_string());
        let known = index.as_ref().ok().copied();
        undo.push_persistent(format!("delete `{name}` in {}", ns.label), move || {
            let index = match known {
                Some(i) => i,
                None => match ns2.index_of(&n) {
                    Ok(i) => i,
                    Err(_) => return Ok(()),
                },
            };
            Ok(ns2.delete_if_ours(&n, index)?)
        });
        index.map_err(|e| {
            (
                format!(
                    "`{name}` cannot be found in {} after it was created",
                    ns.label
                ),
                e,
            )
        })
    }

    fn create_inside(
        &self,
        kind: &str,
        name: &str,
        undo: &mut Undo,
    ) -> Result<(), (String, io::Error)> {
        let ns = &self.inner;
        ns.add(kind_msg(kind, name))
            .map_err(|e| (create_reason(kind, name, &ns.label, &e), e))?;
        Self::created(undo, ns, name)?;
        Ok(())
    }

    fn create_in_root(
        &self,
        kind: &str,
        name: &str,
        undo: &mut Undo,
    ) -> Result<(), (String, io::Error)> {
        let root = &self.root;
        root.add(kind_msg(kind, name))
            .map_err(|e| (create_reason(kind, name, &root.label, &e), e))?;
        let index = Self::created(undo, root, name)?;
        if self.same_ns() {
            return Ok(());
        }
        self.move_in(name, index, Some(kind))?;
        Self::created(undo, &self.inner, name)?;
        Ok(())
    }

    fn create_veth(
        &self,
        name: &str,
        peer: &str,
        undo: &mut Undo,
    ) -> Result<(), (String, io::Error)> {
        let root = &self.root;
        root.add(LinkVeth::new(name, peer).build()).map_err(|e| {
            let reason = if e.raw_os_error() == Some(libc::EEXIST) {
                let taken = match root.link(name) {
                    Ok(Some(_)) => name,
                    _ => peer,
                };
                format!("the name `{taken}` is already taken in {}", root.label)
            } else {
                create_reason("veth", name, &root.label, &e)
            };
            (reason, e)
        })?;
        // Deleting the peer, which stays here, deletes both ends wherever the other went.
        Self::created(undo, root, peer)?;
        if self.same_ns() {
            return Ok(());
        }
        let index = root.index_of(name).map_err(|e| {
            (
                format!(
                    "`{name}` cannot be found in {} after it was created",
                    root.label
                ),
                e,
            )
        })?;
        self.move_in(name, index, Some("veth"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    #[test]
    fn kernel_answers_in_words() {
        let ns = "the container's network namespace";
        assert_eq!(
            create_reason("dummy", "d0", ns, &errno(libc::EOPNOTSUPP)),
            "the kernel has no `dummy` link kind (module not loaded?)"
        );
        assert_eq!(
            create_reason("ifb", "i0", ns, &errno(libc::EEXIST)),
            "the name `i0` is already taken in the container's network namespace"
        );
        assert_eq!(
            create_reason("ifb", "i0", ns, &errno(libc::EPERM)),
            "cannot create `i0` (ifb) in the container's network namespace"
        );
        let root = "the root network namespace";
        assert!(
            move_reason("br0", Some("bridge"), root, ns, &errno(libc::EINVAL))
                .starts_with("the kernel does not move `br0` (bridge) to another namespace")
        );
        assert_eq!(
            move_reason("e0", None, root, ns, &errno(libc::EEXIST)),
            "cannot move `e0` in: the name is already taken in the container's network namespace"
        );
    }

    #[test]
    fn link_attributes_are_read() {
        let msg = kind_msg("bridge", "br0");
        assert_eq!(link_name(&msg), Some("br0"));
        assert_eq!(link_kind(&msg).as_deref(), Some("bridge"));
        let veth = LinkVeth::new("a", "b").build();
        assert_eq!(link_kind(&veth).as_deref(), Some("veth"));
    }
}
