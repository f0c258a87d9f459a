//! The service supervisor (`lkinit system-init`) and the service CLI, against real runc with
//! busybox bundles.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::{Supervisor, alive, read_for};
use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Runs until SIGTERM, which it answers by exiting 0 at once.
const POLITE: &str = "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.1; done";

/// Writes a tick to stdout five times a second; one line to stderr first.
const TICKER: &str = "echo out-start; echo err-start >&2; trap 'exit 0' TERM; \
                      i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";

fn settings(bundle: &Path, v: serde_json::Value) {
    std::fs::write(bundle.join("service.json"), v.to_string()).unwrap();
}

fn kill9(pid: i32) {
    // SAFETY: kill(2) of a pid the test read from the supervisor.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The test's containers, mounts and records are all gone.
fn nothing_left(env: &TestEnv) {
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
}

/// The numbers of the complete `tick N` lines (a line being written may be cut short).
fn tick_numbers(s: &str) -> Vec<u64> {
    s.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n')?.strip_prefix("tick ")?.parse().ok())
        .collect()
}

#[test]
fn start_stop_restart() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "web", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    let first = sup.wait_running("web");
    assert_eq!(first.code, 0);
    let pid = first.pid.unwrap();
    assert!(alive(pid));
    assert!(is_mounted(&b.join("rootfs")));

    let r = sup.cli(&["start", "web"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already running"), "{}", r.stderr);

    let r = sup.cli(&["stop", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("web: stopped, exit code 0"),
        "{}",
        r.stdout
    );
    let s = sup.status("web");
    assert_eq!((s.code, s.state.as_str(), s.pid), (3, "stopped", None));
    assert!(!alive(pid));
    // Stopped means gone: no container in the runtime, no rootfs mount.
    nothing_left(&env);
    let r = sup.cli(&["stop", "web"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("not running"), "{}", r.stdout);

    let r = sup.cli(&["start", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let second = sup.status("web");
    assert_eq!(second.state, "running");
    let pid2 = second.pid.unwrap();
    assert_ne!(pid2, pid);
    assert!(
        r.stdout.contains(&format!("web: running, pid {pid2}")),
        "{}",
        r.stdout
    );

    let r = sup.cli(&["restart", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let third = sup.status("web");
    let pid3 = third.pid.unwrap();
    assert_ne!(pid3, pid2);
    assert!(!alive(pid2));
    assert!(alive(pid3));
    assert_eq!(third.restarts, 0, "a restart on request is not counted");

    let list = sup.cli(&["list"]);
    assert_eq!(list.code, 0);
    let line = list.stdout.lines().find(|l| l.starts_with("web ")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, vec!["web", "running", &pid3.to_string(), "0"]);
    // Each run appended to the same log; what a stopped run wrote is there once the stop
    // is reported.
    assert_eq!(env.log("web.out.log").matches("got TERM\n").count(), 2);
    sup.wait_until("the third run's output", Duration::from_secs(20), || {
        (env.log("web.out.log").matches("up\n").count() == 3).then_some(())
    });
}

#[test]
fn a_killed_service_is_restarted_with_a_new_pid() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "svc", &["sh", "-c", POLITE]);
    settings(&b, json!({"restartDelay": 0.1}));
    let sup = env.system_init(&dir);
    let pid = sup.wait_running("svc").pid.unwrap();
    kill9(pid);
    let s = sup.wait_status("svc", "running again", |s| {
        s.state == "running" && s.pid.is_some_and(|p| p != pid)
    });
    assert_eq!(s.restarts, 1);
    assert_eq!(s.exit, "exit code 137 (killed by SIGKILL)");
    assert!(alive(s.pid.unwrap()));
    assert!(
        sup.log().contains("svc: restart 1 in 0.1s"),
        "{}",
        sup.log()
    );
    // Only the new container exists.
    assert_eq!(env.containers(), vec!["svc".to_string()]);
}

#[test]
fn a_crash_loop_is_marked_failed() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "crashy", &["sh", "-c", "echo crashing; exit 3"]);
    settings(
        &b,
        json!({"restartDelay": 0.05, "crashLoop": {"restarts": 2, "within": 60}}),
    );
    env.bundle(&dir, "steady", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    let s = sup.wait_status("crashy", "failed", |s| s.state == "failed");
    assert_eq!(s.code, 3);
    assert_eq!(s.restarts, 2);
    assert_eq!(s.exit, "exit code 3");
    assert_eq!(s.reason, "crash loop: 3 exits within 60s");
    let list = sup.cli(&["list"]);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("crashy "))
        .unwrap();
    assert!(
        line.contains(" failed ") && line.contains("crash loop"),
        "{line}"
    );
    assert!(
        sup.log()
            .contains("crashy: crash loop: 3 exits within 60s; marked failed"),
        "{}",
        sup.log()
    );
    assert_eq!(env.log("crashy.out.log"), "crashing\n".repeat(3));
    // Left down: nothing of it remains, and the other service is unaffected.
    assert_eq!(env.containers(), vec!["steady".to_string()]);
    assert_eq!(sup.status("steady").state, "running");
    // Started on purpose, it gets a fresh count.
    let r = sup.cli(&["start", "crashy"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    sup.wait_status("crashy", "failed again", |s| {
        s.state == "failed" && s.restarts == 2
    });
    assert_eq!(env.log("crashy.out.log"), "crashing\n".repeat(6));
}

#[test]
fn a_term_ignoring_service_is_killed_after_its_grace_period() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(
        &dir,
        "stubborn",
        &[
            "sh",
            "-c",
            "trap '' TERM; echo up; while true; do sleep 0.1; done",
        ],
    );
    settings(&b, json!({"stopGrace": 1}));
    let sup = env.system_init(&dir);
    let pid = sup.wait_running("stubborn").pid.unwrap();
    let r = sup.cli(&["stop", "stubborn"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("stubborn: stopped, exit code 137 (killed by SIGKILL)"),
        "{}",
        r.stdout
    );
    assert!(
        sup.log()
            .contains("stubborn: still running 1s after SIGTERM: SIGKILL"),
        "{}",
        sup.log()
    );
    assert!(!alive(pid));
    nothing_left(&env);
}

#[test]
fn a_host_pid_namespace_service_leaves_no_process_behind() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    // The init answers SIGTERM; its child ignores it. In the host's pid namespace the
    // child survives the init unless the whole cgroup is killed.
    let b = env.bundle(
        &dir,
        "hostpid",
        &[
            "sh",
            "-c",
            "sh -c \"trap '' TERM; exec sleep 1000\" & echo child $!; \
             trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    );
    env.edit_config(&b, |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    settings(&b, json!({"restartDelay": 0.1, "stopGrace": 5}));
    let sup = env.system_init(&dir);
    let children = |n: usize| {
        sup.wait_until(
            "the child's pid in the log",
            Duration::from_secs(20),
            || {
                let pids: Vec<i32> = env
                    .log("hostpid.out.log")
                    .lines()
                    .filter_map(|l| l.strip_prefix("child ")?.parse().ok())
                    .collect();
                (pids.len() >= n).then_some(pids)
            },
        )
        .unwrap()
    };

    // A crash of the init: its child goes with it before the restart.
    let pid = sup.wait_running("hostpid").pid.unwrap();
    let first = children(1)[0];
    assert!(alive(first), "the child runs beside the init");
    kill9(pid);
    let s = sup.wait_status("hostpid", "restarted", |s| {
        s.state == "running" && s.pid.is_some_and(|p| p != pid)
    });
    assert!(
        !alive(first),
        "the crashed init's child {first} is still alive"
    );

    // A stop: the init exits on SIGTERM, the child is killed with the cgroup.
    let second = children(2)[1];
    assert!(alive(second));
    let r = sup.cli(&["stop", "hostpid"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("exit code 0"), "{}", r.stdout);
    assert!(!alive(s.pid.unwrap()));
    assert!(!alive(second), "the child {second} outlived the stop");
    nothing_left(&env);
}

#[test]
fn logs_and_logs_follow() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "ticker", &["sh", "-c", TICKER]);
    let sup = env.system_init(&dir);
    sup.wait_running("ticker");
    sup.wait_until("ticks", Duration::from_secs(20), || {
        (tick_numbers(&env.log("ticker.out.log")).len() >= 2).then_some(())
    });

    let r = sup.cli(&["logs", "ticker"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("out-start\ntick 0\ntick 1\n"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stderr, "err-start\n");

    // Following: lines written after it started arrive.
    let mut f = sup_cli_child(&env, &["logs", "-f", "ticker"]);
    let seen = tick_numbers(&env.log("ticker.out.log"))
        .last()
        .copied()
        .unwrap();
    let out = read_for(&mut f, Duration::from_secs(20), |s| {
        tick_numbers(s).last().is_some_and(|&n| n >= seen + 3)
    });
    let _ = f.kill();
    let _ = f.wait();
    let ticks = tick_numbers(&out);
    assert!(out.starts_with("out-start\ntick 0\n"), "{out}");
    assert!(
        ticks.last().is_some_and(|&n| n >= seen + 3),
        "no new lines: {out}"
    );
    // In order, none lost, none twice.
    assert_eq!(ticks, (0..ticks.len() as u64).collect::<Vec<_>>());

    // Restarts append to the same files.
    assert_eq!(sup.cli(&["restart", "ticker"]).code, 0);
    sup.wait_until("a second start", Duration::from_secs(20), || {
        (env.log("ticker.log") == "err-start\nerr-start\n").then_some(())
    });
    assert_eq!(env.log("ticker.out.log").matches("out-start\n").count(), 2);
}

fn sup_cli_child(env: &TestEnv, args: &[&str]) -> std::process::Child {
    let mut c = env.cli();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    c.spawn().unwrap()
}

#[test]
fn a_full_log_disk_does_not_stop_the_service() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    // 2 MiB of output into a log directory that holds 64 KiB; the service then exits 0
    // and is left down, which it can only do if its writes never blocked.
    let b = env.bundle(
        &dir,
        "chatty",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero bs=1024 count=2048 2>/dev/null; exit 0",
        ],
    );
    settings(&b, json!({"restart": "never"}));
    let log_dir = env.log_dir.clone();
    std::fs::create_dir_all(&log_dir).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &log_dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64k,mode=0755"),
    )
    .unwrap();
    env.track_mount(&log_dir);
    let sup = env.system_init(&dir);
    let s = sup.wait_status("chatty", "exited", |s| s.state == "exited");
    assert_eq!(s.exit, "exit code 0");
    assert!(
        sup.log().contains("chatty: cannot write") && sup.log().contains("dropping its output"),
        "{}",
        sup.log()
    );
    assert!(
        std::fs::metadata(log_dir.join("chatty.out.log"))
            .unwrap()
            .len()
            <= 64 * 1024
    );
    // The supervisor still answers.
    assert_eq!(sup.cli(&["list"]).code, 0);
}

#[test]
fn a_killed_supervisor_is_replaced_and_adopts_its_services() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let a = env.bundle(&dir, "keeper", &["sh", "-c", TICKER]);
    // A relative runtime mount and mkdir inside the rootfs: the cleanup a later
    // supervisor must redo from the record.
    std::fs::write(
        a.join("runtime.json"),
        json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "scratch"}],
               "mkdir": ["made/here"]})
        .to_string(),
    )
    .unwrap();
    let b = env.bundle(&dir, "victim", &["sh", "-c", POLITE]);
    settings(&b, json!({"restartDelay": 0.1}));
    let mut first = env.system_init(&dir);
    let pa = first.wait_running("keeper").pid.unwrap();
    let pb = first.wait_running("victim").pid.unwrap();
    first.kill9();
    // Nothing stopped with it.
    assert!(alive(pa) && alive(pb));
    let r = env.service(&["list"]);
    assert_eq!(r.code, 1);

    let second = env.system_init(&dir);
    let s = second.wait_running("keeper");
    assert_eq!(s.pid, Some(pa), "started twice instead of adopted");
    assert!(s.adopted);
    assert_eq!(second.wait_running("victim").pid, Some(pb));
    assert!(second.log().contains(&format!("keeper: adopted, pid {pa}")));
    // Its output still reaches the log: the FIFO outlived the first supervisor.
    let before = tick_numbers(&env.log("keeper.out.log")).len();
    second.wait_until("new ticks", Duration::from_secs(20), || {
        (tick_numbers(&env.log("keeper.out.log")).len() >= before + 3).then_some(())
    });
    let ticks = tick_numbers(&env.log("keeper.out.log"));
    assert_eq!(
        ticks,
        (0..ticks.len() as u64).collect::<Vec<_>>(),
        "lines lost across the restart"
    );

    // An adopted service that dies is restarted (its status is not ours to know).
    kill9(pb);
    let v = second.wait_status("victim", "restarted", |s| {
        s.state == "running" && s.pid.is_some_and(|p| p != pb)
    });
    assert_eq!(v.restarts, 1);
    assert!(v.exit.contains("unknown"), "{}", v.exit);
    assert!(!v.adopted);

    // And an adopted one can be stopped, leaving nothing: the recorded cleanup ran.
    assert!(is_mounted(&a.join("rootfs/scratch")));
    let r = second.cli(&["stop", "keeper"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!alive(pa));
    assert!(!is_mounted(&a.join("rootfs")));
    assert!(!a.join("rootfs/made").exists(), "the mkdir was not undone");
    assert!(
        !a.join("rootfs/scratch").exists(),
        "the mount point was not removed"
    );
    assert_eq!(env.containers(), vec!["victim".to_string()]);
}

#[test]
fn sigterm_stops_every_service_last_started_first() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    // `b` ignores SIGTERM: if the grace periods ran one after the other, `a` would get its
    // SIGTERM only after `b` was killed.
    for (name, after, script) in [
        ("a", json!([]), POLITE),
        (
            "b",
            json!(["a"]),
            "trap 'echo got TERM' TERM; echo up; while true; do sleep 0.1; done",
        ),
        ("c", json!(["b"]), POLITE),
    ] {
        let b = env.bundle(&dir, name, &["sh", "-c", script]);
        settings(&b, json!({"after": after, "stopGrace": 2}));
    }
    let mut sup = env.system_init(&dir);
    let pids: Vec<i32> = ["a", "b", "c"]
        .iter()
        .map(|n| sup.wait_running(n).pid.unwrap())
        .collect();
    let log = sup.log();
    let started = |n: &str| log.find(&format!("{n}: running, pid")).unwrap();
    assert!(
        started("a") < started("b") && started("b") < started("c"),
        "{log}"
    );
    // Each has set its TERM trap once it said `up`; before that a SIGTERM kills the shell.
    for n in ["a", "b", "c"] {
        assert!(
            eventually(|| env.log(&format!("{n}.out.log")) == "up\n"),
            "{n} never said up"
        );
    }

    assert_eq!(sup.terminate(), 0);
    let log = sup.log();
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no `{what}` in:\n{log}"))
    };
    let stopping = |n: &str| at(&format!("{n}: stopping pid"));
    assert!(
        stopping("c") < stopping("b") && stopping("b") < stopping("a"),
        "{log}"
    );
    assert!(
        stopping("a") < at("b: still running 2s after SIGTERM: SIGKILL"),
        "the grace periods did not run side by side:\n{log}"
    );
    for (n, pid) in ["a", "b", "c"].iter().zip(pids) {
        assert!(!alive(pid), "{n}");
        assert_eq!(env.log(&format!("{n}.out.log")), "up\ngot TERM\n");
    }
    nothing_left(&env);
    assert!(!env.sock().exists(), "the socket is left behind");
    assert!(!env.state_dir.join("services").exists());
}

