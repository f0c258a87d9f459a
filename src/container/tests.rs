//! The container path without root, in milliseconds: every side effect goes to a double that
//! records it and fails where it is told to. What these show (the order of the steps, what
//! a failure at each one undoes, what a cleanup keeps, the retry over a stale container) the
//! root tests show again against the kernel and runc (tests/onboot.rs, tests/net.rs,
//! tests/builder_bundles.rs).

use super::host::{Host, Runtime};
use super::{ContainerError, Mode, Running, Step, StepError, launch_with};
use crate::bundle::{Bundle, BundleError};
use crate::cgroups::CgroupError;
use crate::logs::ContainerStdio;
use crate::mounts::{MountError, Scratch};
use crate::net::NetError;
use crate::nsbind::NsBindError;
use crate::oci_runtime::{RuntimeError, RuntimeProcess, State};
use crate::process::{PidFd, Waiter};
use crate::rootfs::RootfsError;
use crate::undo::Undo;
use nix::errno::Errno;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The init pid the double's runtime hands out.
const PID: i32 = 4242;

/// A host and a runtime that do nothing but write down what they are asked, in order.
#[derive(Clone, Default)]
struct Double {
    journal: Arc<Mutex<Vec<String>>>,
    /// This step fails, once it has been asked.
    fail: Option<Step>,
    /// The failing step did part of its work first (and pushed its undo).
    half_way: bool,
    /// What `state` says of a container an earlier run left; its state directory shows.
    stale: Option<&'static str>,
    /// `create` answers that the container exists this many times first (a runtime whose
    /// state directory lkinit cannot see).
    exists: Arc<Mutex<u32>>,
    /// `create` is killed at its bound.
    create_times_out: bool,
    /// The undo step of this name fails.
    undo_fails: Option<&'static str>,
    /// A foreground `run`, once it has run, left its container behind.
    left_behind: bool,
    ran: Arc<AtomicBool>,
}

fn failed(op: &'static str, message: &str) -> RuntimeError {
    RuntimeError::Failed {
        bin: "rt".into(),
        op,
        message: message.into(),
    }
}

impl Double {
    fn failing(step: Step) -> Double {
        Double {
            fail: Some(step),
            ..Double::default()
        }
    }

