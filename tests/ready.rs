//! Readiness and health: `ready: notify` (a real sd_notify client: python3's socket module
//! inside the container), `ready: {fd: N}`, `ready: {exec: ...}`, `after:` waiting for
//! readiness, `readyTimeout`, health checks and their timeout, forged notifications, and
//! nothing left behind. Real runc (and crun for the descriptor), real services.

#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::{Supervisor, alive};
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs until SIGTERM, which it answers by exiting 0 at once.
const POLITE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

fn settings(bundle: &Path, yml: &str) {
    std::fs::write(bundle.join("service.yml"), yml).unwrap();
}

/// A directory of the test bound read-write at `/gate` in the container: the test drops
/// files there to move a service on.
fn with_gate(env: &TestEnv, b: &Path) -> PathBuf {
    let gate = env
        .dir
        .join(format!("gate-{}", b.file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&gate).unwrap();
    std::fs::create_dir_all(b.join("rootfs/gate")).unwrap();
    env.edit_config(b, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/gate", "type": "bind", "source": gate, "options": ["rbind", "rw"]
        }));
    });
    gate
}

/// A bundle that runs Debian's python3 from the host: its /usr bound read-only into the
/// busybox root, where lib and lib64 point into /usr as on the host.
fn python_bundle(env: &TestEnv, parent: &Path, name: &str, script: &str) -> PathBuf {
    ensure_installed(&["python3"]);
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "these tests run Debian's python3 (/usr/bin/python3) inside a container: \
         apt-get install python3"
    );
    let b = env.bundle(parent, name, &["/usr/bin/python3", "-c", script]);
    let root = b.join("rootfs");
    std::fs::create_dir_all(root.join("usr")).unwrap();
    for l in ["lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
    env.edit_config(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]
        }));
    });
    b
}

/// sd_notify as daemons do it: to `$NOTIFY_SOCKET`, from the daemon's own process. Says
/// where it is, then waits for /gate/step, says more, waits for /gate/go, and is ready.
const NOTIFYING: &str = r#"
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = os.environ["NOTIFY_SOCKET"]
def wait(p):
    while not os.path.exists(p):
        time.sleep(0.05)
s.sendto(b"STATUS=waiting for the gate", addr)
wait("/gate/step")
s.sendto(b"STATUS=still waiting", addr)
wait("/gate/go")
s.sendto(b"READY=1\nSTATUS=serving", addr)
while True:
    time.sleep(1)
"#;

/// Another container, not the service, that was given the service's notify socket.
const FORGER: &str = r#"
import signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=forged", "/forge/notify.sock")
while True:
    time.sleep(1)
"#;

/// The line numbers of the first supervisor log lines that contain `a` and `b`.
fn log_order(sup: &Supervisor, a: &str, b: &str) -> (usize, usize) {
    let log = sup.log();
    let at = |s: &str| {
        log.lines()
            .position(|l| l.contains(s))
            .unwrap_or_else(|| panic!("no `{s}` in the supervisor's log:\n{log}"))
    };
    (at(a), at(b))
}

fn wait_log(sup: &Supervisor, what: &str) {
    sup.wait_until(what, Duration::from_secs(30), || {
        sup.log().contains(what).then_some(())
    });
}

/// The pid the runtime reports for a container of the test.
fn runtime_pid(env: &TestEnv, name: &str) -> i32 {
    i32::try_from(env.runtime_state(name)["pid"].as_i64().unwrap()).unwrap()
}

/// Removes a container the test ran by hand, and its rootfs bind.
fn remove_by_hand(env: &TestEnv, name: &str, bundle: &Path) {
    for args in [vec!["kill", name, "KILL"], vec!["delete", "--force", name]] {
        let _ = Command::new(&env.runtime)
            .arg("--root")
            .arg(&env.runtime_root)
            .args(&args)
            .output();
    }
    let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
}

