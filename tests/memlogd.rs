//! Container output into LinuxKit's memlogd (the real one, on the test's own sockets),
//! read back with LinuxKit's logread; the fall back to log files when memlogd dies.

mod common;

use common::*;
use serde_json::json;

/// The warning that memlogd was lost (said once however many streams find out).
const FALLBACK: &str = "container output goes to log files instead";

#[test]
fn onboot_output_goes_to_memlogd_under_linuxkits_names_and_to_the_console() {
    let env = TestEnv::new();
    let memlogd = env.memlogd();
    let ob = env.bundles_dir("onboot");
    env.bundle(
        &ob,
        "hello",
        &[
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; printf no-newline",
        ],
    );
    env.bundle(&ob, "fds", &["sh", "-c", "ls -l /proc/self/fd/; echo end"]);
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 0);
    assert_eq!(r.line("hello"), "hello: exit code 0");
    assert_eq!(
        memlogd.wait_for("onboot.hello.out", |l| l.len() >= 2),
        ["to-stdout", "no-newline"]
    );
    assert_eq!(memlogd.of("onboot.hello"), ["to-stderr"]);
    // The container got stdin, stdout and stderr only: nothing of memlogd's.
    let fds: Vec<String> = memlogd
        .wait_for("onboot.fds.out", |l| l.last().is_some_and(|l| l == "end"))
        .iter()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            // ls's own directory, if it still holds it.
            let own = target.starts_with("/proc/") && target.ends_with("/fd");
            (!own).then(|| left.split_whitespace().last().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(fds, ["0", "1", "2"]);
    // Still on the console, in whole lines.
    for l in ["to-stdout\n", "to-stderr\n", "no-newline\n"] {
        assert!(r.stdout.contains(l), "{l:?} not on the console");
    }
    // memlogd has the output: no log files, as LinuxKit does.
    for f in ["onboot.hello.out.log", "onboot.hello.log"] {
        assert!(!env.log_dir.join(f).exists(), "{f} was written");
    }
    assert!(!r.stderr.contains("memlogd"), "{}", r.stderr);
    env.census(&[]).assert_nothing_added_since(&before);
    // The streams handed to memlogd for each bundle went with it.
    p.assert_lkinit_clean();
}

#[test]
fn onshutdown_output_goes_to_memlogd_as_shutdown_name() {
    let env = TestEnv::new();
    let memlogd = env.memlogd();
    let sd = env.bundles_dir("onshutdown");
    env.bundle(&sd, "bye", &["sh", "-c", "echo goodbye; echo bye-err >&2"]);
    let mut c = env.lkinit();
    c.arg("onshutdown")
        .arg("--path")
        .arg(&sd)
        .arg("--log-dir")
        .arg(&env.log_dir);
    let r = Run::of(c);
    assert_eq!(r.code, 0);
    assert_eq!(
        memlogd.wait_for("shutdown.bye.out", |l| !l.is_empty()),
        ["goodbye"]
    );
    assert_eq!(
        memlogd.wait_for("shutdown.bye", |l| !l.is_empty()),
        ["bye-err"]
    );
    assert!(r.stdout.contains("goodbye\n"));
}

#[test]
fn memlogd_killed_during_onboot_leaves_the_rest_to_files_with_one_warning() {
    let env = TestEnv::new();
    let mut memlogd = env.memlogd();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "1-before", &["echo", "before"]);
    // A probe that writes a line, waits for the test, then writes more.
    let mid = env.probe(&ob, "2-mid");
    env.edit_config(&ob.join("2-mid"), |c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "echo first; touch /gate/2-mid.ready; \
             while [ ! -e /gate/2-mid.go ]; do sleep 0.02; done; \
             echo second; echo second-err >&2"
        ])
    });
    env.bundle(
        &ob,
        "3-after",
        &["sh", "-c", "echo after; echo after-err >&2"],
    );
    let mut bg = env.onboot_bg(&ob, &[]);
    let seen = mid.view(&mut bg, || {
        memlogd.wait_for("onboot.2-mid.out", |l| l == ["first"]);
        memlogd.kill();
    });
    assert!(seen.is_some(), "2-mid never ran");
    let r = bg.finish();
    assert_eq!(r.code, 0);
    for b in ["1-before", "2-mid", "3-after"] {
        assert_eq!(r.line(b), format!("{b}: exit code 0"));
    }
    // Nothing lost: what memlogd could not take is in the files.
    assert_eq!(env.log("onboot.2-mid.out.log"), "second\n");
    assert_eq!(env.log("onboot.2-mid.log"), "second-err\n");
    assert_eq!(env.log("onboot.3-after.out.log"), "after\n");
    assert_eq!(env.log("onboot.3-after.log"), "after-err\n");
    assert!(!env.log_dir.join("onboot.1-before.out.log").exists());
    for l in ["before\n", "first\n", "second\n", "after\n", "after-err\n"] {
        assert!(r.stdout.contains(l), "{l:?} not on the console");
    }
    assert_eq!(r.stderr.matches(FALLBACK).count(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&env.memlogd_socket().display().to_string()),
        "the warning names the socket: {}",
        r.stderr
    );
}
