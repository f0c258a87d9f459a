//! The harness itself cannot hang a test: a command past its bound is killed with what it
//! started and fails the test naming what was waited for, output held open by something a
//! command left is bounded too, the guard still cleans up as the failure unwinds, and every
//! onboot a test starts has a `--timeout`.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::alive;
use common::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What a failed test says.
fn failure(f: impl FnOnce()) -> String {
    let p = catch_unwind(AssertUnwindSafe(f)).expect_err("the test fails");
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

#[test]
fn a_run_past_its_bound_fails_naming_it_and_the_guard_cleans_up_after() {
    let env = TestEnv::new();
    let ro = env.read_only_dir();
    let dir = env.dir.clone();
    let msg = failure(|| {
        let _env = env;
        Run::within(sh("sleep 30"), Duration::from_secs(1));
    });
    assert!(
        msg.contains("sleep 30") && msg.contains("the command did not end within 1s; killed"),
        "{msg}"
    );
    // The guard ran as the failure unwound: its mount and its directory are gone.
    assert!(!is_mounted(&ro));
    assert!(!dir.exists());
}

#[test]
fn output_held_open_by_a_leftover_is_bounded_and_the_leftover_killed() {
    let env = TestEnv::new();
    let pid_file = env.dir.join("pid");
    let script = format!("sleep 30 & echo $! > {}", pid_file.display());
    let msg = failure(|| {
        run_within(
            sh(&script),
            Duration::from_secs(2),
            "a shell that leaves a sleep",
        );
    });
    assert!(
        msg.starts_with("a shell that leaves a sleep: its output did not end within 2s"),
        "{msg}"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(eventually(|| !alive(pid)), "the sleep {pid} is still there");
}

#[test]
fn a_background_lkinit_is_bounded_too() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "slow", &["sleep", "30"]);
    let bg = env.onboot_bg(&ob, &[]);
    let msg = failure(|| {
        bg.finish_within(Duration::from_secs(2));
    });
    assert!(
        msg.contains("onboot") && msg.contains("the command did not end within 2s; killed"),
        "{msg}"
    );
}

#[test]
fn every_onboot_has_a_timeout_unless_the_test_gives_its_own() {
    let (p, l) = (Path::new("/b"), Path::new("/l"));
    let words = |a: Vec<std::ffi::OsString>| -> Vec<String> {
        a.into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        words(runner_args("onboot", p, l, &["-q"])),
        [
            "onboot",
            "--path",
            "/b",
            "--log-dir",
            "/l",
            "-q",
            "--timeout",
            BUNDLE_TIMEOUT
        ]
    );
    assert_eq!(
        words(runner_args("onshutdown", p, l, &["--timeout", "3"])),
        [
            "onshutdown",
            "--path",
            "/b",
            "--log-dir",
            "/l",
            "--timeout",
            "3"
        ]
    );
}