/// `ready: notify` with a real client: `starting` and its STATUS text until READY=1; a
/// READY=1 from a process outside the service (the test itself, another container given
/// the socket) changes nothing and is logged; a service `after` it starts once it is
/// ready; and nothing is left.
#[test]
fn notify_readiness_and_forgeries() {
    let env = TestEnv::new();
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let n = python_bundle(&env, &dir, "n", NOTIFYING);
    settings(&n, "ready: notify\nreadyTimeout: 120\n");
    let gate = with_gate(&env, &n);
    let dep = env.bundle(&dir, "dep", &["sh", "-c", POLITE]);
    settings(&dep, "after: [n]\n");
    let mut sup = env.system_init(&dir);

    let s = sup.wait_status("n", "its first STATUS", |s| {
        s.text == "waiting for the gate"
    });
    assert_eq!((s.code, s.state.as_str()), (3, "starting"), "{s:?}");
    assert!(
        s.reason
            .contains("waiting for READY=1 on its NOTIFY_SOCKET (at most 120s)"),
        "{s:?}"
    );
    let d = sup.status("dep");
    assert_eq!(d.state, "starting");
    assert!(d.reason.contains("waiting for n to be ready"), "{d:?}");
    assert_eq!(d.pid, None);

    // Another container, given the service's socket directory, sends READY=1.
    let others = env.bundles_dir("others");
    let forger = python_bundle(&env, &others, "forger", FORGER);
    std::fs::create_dir_all(forger.join("rootfs/forge")).unwrap();
    let sock_dir = env.state_dir.join("notify/n");
    assert!(sock_dir.join("notify.sock").exists());
    env.edit_config(&forger, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/forge", "type": "bind", "source": sock_dir, "options": ["rbind"]
        }));
    });
    env.run_detached_by_hand(&forger, "forger");
    let forger_pid = runtime_pid(&env, "forger");
    wait_log(
        &sup,
        &format!(
            "n: ignoring a notification from pid {forger_pid}, which is not one of its processes: READY=1\\nSTATUS=forged"
        ),
    );
    // The test itself (on the host) sends READY=1 too.
    std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .send_to(b"READY=1", sock_dir.join("notify.sock"))
        .unwrap();
    // What the service sends next comes after both on the same socket: once it shows,
    // both were read, and ignored.
    std::fs::write(gate.join("step"), "").unwrap();
    let s = sup.wait_status("n", "its second STATUS", |s| s.text == "still waiting");
    assert_eq!(s.state, "starting", "{s:?}");
    assert_eq!(sup.status("dep").state, "starting");

    std::fs::write(gate.join("go"), "").unwrap();
    let s = sup.wait_running("n");
    assert_eq!(s.text, "serving", "not the forger's STATUS: {s:?}");
    assert_eq!(s.code, 0);
    let d = sup.wait_running("dep");
    let (ready, started) = log_order(&sup, "n: ready, pid", "dep: running, pid");
    assert!(
        ready < started,
        "dep started before n was ready:\n{}",
        sup.log()
    );
    assert!(alive(d.pid.unwrap()));

    remove_by_hand(&env, "forger", &forger);
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock, &others]);
}