#[test]
fn a_stop_cut_short_by_a_crash_is_finished_by_the_next_supervisor() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(
        &dir,
        "slow",
        &[
            "sh",
            "-c",
            "trap '' TERM; echo up; while true; do sleep 0.1; done",
        ],
    );
    settings(&b, json!({"stopGrace": 3}));
    let mut first = env.system_init(&dir);
    let pid = first.wait_running("slow").pid.unwrap();
    let mut stop = sup_cli_child(&env, &["stop", "slow"]);
    first.wait_status("slow", "stopping", |s| s.state == "stopping");
    first.kill9();
    let _ = stop.wait();
    assert!(alive(pid));
    let second = env.system_init(&dir);
    let s = second.wait_status("slow", "stopped", |s| s.state == "stopped");
    assert_eq!(s.code, 3);
    assert!(
        second
            .log()
            .contains("slow: finishing the stop the last supervisor began"),
        "{}",
        second.log()
    );
    assert!(!alive(pid));
    nothing_left(&env);
}

#[test]
fn orphans_are_reaped() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    // In the host's pid namespace, the container's orphans are reparented to the
    // supervisor (a child subreaper): it must reap them.
    let b = env.bundle(
        &dir,
        "forker",
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do (sleep 0.2 &); done; echo spawned; \
             trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    );
    env.edit_config(&b, |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    let sup = env.system_init_args(&dir, &["-v"]);
    sup.wait_running("forker");
    sup.wait_until("orphans reaped", Duration::from_secs(20), || {
        (sup.log().matches("reaped orphan").count() >= 5).then_some(())
    });
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|st| {
            let f: Vec<&str> = st
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace()
                .collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&sup.pid().to_string().as_str())
        })
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
}

