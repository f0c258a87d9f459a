//! The container path without root, in milliseconds: every side effect goes to a double that
//! records it and fails where it is told to. What these show (the order of the steps, what
//! a failure at each one undoes, what a cleanup keeps, the retry over a stale container) the
//! root tests show again against the kernel and runc (tests/onboot.rs, tests/net.rs,
//! tests/builder_bundles.rs).

mod double;

use super::{ContainerError, Mode, Running, Step, StepError, launch_with};
use crate::bundle::Bundle;
use crate::logs::ContainerStdio;
use crate::oci_runtime::RuntimeError;
use double::Double;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
        extra: Vec::new(),
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
        assert_eq!(e.failed.step(), step);
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
    assert_eq!(e.failed.step(), Step::Mounts);
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
    assert_eq!(e.undo.0, ["link: Device or resource busy (os error 16)"]);
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
            .ends_with("(undo failed: link: Device or resource busy (os error 16))")
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
    assert_eq!(e.failed.step(), Step::Create);
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
    assert_eq!(e.failed.step(), Step::Create);
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
            "mount rel: Device or resource busy (os error 16)",
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
