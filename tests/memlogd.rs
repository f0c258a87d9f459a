//! Container output into LinuxKit's memlogd (the real one, on the test's own sockets),
//! read back with LinuxKit's logread and with `service logs`; the fall back to log files
//! when memlogd dies.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::read_for;
use common::*;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;

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
    let r = Run::of(env.runner_command("onshutdown", &sd, &[]));
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

/// A service that says it is up, warns once, then ticks (until SIGTERM).
const TICKER: &str = "trap 'exit 0' TERM; echo up; echo warn >&2; i=0; \
                      while true; do i=$((i+1)); echo tick $i; sleep 0.1; done";

fn ticks(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

fn max_tick(lines: &[String]) -> u32 {
    ticks(lines).into_iter().max().unwrap_or(0)
}

#[test]
fn service_output_goes_to_memlogd_and_logs_reads_it_back() {
    let env = TestEnv::new();
    let memlogd = env.memlogd();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "web", &["sh", "-c", TICKER]);
    let mut sup = env.system_init(&dir);
    sup.wait_running("web");
    let out = memlogd.wait_for("web.out", |l| max_tick(l) >= 2);
    assert_eq!(out[0], "up");
    assert_eq!(memlogd.wait_for("web", |l| !l.is_empty()), ["warn"]);
    // The files are there, empty: memlogd has the output.
    assert_eq!(env.log("web.out.log"), "");
    assert!(env.log_dir.join("web.log").exists());

    let r = sup.cli(&["logs", "web"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("up\ntick 1\n"), "{}", r.stdout);
    assert_eq!(r.stderr, "warn\n");
    let dumped = max_tick(&r.stdout.lines().map(str::to_string).collect::<Vec<_>>());

    // -f: memlogd's dump, then what comes after.
    let mut c = env.cli();
    c.args(["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut f = c.spawn().unwrap();
    let followed = read_for(&mut f, Duration::from_secs(30), |s| {
        s.contains(&format!("tick {}\n", dumped + 3))
    });
    let _ = f.kill();
    let _ = f.wait();
    assert!(followed.starts_with("up\n"), "{followed}");
    assert!(
        followed.contains(&format!("tick {}\n", dumped + 3)),
        "logs -f stopped at: {followed}"
    );

    // Restarts keep the one stream memlogd has: no descriptor piles up in the supervisor.
    let fds = ProcView::of(sup.pid(), "").fd_kinds();
    for _ in 0..2 {
        assert_eq!(sup.cli(&["restart", "web"]).code, 0);
        sup.wait_running("web");
    }
    memlogd.wait_for("web", |l| l.len() >= 3);
    let view = ProcView::of(sup.pid(), "");
    assert_eq!(view.fd_kinds(), fds, "the supervisor's descriptors changed");
    assert!(view.inheritable.is_empty(), "{:?}", view.inheritable);

    // A supervisor killed and started again hands memlogd the same FIFOs' output anew.
    sup.kill9();
    let before = max_tick(&memlogd.of("web.out"));
    let sup = env.system_init(&dir);
    sup.wait_running("web");
    memlogd.wait_for("web.out", |l| max_tick(l) >= before + 3);
    assert_eq!(env.log("web.out.log"), "");
    assert!(!sup.log().contains(FALLBACK), "{}", sup.log());
}

#[test]
fn memlogd_killed_under_a_service_falls_back_to_files_and_a_new_launch_finds_it_again() {
    let env = TestEnv::new();
    let mut memlogd = env.memlogd();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "web", &["sh", "-c", TICKER]);
    let sup = env.system_init(&dir);
    sup.wait_running("web");
    memlogd.wait_for("web.out", |l| max_tick(l) >= 2);

    memlogd.kill();
    sup.wait_until("ticks in web.out.log", Duration::from_secs(30), || {
        (ticks(&lines(&env.log("web.out.log"))).len() >= 3).then_some(())
    });
    let log = sup.log();
    assert_eq!(log.matches(FALLBACK).count(), 1, "{log}");
    // `logs` still works: the files (memlogd does not answer).
    let r = sup.cli(&["logs", "web"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("tick "), "{}", r.stdout);

    // memlogd is back; the next launch of the service hands it the output again.
    let memlogd = env.memlogd();
    assert_eq!(sup.cli(&["restart", "web"]).code, 0);
    sup.wait_running("web");
    let out = memlogd.wait_for("web.out", |l| max_tick(l) >= 2);
    assert_eq!(out[0], "up");
    assert_eq!(memlogd.wait_for("web", |l| !l.is_empty()), ["warn"]);
    assert!(sup.log().contains("takes container output again"));
    // The file stopped growing at the restart (what came before is still there).
    let file = lines(&env.log("web.out.log"));
    assert_eq!(file.iter().filter(|l| *l == "up").count(), 0, "{file:?}");
    assert_eq!(sup.log().matches(FALLBACK).count(), 1);
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}