    fn note(&self, what: impl Into<String>) {
        self.journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.into());
    }

    /// What was asked, and forgets it.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.journal.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Pushes an undo step `what` that notes `undo WHAT` when it runs.
    fn push(&self, undo: &mut Undo, what: &'static str, persistent: bool) {
        let me = self.clone();
        let action = move || {
            me.note(format!("undo {what}"));
            match me.undo_fails {
                Some(f) if f == what => Err(Errno::EBUSY.into()),
                _ => Ok(()),
            }
        };
        if persistent {
            undo.push_persistent(what, action);
        } else {
            undo.push(what, action);
        }
    }

    /// A host step: noted, then each of its effects done and its undo pushed, persistent or
    /// not; a failing step stops before its effects, or after the first one when it fails
    /// half way.
    fn step(&self, step: Step, undo: &mut Undo, effects: &[(&'static str, bool)]) -> bool {
        self.note(step.as_str());
        let fails = self.fail == Some(step);
        let done = match (fails, self.half_way) {
            (false, _) => effects.len(),
            (true, true) => 1,
            (true, false) => 0,
        };
        for (what, persistent) in &effects[..done] {
            self.push(undo, what, *persistent);
        }
        !fails
    }
}

impl Host for Double {
    fn pid_file(&self, name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("lkinit-unit-{name}-{}.pid", std::process::id()))
    }

    fn cgroup_root(&self) -> &Path {
        Path::new("/nonexistent/cgroup")
    }

    fn prepare_rootfs(
        &self,
        _: &Bundle,
        undo: &mut Undo,
        _: &mut Scratch,
    ) -> Result<(), RootfsError> {
        self.step(Step::Rootfs, undo, &[("rootfs", false)])
            .then_some(())
            .ok_or(RootfsError::Mount {
                what: "rootfs",
                target: PathBuf::from("/rootfs"),
                source: Errno::EPERM,
            })
    }

    fn apply_mounts(&self, _: &Bundle, undo: &mut Undo, _: &mut Scratch) -> Result<(), MountError> {
        // An absolute mount outlives the container; one inside its rootfs does not.
        let effects = [("mount /abs", true), ("mount rel", false)];
        self.step(Step::Mounts, undo, &effects)
            .then_some(())
            .ok_or(MountError::Mount {
                index: 1,
                what: "tmpfs".into(),
                target: PathBuf::from("/rootfs/rel"),
                source: Errno::EPERM,
            })
    }

    fn apply_cgroups(&self, _: &Bundle, undo: &mut Undo) -> Result<(), CgroupError> {
        self.step(Step::Cgroups, undo, &[("cgroup", true)])
            .then_some(())
            .ok_or(CgroupError::NoHierarchy(PathBuf::from("/sys/fs/cgroup")))
    }

    fn prepare_config(&self, bundle: &Bundle, _: &Path) -> Result<PathBuf, StepError> {
        let mut undo = Undo::new();
        let ok = self.step(Step::Config, &mut undo, &[]);
        undo.forget();
        ok.then(|| bundle.dir.clone())
            .ok_or(StepError::Config(BundleError::NotADirectory(
                bundle.dir.clone(),
            )))
    }

    fn watch(&self, pid: i32) -> (Waiter, Option<PidFd>) {
        (Waiter::unregistered(pid), None)
    }

    fn apply_interfaces(&self, _: &Bundle, _: i32, undo: &mut Undo) -> Result<(), NetError> {
        self.step(Step::Interfaces, undo, &[("link", true)])
            .then_some(())
            .ok_or(NetError::MissingName { index: 0 })
    }

    fn bind_namespaces(&self, _: &Bundle, _: i32, undo: &mut Undo) -> Result<(), NsBindError> {
        self.step(Step::BindNs, undo, &[("bind", true)])
            .then_some(())
            .ok_or(NsBindError::NotAFilePath {
                kind: "net",
                path: PathBuf::from("/run/netns/"),
            })
    }

    fn procs_file(&self, _: i32) -> Option<PathBuf> {
        None
    }

    fn remove_container_cgroup(&self, cgroups_path: &str) -> Vec<String> {
        self.note(format!("remove cgroup {cgroups_path}"));
        vec![format!("remove cgroup {cgroups_path}: busy")]
    }

    fn remove_pid_file(&self, _: &Path) {
        self.note("remove pid file");
    }
}

impl Runtime for Double {
    fn bin(&self) -> &str {
        "rt"
    }

    fn may_exist(&self, _: &str) -> bool {
        self.stale.is_some() || (self.left_behind && self.ran.load(Ordering::SeqCst))
    }

    fn state(&self, name: &str) -> Result<Option<State>, RuntimeError> {
        Ok(self.stale.map(|status| State {
            id: name.into(),
            status: status.into(),
            pid: 0,
            bundle: PathBuf::new(),
        }))
    }

    fn create(
        &self,
        name: &str,
        _: &Path,
        _: &Path,
        _: &ContainerStdio,
    ) -> Result<i32, RuntimeError> {
        self.note(format!("create {name}"));
        if self.create_times_out {
            return Err(RuntimeError::TimedOut {
                bin: "rt".into(),
                op: "create",
                limit: Duration::from_secs(60),
            });
        }
        let mut exists = self.exists.lock().unwrap_or_else(|e| e.into_inner());
        if *exists > 0 {
            *exists -= 1;
            return Err(failed(
                "create",
                &format!("container `{name}` already exists"),
            ));
        }
        match self.fail {
            Some(Step::Create) => Err(failed("create", "exec format error")),
            _ => Ok(PID),
        }
    }