#[test]
fn unknown_service_and_no_supervisor() {
    let env = TestEnv::new();
    // No supervisor: the message names the socket it tried.
    for args in [&["list"][..], &["status", "x"], &["stop", "x"]] {
        let r = env.service(args);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stderr.contains("no supervisor is running")
                && r.stderr.contains(&env.sock().display().to_string()),
            "{}",
            r.stderr
        );
    }

    let dir = env.bundles_dir("services");
    env.bundle(&dir, "real", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    sup.wait_running("real");
    for cmd in ["status", "stop", "logs"] {
        let r = sup.cli(&[cmd, "nope"]);
        assert_eq!(r.code, 1, "{cmd}");
        assert!(
            r.stderr.contains("no service `nope`"),
            "{cmd}: {}",
            r.stderr
        );
    }
    let r = sup.cli(&["start", "nope"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "{} is not a bundle directory",
            dir.join("nope").display()
        )),
        "{}",
        r.stderr
    );
    // A bundle added later can be started by name.
    env.bundle(&dir, "later", &["sh", "-c", POLITE]);
    let r = sup.cli(&["start", "later"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sup.status("later").state, "running");
}

#[test]
fn bad_settings_and_start_order_are_reported() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let typo = env.bundle(&dir, "typo", &["sh", "-c", POLITE]);
    std::fs::write(typo.join("service.yml"), "stopGrace: 1\nrestrat: never\n").unwrap();
    let orphan = env.bundle(&dir, "orphan", &["sh", "-c", POLITE]);
    settings(&orphan, json!({"after": ["ghost"]}));
    for (n, after) in [("p", "q"), ("q", "p")] {
        let b = env.bundle(&dir, n, &["sh", "-c", POLITE]);
        settings(&b, json!({"after": [after]}));
    }
    env.bundle(&dir, "fine", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    sup.wait_running("fine");
    let t = sup.status("typo");
    assert_eq!(t.state, "failed");
    assert!(
        t.reason.contains("typo/service.yml: line 2")
            && t.reason.contains("unknown field `restrat`"),
        "{}",
        t.reason
    );
    assert_eq!(
        sup.status("orphan").reason,
        "after[0]: there is no service `ghost`"
    );
    assert_eq!(sup.status("p").reason, "after: a cycle: p -> q -> p");
    assert_eq!(sup.status("q").state, "failed");
    assert_eq!(env.containers(), vec!["fine".to_string()]);
}

