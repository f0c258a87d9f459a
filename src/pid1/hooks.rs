//! `/etc/init.d` at boot and `/etc/shutdown.d` at shutdown, as LinuxKit's rc.init and
//! rc.shutdown run them: every executable regular entry (symlinks followed), in name order,
//! its output on the console.
//!
//! LinuxKit's packages link `/usr/bin/service` into these directories to start their steps
//! (`005-volumes`, `010-onboot`, `020-containerd`, `010-onshutdown`); in an image with lkinit
//! that file is lkinit itself. Such an entry is not run: lkinit's own step runs in its place,
//! once, so hooks before it (memlogd's `002-logging`) come first. A step's predecessors
//! that no entry named run just before it (volumes before onboot before the supervisor), and
//! the steps left run after the last entry.
//!
//! This file decides the order ([`plan`], pure) from what is in the directory ([`scan`]);
//! `steps.rs` carries it out.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a boot hook may run before it is killed.
pub const BOOT_LIMIT: Duration = Duration::from_secs(60);
/// How long a shutdown hook may run: the machine is on its way down.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// A step of lkinit's own that an entry can stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Volumes,
    Onboot,
    Supervisor,
    Onshutdown,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Volumes => "volumes",
            Step::Onboot => "onboot",
            Step::Supervisor => "supervisor",
            Step::Onshutdown => "onshutdown",
        }
    }

    /// The step a link named `name` stands for, by the words LinuxKit's `service` reads.
    pub fn for_link_name(name: &str) -> Option<Step> {
        match crate::cli::link_command(name)? {
            "volumes" => Some(Step::Volumes),
            "onboot" => Some(Step::Onboot),
            "onshutdown" => Some(Step::Onshutdown),
            "system-init" => Some(Step::Supervisor),
            _ => None,
        }
    }
}

/// Boot (`/etc/init.d`) or shutdown (`/etc/shutdown.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Boot,
    Shutdown,
}

impl Phase {
    pub fn dir(self) -> &'static Path {
        Path::new(match self {
            Phase::Boot => "/etc/init.d",
            Phase::Shutdown => "/etc/shutdown.d",
        })
    }

    /// lkinit's steps of this phase, in the order they must run.
    pub fn steps(self) -> &'static [Step] {
        match self {
            Phase::Boot => &[Step::Volumes, Step::Onboot, Step::Supervisor],
            Phase::Shutdown => &[Step::Onshutdown],
        }
    }

    pub fn default_limit(self) -> Duration {
        match self {
            Phase::Boot => BOOT_LIMIT,
            Phase::Shutdown => SHUTDOWN_LIMIT,
        }
    }
}

/// What an entry of the directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with an execute bit: a hook.
    Program,
    /// The same file as the running lkinit.
    SelfLink,
    NotExecutable,
    /// A directory, a device, a FIFO: not LinuxKit's business either.
    NotRegular,
    /// A dangling symlink, a permission problem: the reason.
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name, printable.
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
}

/// Why an entry does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotExecutable,
    Unreadable(String),
    /// A link to lkinit whose name names no step.
    UnknownStep,
    /// A link to lkinit for a step of the other phase.
    OtherPhase(Step),
    /// Its step has run already.
    Ran(Step),
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Hook {
        name: String,
        path: PathBuf,
    },
    /// lkinit's own step; `entry` is the link that named it, if any.
    Step {
        step: Step,
        entry: Option<String>,
    },
    Skip {
        name: String,
        why: Skip,
    },
}

/// The order of things for `entries` (already in name order): hooks where they are, each
/// step once, where its link is or just before a later step needs it, and the rest last.
pub fn plan(phase: Phase, entries: &[Entry]) -> Vec<Action> {
    let order = phase.steps();
    let mut out = Vec::new();
    let run_up_to = |step: Step, entry: Option<String>, out: &mut Vec<Action>| {
        for s in order.iter().take_while(|s| **s != step) {
            if !done_contains(out, *s) {
                out.push(Action::Step {
                    step: *s,
                    entry: None,
                });
            }
        }
        out.push(Action::Step { step, entry });
    };
    for e in entries {
        let skip = |why| Action::Skip {
            name: e.name.clone(),
            why,
        };
        match &e.kind {
            Kind::Program => out.push(Action::Hook {
                name: e.name.clone(),
                path: e.path.clone(),
            }),
            Kind::NotRegular => {}
            Kind::NotExecutable => out.push(skip(Skip::NotExecutable)),
            Kind::Unreadable(why) => out.push(skip(Skip::Unreadable(why.clone()))),
            Kind::SelfLink => match Step::for_link_name(&e.name) {
                None => out.push(skip(Skip::UnknownStep)),
                Some(s) if !order.contains(&s) => out.push(skip(Skip::OtherPhase(s))),
                Some(s) if done_contains(&out, s) => out.push(skip(Skip::Ran(s))),
                Some(s) => run_up_to(s, Some(e.name.clone()), &mut out),
            },
        }
    }
    for s in order {
        if !done_contains(&out, *s) {
            out.push(Action::Step {
                step: *s,
                entry: None,
            });
        }
    }
    out
}