    fn run(
        &self,
        name: &str,
        _: &Path,
        _: &Path,
        _: &ContainerStdio,
    ) -> Result<RuntimeProcess, RuntimeError> {
        self.note(format!("run {name}"));
        self.ran.store(true, Ordering::SeqCst);
        match self.fail {
            Some(Step::Run) => Err(failed("run", "exec format error")),
            _ => Ok(RuntimeProcess::unstarted(
                "rt",
                Waiter::unregistered(PID + 1),
            )),
        }
    }

    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.note(format!("start {name}"));
        match self.fail {
            Some(Step::Start) => Err(failed("start", "cannot start a stopped process")),
            _ => Ok(()),
        }
    }

    fn kill(&self, name: &str, signal: &str, _: bool) -> Result<(), RuntimeError> {
        self.note(format!("kill {name} {signal}"));
        Ok(())
    }

    fn delete(&self, name: &str, _: bool) -> Result<(), RuntimeError> {
        self.note(format!("delete {name}"));
        match self.undo_fails {
            Some("delete") => Err(failed("delete", "device or resource busy")),
            _ => Ok(()),
        }
    }

    fn clear_half_made(&self, name: &str) -> Result<(), RuntimeError> {
        self.note(format!("clear half made {name}"));
        Ok(())
    }

    fn forget_logs(&self, name: &str) {
        self.note(format!("forget logs {name}"));
    }
}

/// A bundle on disk as `Bundle::open` reads it (nothing is mounted: the double does that).
fn bundle(dir: &Path, name: &str, cgroups_path: Option<&str>) -> Bundle {
    let b = dir.join(name);
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs", "readonly": true}
    });
    if let Some(cg) = cgroups_path {
        config["linux"] = serde_json::json!({ "cgroupsPath": cg });
    }
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    Bundle::open(&b).unwrap()
}

fn stdio() -> ContainerStdio {
    let null = || std::fs::File::create("/dev/null").unwrap().into();
    ContainerStdio {
        stdout: null(),
        stderr: null(),
    }
}

fn launch(d: &Double, b: &Bundle, mode: Mode) -> Result<Running, ContainerError> {
    launch_with(d, d, b, &stdio(), mode)
}

/// The steps of a container handed to a supervisor, in order.
const DETACHED: [Step; 8] = [
    Step::Rootfs,
    Step::Mounts,
    Step::Cgroups,
    Step::Config,
    Step::Create,
    Step::Interfaces,
    Step::BindNs,
    Step::Start,
];

/// What the double notes when `step` is done.
fn done(step: Step) -> Vec<String> {
    match step {
        Step::Create | Step::Start | Step::Run => vec![format!("{} c1", step.as_str())],
        s => vec![s.as_str().to_string()],
    }
}

/// What the double notes when `step` is undone on a rollback, newest first.
fn undone(step: Step) -> Vec<String> {
    let v: &[&str] = match step {
        Step::Rootfs => &["undo rootfs"],
        Step::Mounts => &["undo mount rel", "undo mount /abs"],
        Step::Cgroups => &["undo cgroup"],
        Step::Create => &["delete c1", "forget logs c1"],
        Step::Interfaces => &["undo link"],
        Step::BindNs => &["undo bind"],
        Step::Config | Step::Start | Step::Run => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// A failure at step k is reported as step k, and undoes exactly steps k-1..1, newest
/// first, and nothing else; the pid file goes too.
#[test]
fn a_failure_at_each_step_undoes_exactly_the_steps_before_it_in_reverse() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    for (k, &step) in DETACHED.iter().enumerate() {
        let d = Double::failing(step);
        let e = launch(&d, &b, Mode::Detached)
            .err()
            .expect("the launch fails");
        assert_eq!(e.step(), step);
        assert!(e.undo.is_empty(), "{step:?}: {}", e.undo);
        let mut want: Vec<String> = DETACHED[..=k].iter().flat_map(|s| done(*s)).collect();
        want.extend(DETACHED[..k].iter().rev().flat_map(|s| undone(*s)));
        want.push("remove pid file".into());
        assert_eq!(d.take(), want, "failing at {step:?}");
    }
}

/// The same for a foreground `run` that the runtime refuses: everything before it undone.
#[test]
fn a_run_that_fails_to_start_rolls_back_every_step_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double::failing(Step::Run);
    let e = launch(&d, &b, Mode::Foreground)
        .err()
        .expect("the launch fails");
    assert!(matches!(
        e.failed,
        StepError::Run(RuntimeError::Failed { .. })
    ));
    let steps = [Step::Rootfs, Step::Mounts, Step::Cgroups, Step::Config];
    let mut want: Vec<String> = steps.iter().flat_map(|s| done(*s)).collect();
    want.push("run c1".into());
    want.extend(steps.iter().rev().flat_map(|s| undone(*s)));
    want.push("remove pid file".into());
    assert_eq!(d.take(), want);
}