/// `ready: {fd: N}`: the service writes a line to descriptor N when it is ready (s6's
/// way); the runtime hands the descriptor over (`--preserve-fds`).
fn fd_readiness(runtime: &str, fd: i32) {
    let env = TestEnv::with_runtime(runtime);
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let script = format!(
        "trap 'exit 0' TERM; while [ ! -e /gate/go ]; do sleep 0.05; done; \
         ls -l /proc/self/fd/ > /gate/fds; echo ready >&{fd}; \
         while true; do sleep 0.1; done"
    );
    let b = env.bundle(&dir, "s6", &["sh", "-c", &script]);
    settings(&b, &format!("ready: {{fd: {fd}}}\n"));
    let gate = with_gate(&env, &b);
    let mut sup = env.system_init(&dir);
    let s = sup.wait_status("s6", "up, not ready", |s| s.pid.is_some());
    assert_eq!(s.state, "starting");
    assert!(
        s.reason
            .contains(&format!("waiting for a line on its descriptor {fd}")),
        "{s:?}"
    );
    std::fs::write(gate.join("go"), "").unwrap();
    let r = sup.wait_running("s6");
    assert_eq!(r.pid, s.pid, "the same run became ready");
    // Descriptor N is the FIFO; those below it, from 3, are /dev/null.
    let fds = std::fs::read_to_string(gate.join("fds")).unwrap();
    eprintln!("{fds}");
    assert!(fds.contains(&format!(" {fd} -> ")), "{fds}");
    for low in 3..fd {
        assert!(fds.contains(&format!(" {low} -> /dev/null")), "{fds}");
    }
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

#[test]
fn fd_readiness_runc() {
    fd_readiness("runc", 3);
}

#[test]
fn fd_readiness_crun() {
    fd_readiness("crun", 5);
}

/// `ready: {exec: ...}`: a probe in the service's namespaces that turns true after 2 s;
/// the service `after` it starts once the probe has succeeded, and `status` shows the
/// probe's last result meanwhile.
#[test]
fn exec_readiness_orders_after() {
    let env = TestEnv::new();
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let slow = env.bundle(
        &dir,
        "slow",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 2; touch /dev/shm/ready; while true; do sleep 0.1; done",
        ],
    );
    settings(
        &slow,
        "ready:\n  exec: [test, -e, /dev/shm/ready]\n  interval: 0.2\n",
    );
    let dep = env.bundle(&dir, "dep", &["sh", "-c", POLITE]);
    settings(&dep, "after: [slow]\n");
    let mut sup = env.system_init(&dir);
    let s = sup.wait_status("slow", "a failed readiness check", |s| {
        s.check.starts_with("readiness failed: exit code 1")
    });
    assert_eq!(s.state, "starting", "{s:?}");
    assert!(s.pid.is_some());
    assert_eq!(sup.status("dep").state, "starting");
    let s = sup.wait_running("slow");
    assert!(s.check.starts_with("readiness ok: exit code 0"), "{s:?}");
    sup.wait_running("dep");
    let (ready, started) = log_order(&sup, "slow: ready, pid", "dep: running, pid");
    assert!(ready < started, "{}", sup.log());
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// Never ready: at readyTimeout the start counts as failed (stopped, restart policy,
/// crash-loop accounting), with the reason.
#[test]
fn never_ready_fails_at_ready_timeout() {
    let env = TestEnv::new();
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "mute", &["sh", "-c", POLITE]);
    settings(
        &b,
        "ready: notify\nreadyTimeout: 1\nrestartDelay: 0.1\n\
         crashLoop: {restarts: 1, within: 60}\n",
    );
    let mut sup = env.system_init(&dir);
    let s = sup.wait_status("mute", "failed", |s| s.state == "failed");
    assert_eq!(
        s.reason,
        "crash loop: 2 exits within 60s: not ready within 1s (no READY=1 on its NOTIFY_SOCKET)",
        "{s:?}"
    );
    assert_eq!(s.restarts, 1, "{s:?}");
    assert_eq!(s.exit, "exit code 0", "stopped, its end counted: {s:?}");
    let log = sup.log();
    assert!(
        log.contains("mute: not ready within 1s (no READY=1 on its NOTIFY_SOCKET); stopping it"),
        "{log}"
    );
    assert!(
        log.contains("mute: restart 1 in 0.1s"),
        "the first failure was restarted: {log}"
    );
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// The supervisor's descriptors once three looks 300 ms apart agree: a CLI connection
/// just answered, or a check in flight (its pipes, its pidfd), is no part of what it holds.
fn fds_quiet(sup: &Supervisor) -> Vec<String> {
    let mut seen: Vec<Vec<String>> = Vec::new();
    sup.wait_until(
        "the supervisor's descriptors to settle",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(300));
            seen.push(ProcView::of(sup.pid(), "").fd_kinds());
            let n = seen.len();
            (n >= 3 && seen[n - 3..].iter().all(|s| *s == seen[n - 1])).then(|| seen[n - 1].clone())
        },
    )
    .unwrap_or_default()
}