#[test]
fn a_non_root_client_is_refused() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "svc", &["sh", "-c", POLITE]);
    // The supervisor would make the socket's directory 0700; this one is root's and open
    // to be searched, as /run is.
    let run = env.sock().parent().unwrap().to_path_buf();
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sup = env.system_init(&dir);
    let pid = sup.wait_running("svc").pid.unwrap();
    let sock = env.sock();
    // The path to the socket is open to everyone, so what stops an unprivileged client
    // below is the socket itself, not a directory on the way.
    for d in sock.ancestors().skip(1) {
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        assert_eq!(mode & 0o001, 0o001, "{} is not traversable", d.display());
    }
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", LKINIT])
            .arg("--sock")
            .arg(&sock)
            .args(args);
        Run::of(c)
    };
    // The file mode refuses the connection.
    let r = as_nobody(&["stop", "svc"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("permission denied") && r.stderr.contains(&sock.display().to_string()),
        "{}",
        r.stderr
    );
    // With the mode loosened (a mistake, or a socket bound into a container), the
    // supervisor's own check of the peer's uid still refuses.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let r = as_nobody(&["stop", "svc"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("only root may control services (this client runs as uid 65534)"),
        "{}",
        r.stderr
    );
    assert!(sup.log().contains("refused a client running as uid 65534"));
    // Nothing was done for them.
    let s = sup.status("svc");
    assert_eq!((s.state.as_str(), s.pid), ("running", Some(pid)));
}

#[test]
fn a_second_supervisor_on_the_same_state_is_refused() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "svc", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    sup.wait_running("svc");
    let mut c = env.cli();
    c.arg("system-init")
        .arg("--path")
        .arg(&dir)
        .arg("--log-dir")
        .arg(&env.log_dir);
    let r = Run::of(c);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("another supervisor"), "{}", r.stderr);
    assert_eq!(sup.status("svc").state, "running");
}

// The guard stops the supervisor on a failing test too: nothing of it may be left.
#[test]
fn the_guard_stops_the_supervisor() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "svc", &["sh", "-c", POLITE]);
    let (sup_pid, pid) = {
        let sup: Supervisor = env.system_init(&dir);
        (sup.pid(), sup.wait_running("svc").pid.unwrap())
    };
    assert!(!alive(sup_pid));
    assert!(!alive(pid));
    nothing_left(&env);
}