/// What a failing step did itself before it failed is undone first, then the steps before
/// it.
#[test]
fn a_step_that_fails_half_way_has_its_own_part_undone_too() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double {
        half_way: true,
        ..Double::failing(Step::Mounts)
    };
    let e = launch(&d, &b, Mode::Detached)
        .err()
        .expect("the launch fails");
    assert_eq!(e.step(), Step::Mounts);
    assert_eq!(
        d.take(),
        [
            "rootfs",
            "mounts",
            "undo mount /abs",
            "undo rootfs",
            "remove pid file"
        ]
    );
}

/// An undo step that fails is reported, and the steps below it are still undone.
#[test]
fn a_failing_undo_is_reported_and_the_rollback_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double {
        undo_fails: Some("link"),
        ..Double::failing(Step::Start)
    };
    let e = launch(&d, &b, Mode::Detached)
        .err()
        .expect("the launch fails");
    assert_eq!(e.undo.0, ["link: EBUSY: Device or resource busy"]);
    let journal = d.take();
    let tail: Vec<&str> = journal.iter().skip(8).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "undo bind",
            "undo link",
            "delete c1",
            "forget logs c1",
            "undo cgroup",
            "undo mount rel",
            "undo mount /abs",
            "undo rootfs",
            "remove pid file"
        ]
    );
    assert!(
        e.report()
            .ends_with("(undo failed: link: EBUSY: Device or resource busy)")
    );
}

/// After a container that ran, its cleanup deletes it and undoes what belongs to it; what is
/// meant to outlive it (absolute mounts, cgroups, links, namespace binds) stays. After one
/// that failed, everything goes.
#[test]
fn persistent_steps_survive_a_successful_cleanup_and_not_a_failed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double::default();
    let r = launch(&d, &b, Mode::Detached).expect("the launch succeeds");
    let want: Vec<String> = DETACHED.iter().flat_map(|s| done(*s)).collect();
    assert_eq!(d.take(), want);
    assert!(r.end(&d, false).is_empty());
    assert_eq!(
        d.take(),
        [
            "delete c1",
            "forget logs c1",
            "undo mount rel",
            "undo rootfs"
        ]
    );

    let r = launch(&d, &b, Mode::Detached).expect("the launch succeeds");
    d.take();
    assert!(r.end(&d, true).is_empty());
    let want: Vec<String> = DETACHED.iter().rev().flat_map(|s| undone(*s)).collect();
    assert_eq!(d.take(), want);
}

/// A foreground `run` the runtime failed (it could not create or start the container) is
/// rolled back like a launch that failed: every step, the persistent ones too
/// (`Running::finish_failed`); one that ran keeps them (`Running::finish`).
#[test]
fn a_failed_run_rolls_back_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double::default();
    let r = launch(&d, &b, Mode::Foreground).expect("the launch succeeds");
    assert_eq!(
        d.take(),
        ["rootfs", "mounts", "cgroups", "config", "run c1"]
    );
    assert!(r.end(&d, true).is_empty());
    assert_eq!(
        d.take(),
        [
            "undo cgroup",
            "undo mount rel",
            "undo mount /abs",
            "undo rootfs",
            "forget logs c1"
        ]
    );

    let r = launch(&d, &b, Mode::Foreground).expect("the launch succeeds");
    d.take();
    assert!(r.end(&d, false).is_empty());
    assert_eq!(
        d.take(),
        ["undo mount rel", "undo rootfs", "forget logs c1"]
    );
}