fn exec_in(env: &TestEnv, name: &str, cmd: &[&str]) {
    let r = Run::of({
        let mut c = env.lkinit();
        c.args(["exec", name, "--"]).args(cmd);
        c
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A service whose health check starts failing is restarted after `retries` failures in a
/// row, through the normal path, with the reason; the supervisor holds the same
/// descriptors before and after.
#[test]
fn failing_health_check_restarts() {
    let env = TestEnv::new();
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let b = env.bundle(
        &dir,
        "sick",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo ok > /dev/shm/ok; while true; do sleep 0.1; done",
        ],
    );
    settings(
        &b,
        "health:\n  exec: [cat, /dev/shm/ok]\n  interval: 0.2\n  timeout: 2\n  retries: 3\n",
    );
    let mut sup = env.system_init(&dir);
    let first = sup.wait_status("sick", "a good health check", |s| {
        s.state == "running" && s.check.starts_with("health ok: exit code 0")
    });
    // The check ran in the service: what it printed is shown.
    assert_eq!(first.output, "ok");
    let fds = fds_quiet(&sup);
    exec_in(&env, "sick", &["rm", "/dev/shm/ok"]);
    let again = sup.wait_status("sick", "restarted and healthy", |s| {
        s.restarts == 1 && s.check.starts_with("health ok")
    });
    assert_ne!(again.pid, first.pid);
    assert!(!alive(first.pid.unwrap()));
    let log = sup.log();
    assert!(
        log.contains("sick: health check failed (1 in a row): exit code 1"),
        "{log}"
    );
    assert!(
        log.contains("sick: health check failed 3 times in a row: exit code 1; stopping it"),
        "{log}"
    );
    let (failed, restarted) = log_order(&sup, "3 times in a row", "sick: restart 1 in");
    assert!(failed < restarted);
    // Stopped through the normal path: SIGTERM, which it answers.
    assert!(log.contains("sick: stopped, exit code 0"), "{log}");
    assert_eq!(fds_quiet(&sup), fds);
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// The processes of the test's cgroup `name` whose command line is `cmd`.
fn processes_running(env: &TestEnv, name: &str, cmd: &str) -> usize {
    let procs = Path::new("/sys/fs/cgroup/pids")
        .join(&env.cgroup_parent)
        .join(name)
        .join("cgroup.procs");
    std::fs::read_to_string(&procs)
        .unwrap_or_default()
        .lines()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == cmd)
        })
        .count()
}

