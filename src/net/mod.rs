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
//! The requests go through one netlink thread with one small tokio runtime, a connection
//! in each namespace (`netlink.rs`); it stops once the interfaces are set up and starts
//! again only if a rollback needs it. PID 1 brings `lo` up through it too.
//!
//! Undo (only when the bundle fails before it starts; the links are the point of the bundle
//! otherwise): links created are deleted where they are (a veth by its peer, which deletes
//! both ends), links moved in are moved back to the root namespace. A link is only deleted
//! if it still has the index and name it was given, so a link someone else made is never
//! touched.

mod netlink;

use crate::bundle::Bundle;
use crate::runtime_config::Interface;
use crate::undo::Undo;
use netlink::{Netlink, Netns};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let netlink = Netlink::new();
    let root = Arc::new(Netns::open(
        Path::new("/proc/self/ns/net"),
        "the root network namespace".into(),
        &netlink,
    )?);
    let label = match bundle.netns_path() {
        Some(p) => format!("the network namespace {}", p.display()),
        None => "the container's network namespace".into(),
    };
    let inner = Netns::open(Path::new(&format!("/proc/{pid}/ns/net")), label, &netlink)?;
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
    // The undo steps keep the namespaces (by descriptor) but not the thread: it is started
    // again only if a rollback needs it.
    netlink.close();
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error(transparent)]
    Namespace(NetError),
    #[error("find link `lo`")]
    Find(#[source] io::Error),
    #[error("no link `lo`")]
    Missing,
    #[error("set `lo` up")]
    Up(#[source] io::Error),
}

/// `lo` up in lkinit's own network namespace (PID 1's boot); the kernel gives it 127.0.0.1
/// and ::1 as it comes up.
pub fn loopback_up() -> Result<(), LoopbackError> {
    let netlink = Netlink::new();
    let ns = Netns::open(
        Path::new("/proc/self/ns/net"),
        "the root network namespace".into(),
        &netlink,
    )
    .map_err(LoopbackError::Namespace)?;
    let index = ns
        .link("lo")
        .map_err(LoopbackError::Find)?
        .ok_or(LoopbackError::Missing)?
        .header
        .index;
    let up = ns.set(LinkUnspec::new_with_index(index).up().build());
    netlink.close();
    up.map_err(LoopbackError::Up)
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