/// A runtime that died under its `run` may leave the container running: it is killed and
/// deleted before its rootfs is taken away.
#[test]
fn a_container_a_dead_run_left_behind_goes_before_its_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double {
        left_behind: true,
        ..Double::default()
    };
    let r = launch(&d, &b, Mode::Foreground).expect("the launch succeeds");
    d.take();
    assert!(r.end(&d, false).is_empty());
    assert_eq!(
        d.take(),
        [
            "kill c1 KILL",
            "delete c1",
            "undo mount rel",
            "undo rootfs",
            "forget logs c1"
        ]
    );
}

/// A stopped container of the same name, left by an earlier run, is deleted before the
/// `create` (and before a `run`); a running one is an error and nothing is created.
#[test]
fn a_stale_container_is_cleared_first_and_a_running_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let before = ["rootfs", "mounts", "cgroups", "config"];

    let d = Double {
        stale: Some("stopped"),
        ..Double::default()
    };
    let r = launch(&d, &b, Mode::Detached).expect("the launch succeeds");
    let journal = d.take();
    assert_eq!(journal[..4], before);
    assert_eq!(journal[4..7], ["delete c1", "create c1", "interfaces"]);
    r.end(&d, true);
    d.take();

    let r = launch(&d, &b, Mode::Foreground).expect("the launch succeeds");
    assert_eq!(d.take()[4..], ["delete c1", "run c1"]);
    r.end(&d, true);
    d.take();

    let d = Double {
        stale: Some("running"),
        ..Double::default()
    };
    let e = launch(&d, &b, Mode::Detached)
        .err()
        .expect("the launch fails");
    assert_eq!(e.step(), Step::Create);
    assert!(
        e.report()
            .ends_with("a container named `c1` already exists and is running"),
        "{}",
        e.report()
    );
    let journal = d.take();
    assert!(
        !journal.iter().any(|j| j.starts_with("create")),
        "{journal:?}"
    );
}

/// A runtime that says the container exists although its state directory did not show it:
/// what it left is cleared and the `create` tried once more, and only once.
#[test]
fn create_is_retried_once_over_a_container_that_already_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", None);
    let d = Double {
        exists: Arc::new(Mutex::new(1)),
        ..Double::default()
    };
    let r = launch(&d, &b, Mode::Detached).expect("the launch succeeds");
    assert_eq!(
        d.take()[4..8],
        ["create c1", "clear half made c1", "create c1", "interfaces"]
    );
    r.end(&d, true);

    let d = Double {
        exists: Arc::new(Mutex::new(2)),
        ..Double::default()
    };
    let e = launch(&d, &b, Mode::Detached)
        .err()
        .expect("the launch fails");
    assert_eq!(e.step(), Step::Create);
    let journal = d.take();
    assert_eq!(
        journal[4..7],
        ["create c1", "clear half made c1", "create c1"]
    );
    assert_eq!(journal[7], "undo cgroup");
}

/// A `create` killed at its bound may leave the container's cgroup, which no `delete` knows
/// of: it is removed, and what could not be is reported after the rollback's failures.
#[test]
fn a_create_killed_at_its_bound_has_its_cgroup_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "c1", Some("/lkinit-unit/c1"));
    let d = Double {
        create_times_out: true,
        undo_fails: Some("mount rel"),
        ..Double::default()
    };
    let e = launch(&d, &b, Mode::Detached)
        .err()
        .expect("the launch fails");
    assert!(matches!(
        e.failed,
        StepError::Create(RuntimeError::TimedOut { .. })
    ));
    assert_eq!(
        e.undo.0,
        [
            "mount rel: EBUSY: Device or resource busy",
            "remove cgroup /lkinit-unit/c1: busy"
        ]
    );
    assert_eq!(
        d.take()[4..],
        [
            "create c1",
            "remove cgroup /lkinit-unit/c1",
            "undo cgroup",
            "undo mount rel",
            "undo mount /abs",
            "undo rootfs",
            "remove pid file"
        ]
    );
}