/// A check that hangs is killed at its timeout, with the helper that runs it; checks never
/// pile up.
#[test]
fn hanging_check_is_killed_at_its_timeout() {
    let env = TestEnv::new();
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "hang", &["sh", "-c", POLITE]);
    settings(
        &b,
        "health:\n  exec: [sleep, '997']\n  interval: 0.1\n  timeout: 0.3\n  retries: 1000\n",
    );
    let mut sup = env.system_init(&dir);
    let most = std::cell::Cell::new(0);
    let s = sup.wait_status("hang", "three timed-out checks", |s| {
        most.set(most.get().max(processes_running(&env, "hang", "sleep 997")));
        s.check
            .starts_with("health failed (3 in a row): timed out after 0.3s and was killed")
    });
    assert_eq!(s.state, "running", "{s:?}");
    assert!(most.get() <= 1, "{} checks at once", most.get());
    // Each was killed: at most the one in flight is left, and the supervisor has at most
    // one helper.
    let helpers = ProcView::of(sup.pid(), "")
        .children
        .iter()
        .filter(|(_, _, c)| c.contains("nsenter-helper"))
        .count();
    assert!(helpers <= 1, "{helpers} helpers");
    assert!(processes_running(&env, "hang", "sleep 997") <= 1);
    let r = sup.cli(&["stop", "hang"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(processes_running(&env, "hang", "sleep 997"), 0);
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// A supervisor killed while services are not ready yet: the next one adopts them still
/// `starting`, binds the notify socket again where the container sees it, and reads the
/// line the other wrote to its descriptor while no supervisor ran.
#[test]
fn readiness_survives_a_supervisor_restart() {
    let env = TestEnv::new();
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let n = python_bundle(&env, &dir, "n", NOTIFYING);
    settings(&n, "ready: notify\nreadyTimeout: 120\n");
    let n_gate = with_gate(&env, &n);
    let script = "trap 'exit 0' TERM; while [ ! -e /gate/go ]; do sleep 0.05; done; \
                  echo ready >&3; touch /gate/written; while true; do sleep 0.1; done";
    let f = env.bundle(&dir, "f", &["sh", "-c", script]);
    settings(&f, "ready: {fd: 3}\nreadyTimeout: 120\n");
    let f_gate = with_gate(&env, &f);
    let mut sup = env.system_init(&dir);
    let n_pid = sup
        .wait_status("n", "its first STATUS", |s| {
            s.text == "waiting for the gate"
        })
        .pid;
    let f_pid = sup.wait_status("f", "up", |s| s.pid.is_some()).pid;
    sup.kill9();
    // Ready while no supervisor runs.
    std::fs::write(f_gate.join("go"), "").unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !f_gate.join("written").exists() {
        assert!(std::time::Instant::now() < end, "f never wrote its line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sup = env.system_init(&dir);
    let s = sup.wait_running("f");
    assert_eq!((s.pid, s.adopted), (f_pid, true), "{s:?}");
    let s = sup.wait_status("n", "adopted", |s| s.adopted);
    assert_eq!((s.state.as_str(), s.pid), ("starting", n_pid), "{s:?}");
    std::fs::write(n_gate.join("step"), "").unwrap();
    std::fs::write(n_gate.join("go"), "").unwrap();
    let s = sup.wait_running("n");
    assert_eq!((s.pid, s.text.as_str()), (n_pid, "serving"), "{s:?}");
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// Pings WATCHDOG=1 every 0.2 s, counting them in /gate/pings, until /gate/hang exists.
const PINGING: &str = r#"
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = os.environ["NOTIFY_SOCKET"]
open("/gate/usec", "w").write(os.environ.get("WATCHDOG_USEC", "-"))
s.sendto(b"READY=1", addr)
n = 0
while not os.path.exists("/gate/hang"):
    s.sendto(b"WATCHDOG=1", addr)
    n += 1
    open("/gate/pings.tmp", "w").write(str(n))
    os.rename("/gate/pings.tmp", "/gate/pings")
    time.sleep(0.2)
while True:
    time.sleep(1)
"#;

/// The notify watchdog: WATCHDOG_USEC is given; pings keep the service up past the
/// watchdog's time; once they stop, it is restarted with the reason.
fn watchdog_restarts_a_silent_service(runtime: &str) {
    let env = TestEnv::with_runtime(runtime);
    let census = env.census(&[]);
    let dir = env.bundles_dir("services");
    let w = python_bundle(&env, &dir, "w", PINGING);
    settings(&w, "ready: notify\nhealth: {watchdog: 1}\n");
    let gate = with_gate(&env, &w);
    let mut sup = env.system_init(&dir);
    let first = sup.wait_running("w");
    assert_eq!(
        std::fs::read_to_string(gate.join("usec")).unwrap(),
        "1000000"
    );
    // Two seconds of pings, twice the watchdog's time.
    sup.wait_until("10 pings", Duration::from_secs(30), || {
        let n: u32 = std::fs::read_to_string(gate.join("pings"))
            .ok()?
            .parse()
            .ok()?;
        (n >= 10).then_some(())
    });
    let s = sup.status("w");
    assert_eq!(
        (s.state.as_str(), s.pid, s.restarts),
        ("running", first.pid, 0)
    );
    std::fs::write(gate.join("hang"), "").unwrap();
    sup.wait_status("w", "restarted", |s| s.restarts >= 1);
    let log = sup.log();
    assert!(
        log.contains("w: watchdog: no WATCHDOG=1 within 1s; stopping it"),
        "{log}"
    );
    assert_eq!(sup.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

#[test]
fn watchdog_runc() {
    watchdog_restarts_a_silent_service("runc");
}

#[test]
fn watchdog_crun() {
    watchdog_restarts_a_silent_service("crun");
}