fn done_contains(out: &[Action], step: Step) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Step { step: s, .. } if *s == step))
}

/// Device and inode of a file, following symlinks.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The entries of `dir` in name order (byte order, as LinuxKit sorts them); `me` is the
/// running binary's [`file_id`]. A missing directory has none.
pub fn scan(dir: &Path, me: Option<(u64, u64)>) -> std::io::Result<Vec<Entry>> {
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(Result::ok).map(|e| e.file_name()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| {
            let path = dir.join(&n);
            let kind = match std::fs::metadata(&path) {
                Err(e) => Kind::Unreadable(e.to_string()),
                Ok(m) if !m.is_file() => Kind::NotRegular,
                Ok(m) if me == Some((m.dev(), m.ino())) => Kind::SelfLink,
                Ok(m) if m.permissions().mode() & 0o111 == 0 => Kind::NotExecutable,
                Ok(_) => Kind::Program,
            };
            Entry {
                name: crate::bundle::printable_name(&n.to_string_lossy()),
                path,
                kind,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, kind: Kind) -> Entry {
        Entry {
            name: name.into(),
            path: PathBuf::from("/etc/init.d").join(name),
            kind,
        }
    }

    fn hook(name: &str) -> Action {
        Action::Hook {
            name: name.into(),
            path: PathBuf::from("/etc/init.d").join(name),
        }
    }

    fn step(step: Step, entry: Option<&str>) -> Action {
        Action::Step {
            step,
            entry: entry.map(str::to_string),
        }
    }

    fn skip(name: &str, why: Skip) -> Action {
        Action::Skip {
            name: name.into(),
            why,
        }
    }

    /// No entries: lkinit's steps in their order.
    #[test]
    fn steps_alone() {
        assert_eq!(
            plan(Phase::Boot, &[]),
            [
                step(Step::Volumes, None),
                step(Step::Onboot, None),
                step(Step::Supervisor, None)
            ]
        );
        assert_eq!(plan(Phase::Shutdown, &[]), [step(Step::Onshutdown, None)]);
    }

    /// A LinuxKit image: the init package's 005-volumes, memlogd's 002-logging, runc's
    /// 010-onboot, containerd's 020-containerd, getty's 001-getty.
    #[test]
    fn linuxkit_image() {
        let entries = [
            e("000-issue", Kind::Program),
            e("001-getty", Kind::Program),
            e("002-logging", Kind::Program),
            e("005-volumes", Kind::SelfLink),
            e("010-onboot", Kind::SelfLink),
            e("020-containerd", Kind::SelfLink),
        ];
        assert_eq!(
            plan(Phase::Boot, &entries),
            [
                hook("000-issue"),
                hook("001-getty"),
                hook("002-logging"),
                step(Step::Volumes, Some("005-volumes")),
                step(Step::Onboot, Some("010-onboot")),
                step(Step::Supervisor, Some("020-containerd")),
            ]
        );
    }

    /// Without 005-volumes (lkinit's package ships no such link), the volumes are still
    /// ready before onboot; without 020-containerd the supervisor comes after every hook.
    #[test]
    fn unnamed_steps_come_where_they_are_needed() {
        let entries = [
            e("002-logging", Kind::Program),
            e("010-onboot", Kind::SelfLink),
            e("030-late", Kind::Program),
        ];
        assert_eq!(
            plan(Phase::Boot, &entries),
            [
                hook("002-logging"),
                step(Step::Volumes, None),
                step(Step::Onboot, Some("010-onboot")),
                hook("030-late"),
                step(Step::Supervisor, None),
            ]
        );
        // A supervisor link alone pulls both others in before it.
        assert_eq!(
            plan(Phase::Boot, &[e("020-containerd", Kind::SelfLink)]),
            [
                step(Step::Volumes, None),
                step(Step::Onboot, None),
                step(Step::Supervisor, Some("020-containerd")),
            ]
        );
    }

    /// Each step runs once; a link that names one already run, an unknown name, or a step
    /// of the other phase is skipped and said.
    #[test]
    fn never_twice() {
        let entries = [
            e("010-onboot", Kind::SelfLink),
            e("011-onboot", Kind::SelfLink),
            e("050-volumes", Kind::SelfLink),
            e("060-mystery", Kind::SelfLink),
            e("070-onshutdown", Kind::SelfLink),
            e("080-readme", Kind::NotExecutable),
            e("090-dir", Kind::NotRegular),
            e(
                "095-dangling",
                Kind::Unreadable("No such file or directory".into()),
            ),
        ];
        assert_eq!(
            plan(Phase::Boot, &entries),
            [
                step(Step::Volumes, None),
                step(Step::Onboot, Some("010-onboot")),
                skip("011-onboot", Skip::Ran(Step::Onboot)),
                skip("050-volumes", Skip::Ran(Step::Volumes)),
                skip("060-mystery", Skip::UnknownStep),
                skip("070-onshutdown", Skip::OtherPhase(Step::Onshutdown)),
                skip("080-readme", Skip::NotExecutable),
                skip(
                    "095-dangling",
                    Skip::Unreadable("No such file or directory".into())
                ),
                step(Step::Supervisor, None),
            ]
        );
    }

    /// rc.shutdown runs /etc/shutdown.d, where runc's 010-onshutdown is onshutdown.
    #[test]
    fn shutdown_order() {
        let entries = [
            e("001-first", Kind::Program),
            e("010-onshutdown", Kind::SelfLink),
            e("020-after", Kind::Program),
            e("030-onboot", Kind::SelfLink),
        ];
        assert_eq!(
            plan(Phase::Shutdown, &entries),
            [
                hook("001-first"),
                step(Step::Onshutdown, Some("010-onshutdown")),
                hook("020-after"),
                skip("030-onboot", Skip::OtherPhase(Step::Onboot)),
            ]
        );
        assert_eq!(
            plan(Phase::Shutdown, &[e("001-first", Kind::Program)]),
            [hook("001-first"), step(Step::Onshutdown, None)]
        );
    }

    /// The directory as it is on disk: links to this very binary are told from other
    /// programs by device and inode, wherever they point from.
    #[test]
    fn scanning_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let me_path = d.join("lkinit");
        std::fs::write(&me_path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&me_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hooks = d.join("init.d");
        std::fs::create_dir(&hooks).unwrap();
        let script = |name: &str, mode: u32| {
            let p = hooks.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        script("002-logging", 0o755);
        script("003-data", 0o644);
        std::os::unix::fs::symlink(&me_path, hooks.join("010-onboot")).unwrap();
        std::fs::hard_link(&me_path, hooks.join("020-containerd")).unwrap();
        std::os::unix::fs::symlink("/nowhere", hooks.join("030-dangling")).unwrap();
        std::fs::create_dir(hooks.join("040-dir")).unwrap();
        std::os::unix::fs::symlink("002-logging", hooks.join("001-alias")).unwrap();
        let got = scan(&hooks, file_id(&me_path)).unwrap();
        let kinds: Vec<(&str, &Kind)> = got.iter().map(|e| (e.name.as_str(), &e.kind)).collect();
        assert_eq!(kinds[0], ("001-alias", &Kind::Program));
        assert_eq!(kinds[1], ("002-logging", &Kind::Program));
        assert_eq!(kinds[2], ("003-data", &Kind::NotExecutable));
        assert_eq!(kinds[3], ("010-onboot", &Kind::SelfLink));
        assert_eq!(kinds[4], ("020-containerd", &Kind::SelfLink));
        assert!(matches!(kinds[5], ("030-dangling", Kind::Unreadable(_))));
        assert_eq!(kinds[6], ("040-dir", &Kind::NotRegular));
        assert_eq!(got.len(), 7);
        assert!(scan(&d.join("missing"), None).unwrap().is_empty());
    }

    #[test]
    fn link_names_map_to_steps() {
        assert_eq!(Step::for_link_name("005-volumes"), Some(Step::Volumes));
        assert_eq!(Step::for_link_name("010-onboot"), Some(Step::Onboot));
        assert_eq!(
            Step::for_link_name("020-containerd"),
            Some(Step::Supervisor)
        );
        assert_eq!(
            Step::for_link_name("010-onshutdown"),
            Some(Step::Onshutdown)
        );
        assert_eq!(Step::for_link_name("000-issue"), None);
    }
}
