//! The supervisor against bundles, settings, names and neighbours that do not play by the
//! rules: OCI hooks that never return, launches that fail under settings that say what to
//! do then, a bundle renamed under a running service, names that collide, a socket path
//! someone else took, and names and messages that would forge lines. Every wait is bounded
//! (a hang fails the test, it does not stall it), and the census shows what is left.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::{Supervisor, alive};
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const POLITE: &str = "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done";

/// A bound for anything that must not hang, generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn settings(bundle: &Path, v: serde_json::Value) {
    std::fs::write(bundle.join("service.json"), v.to_string()).unwrap();
}

/// A hook of `kind` that says it runs (`started` appears) and never returns. It works in
/// the bundle dir, so the census sees it if it is left.
fn never_returning_hook(env: &TestEnv, bundle: &Path, kind: &str, started: &Path) {
    let script = format!(
        "cd {} && touch {} && exec sleep 1000",
        bundle.display(),
        started.display()
    );
    env.edit_config(bundle, |c| {
        c["hooks"] = json!({kind: [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
}

/// The CLI with `args`, killed and failing the test if it has not ended within `limit`.
fn cli_within(env: &TestEnv, args: &[&str], limit: Duration) -> (Run, Duration) {
    let mut c = env.cli();
    c.args(args);
    run_within(c, limit, &format!("service {}", args.join(" ")))
}

fn wait_for_file(p: &Path, what: &str) {
    let end = Instant::now() + PATIENCE;
    while !p.exists() {
        assert!(
            Instant::now() < end,
            "{what}: {} never appeared",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to the supervisor; its exit code and how long it took. Fails the test past
/// `limit`.
fn terminate_within(sup: &mut Supervisor, limit: Duration) -> (i32, Duration) {
    let begun = Instant::now();
    let code = sup.terminate();
    let took = begun.elapsed();
    assert!(took < limit, "the supervisor took {took:?} to stop");
    (code, took)
}

/// A service whose `createRuntime` hook never returns stays `starting` only until someone
/// wants otherwise: `stop` cuts its start short at once (the runtime and the hook killed,
/// the half-made container cleared), a new start hangs the same way, and SIGTERM to the
/// supervisor cuts that one short too.
fn a_hook_holding_the_start(runtime: &str) {
    let env = TestEnv::with_runtime(runtime);
    let dir = env.bundles_dir("services");
    let started = env.dir.join("hook-started");
    let b = env.rw_bundle(&dir, "hooked", &["sh", "-c", POLITE]);
    write_runtime(
        &b,
        json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "scratch"}]}),
    );
    never_returning_hook(&env, &b, "createRuntime", &started);
    env.bundle(&dir, "free", &["sh", "-c", POLITE]);
    let census = env.census(&[]);
    let mut sup = env.system_init(&dir);
    let free = sup.wait_running("free").pid.unwrap();
    wait_for_file(&started, "the hook");
    assert_eq!(sup.status("hooked").state, "starting");

    let (r, took) = cli_within(&env, &["stop", "hooked"], PATIENCE);
    eprintln!("{runtime}: stop of a service held in a createRuntime hook took {took:?}");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hooked: stopped (its start was cut short)\n");
    let s = sup.status("hooked");
    assert_eq!((s.state.as_str(), s.code), ("stopped", 3), "{s:?}");
    // The hook, the runtime and what it had made are gone; the other service never noticed.
    nothing_left_of(&env, &b);
    assert_eq!(sup.status("free").pid, Some(free));

    // Started again, it hangs again: a start meanwhile is refused, and SIGTERM ends it all.
    std::fs::remove_file(&started).unwrap();
    let mut c = env.cli();
    c.args(["start", "hooked"]);
    let starter = std::thread::spawn(move || run_within(c, PATIENCE, "service start hooked").0);
    wait_for_file(&started, "the hook, again");
    let (r, _) = cli_within(&env, &["start", "hooked"], PATIENCE);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("hooked is being started already"),
        "{}",
        r.stderr
    );
    let (code, took) = terminate_within(&mut sup, PATIENCE);
    eprintln!("{runtime}: SIGTERM with a service held in a createRuntime hook took {took:?}");
    assert_eq!(code, 0);
    let r = starter.join().unwrap();
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("hooked: its start was cut short"),
        "{}",
        r.stderr
    );
    assert!(!alive(free));
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// Nothing of the service whose bundle is `b` is left while others run: no container, no
/// mount in its bundle, no process of its hooks or its runtime, no pid file.
fn nothing_left_of(env: &TestEnv, b: &Path) {
    let name = b.file_name().unwrap().to_string_lossy().into_owned();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let c = env.census(&[]);
        let left: Vec<String> = c
            .containers
            .iter()
            .filter(|n| **n == name)
            .chain(c.mounts.iter().filter(|m| Path::new(m).starts_with(b)))
            .chain(
                c.processes
                    .iter()
                    .filter(|p| p.contains("sleep 1000") || p.contains(" create ")),
            )
            .chain(
                c.state
                    .iter()
                    .filter(|f| f.ends_with(&format!("/{name}.pid"))),
            )
            .cloned()
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "left of {name}: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_create_hook_that_never_returns_is_cut_short_by_stop_and_sigterm() {
    a_hook_holding_the_start("runc");
}

#[test]
fn a_create_hook_that_never_returns_is_cut_short_through_crun() {
    a_hook_holding_the_start("crun");
}

/// A `poststop` hook that never returns holds `RUNTIME delete`: the delete is killed at its
/// bound with the hook, what it left is cleared, and the stop says so (the hook's work was
/// not done) instead of hanging in `stopping`.
fn a_hook_holding_the_stop(runtime: &str) {
    let env = TestEnv::with_runtime(runtime);
    let dir = env.bundles_dir("services");
    let started = env.dir.join("hook-started");
    let b = env.bundle(&dir, "hooked", &["sh", "-c", POLITE]);
    never_returning_hook(&env, &b, "poststop", &started);
    settings(&b, json!({"stopGrace": 2}));
    let census = env.census(&[]);
    let mut sup = env.system_init(&dir);
    sup.wait_running("hooked");
    let (r, took) = cli_within(&env, &["stop", "hooked"], PATIENCE);
    eprintln!("{runtime}: stop with a poststop hook that never returns took {took:?}");
    assert!(started.exists(), "the poststop hook never ran");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("hooked: its processes are gone (exit code 0), but it is not stopped")
            && r.stderr.contains(&format!(
                "`{runtime} delete` did not end within the timeout (10s) and was killed"
            )),
        "{}",
        r.stderr
    );
    let s = sup.status("hooked");
    assert_eq!(s.state, "failed", "{s:?}");
    assert!(s.reason.starts_with("cleanup failed: "), "{s:?}");
    // The grace (2 s, unused: the service ends on SIGTERM) plus the delete's bound (10 s),
    // with room for a loaded machine.
    assert!(took < Duration::from_secs(60), "{took:?}");
    // Started again, it runs (nothing of the last one is in the way) and stops the same.
    let (r, _) = cli_within(&env, &["start", "hooked"], PATIENCE);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, took) = terminate_within(&mut sup, PATIENCE);
    eprintln!("{runtime}: SIGTERM with a poststop hook that never returns took {took:?}");
    assert_eq!(code, 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

#[test]
fn a_poststop_hook_that_never_returns_bounds_the_stop() {
    a_hook_holding_the_stop("runc");
}

#[test]
fn a_poststop_hook_that_never_returns_bounds_the_stop_through_crun() {
    a_hook_holding_the_stop("crun");
}

/// A launch that fails follows the service's settings as an exit would: `restart: never`
/// leaves it down, `restartDelay` is the delay before the next try, `crashLoop` counts the
/// failed launches.
#[test]
fn a_failing_launch_follows_the_service_settings() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "never", &["/nonexistent"]);
    std::fs::write(b.join("service.yml"), "restart: never\n").unwrap();
    let b = env.bundle(&dir, "slow", &["/nonexistent"]);
    std::fs::write(
        b.join("service.yml"),
        "restartDelay: 30\nmaxRestartDelay: 60\n",
    )
    .unwrap();
    let b = env.bundle(&dir, "loop", &["/nonexistent"]);
    settings(
        &b,
        json!({"restartDelay": 0.05, "crashLoop": {"restarts": 1, "within": 600}}),
    );
    let census = env.census(&[]);
    let sup = env.system_init(&dir);
    let s = sup.wait_status("never", "down", |s| s.state != "starting");
    assert_eq!((s.state.as_str(), s.restarts), ("exited", 0), "{s:?}");
    assert!(
        s.reason.starts_with("create: ") && s.reason.contains("/nonexistent"),
        "{s:?}"
    );
    let s = sup.wait_status("slow", "restarting", |s| s.state == "restarting");
    assert!(s.reason.starts_with("restart 1 after 30s: "), "{s:?}");
    let s = sup.wait_status("loop", "failed", |s| s.state == "failed");
    assert!(
        s.reason.starts_with("crash loop: 2 exits within 600s: ") && s.restarts == 1,
        "{s:?}"
    );
    // The next try of `slow` is 30 s away: it is not tried again meanwhile (the defaults
    // would have tried three more times by now).
    std::thread::sleep(Duration::from_secs(4));
    let s = sup.status("slow");
    assert_eq!((s.state.as_str(), s.restarts), ("restarting", 1), "{s:?}");
    assert_eq!(sup.status("never").state, "exited");
    drop(sup);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// A bundle renamed under its running service: the cleanup cannot unmount what it mounted
/// by path. Whatever ends the service (a stop, a restart, a crash), it is never reported
/// stopped nor started again on top of what is left: the caller hears what could not be
/// undone, and the service is failed with the reason.
#[test]
fn a_cleanup_that_fails_is_reported_not_hidden() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let names = ["by-stop", "by-restart", "by-crash"];
    for n in names {
        let b = env.rw_bundle(&dir, n, &["sh", "-c", POLITE]);
        write_runtime(
            &b,
            json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "scratch"}]}),
        );
    }
    let sup = env.system_init(&dir);
    let mut pids = Vec::new();
    for n in names {
        pids.push(sup.wait_running(n).pid.unwrap());
    }
    let census = env.census(&[]);
    let moved = env.dir.join("moved");
    std::fs::create_dir(&moved).unwrap();
    for n in names {
        std::fs::rename(dir.join(n), moved.join(n)).unwrap();
    }
    let (r, _) = cli_within(&env, &["stop", "by-stop"], PATIENCE);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "by-stop: its processes are gone (exit code 0), but it is not stopped: cleanup failed: "
        ) && r.stderr.contains("unmount"),
        "{}",
        r.stderr
    );
    let (r, _) = cli_within(&env, &["restart", "by-restart"], PATIENCE);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("by-restart: its processes are gone"),
        "{}",
        r.stderr
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[2]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for n in names {
        let s = sup.wait_status(n, "failed", |s| s.state == "failed");
        assert!(s.reason.starts_with("cleanup failed: "), "{n}: {s:?}");
        assert!(s.reason.contains("unmount"), "{n}: {s:?}");
        assert_eq!((s.code, s.restarts, s.pid), (3, 0, None), "{n}: {s:?}");
    }
    // Their processes and containers are gone; what is left is the mounts the status
    // names, under the new name (the guard takes them down).
    assert!(pids.iter().all(|p| !alive(*p)));
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    let left = env.census(&[]).unkept_since(&census, &[&moved]);
    assert!(left.is_empty(), "{left:?}");
    assert!(
        names
            .iter()
            .all(|n| is_mounted(&moved.join(n).join("rootfs")))
    );
}

/// Out of descriptors (`ulimit -n 64` with 40 services): services fail to start, but the
/// control socket stays reachable (a descriptor kept in reserve is given up for a client),
/// and the log says each fault once in a while instead of once per try.
#[test]
fn out_of_descriptors_the_socket_still_answers_and_the_log_stays_quiet() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let names: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    for n in &names {
        env.bundle(&dir, n, &["sh", "-c", POLITE]);
    }
    let census = env.census(&[]);
    let mut sup = env.system_init_under(&dir, &[], &["prlimit", "--nofile=64"]);
    sup.wait_until("the socket", PATIENCE, || env.sock().exists().then_some(()));
    // Every service settles one way or another (running, failed for want of descriptors).
    let settled = |out: &str| {
        let states: Vec<&str> = out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        states.len() == names.len() && states.iter().all(|s| *s == "running" || *s == "failed")
    };
    let end = Instant::now() + Duration::from_secs(300);
    let out = loop {
        let (r, took) = cli_within(&env, &["list"], PATIENCE);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(took < Duration::from_secs(60), "list took {took:?}");
        if settled(&r.stdout) {
            break r.stdout;
        }
        assert!(
            Instant::now() < end,
            "never settled:\n{}\n{}",
            r.stdout,
            sup.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let failed = out.lines().filter(|l| l.contains(" failed ")).count();
    eprintln!("under 64 descriptors: {failed} of 40 services failed");
    // The supervisor ran out of descriptors meanwhile (else this test tests nothing).
    assert!(failed > 0, "{out}");
    // Served again and again: status, and list, while the services that run hold most of
    // the descriptors.
    for n in ["s00", "s39"] {
        let (r, _) = cli_within(&env, &["status", n], PATIENCE);
        assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    }
    let lines = |sup: &Supervisor| sup.log().lines().count();
    let before = lines(&sup);
    std::thread::sleep(Duration::from_secs(10));
    for _ in 0..20 {
        let (r, _) = cli_within(&env, &["list"], PATIENCE);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let grown = lines(&sup) - before;
    eprintln!("the supervisor's log grew by {grown} lines in 10 s and 20 requests");
    assert!(grown <= 20, "{}", sup.log());
    let (code, _) = terminate_within(&mut sup, PATIENCE);
    assert_eq!(code, 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}

/// A listener that takes connections and never answers, as a wedged supervisor would,
/// and one whose queue is full: the CLI gives up at its timeout, naming the socket, on
/// every command.
#[test]
fn the_cli_gives_up_on_a_supervisor_that_does_not_answer() {
    let env = TestEnv::new();
    let sock = env.dir.join("silent.sock");
    let silent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for args in [
        vec!["list"],
        vec!["status", "x"],
        vec!["stop", "x"],
        vec!["start", "x"],
        vec!["logs", "x"],
    ] {
        let mut c = env.lkinit();
        c.arg("--sock")
            .arg(&sock)
            .args(&args)
            .args(["--timeout", "1"]);
        let (r, took) = run_within(c, PATIENCE, &format!("{args:?} on a silent socket"));
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(&format!(
                "no answer from the supervisor on {} within 1s",
                sock.display()
            )),
            "{}",
            r.stderr
        );
        assert!(took >= Duration::from_secs(1), "{took:?}");
    }
    drop(silent);

    // A queue of one, taken: `connect` itself would wait.
    let full = env.dir.join("full.sock");
    let fd = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &nix::sys::socket::UnixAddr::new(&full).unwrap(),
    )
    .unwrap();
    nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
    let _queued = std::os::unix::net::UnixStream::connect(&full).unwrap();
    let mut c = env.lkinit();
    c.arg("--sock").arg(&full).args(["list", "--timeout", "1"]);
    let (r, _) = run_within(c, PATIENCE, "list on a full queue");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "no answer from the supervisor on {}: its queue of connections stayed full",
            full.display()
        )),
        "{}",
        r.stderr
    );
}

/// `a` and `a.out`: the stderr log of `a.out` (`a.out.log`) would be the stdout log of
/// `a`. Names ending in `.out` are refused (the service is listed, failed, with the reason)
/// and nothing of theirs touches another's log; `a` keeps LinuxKit's file names.
#[test]
fn no_service_name_maps_to_another_services_log() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let talk = |who: &str| format!("echo {who}-out; echo {who}-err >&2; {POLITE}");
    env.bundle(&dir, "a", &["sh", "-c", &talk("a")]);
    env.bundle(&dir, "a.out", &["sh", "-c", &talk("x")]);
    let sup = env.system_init(&dir);
    sup.wait_running("a");
    let s = sup.wait_status("a.out", "failed", |s| s.state == "failed");
    let why = format!(
        "`a.out` cannot be a service name: its stderr log {} would be the stdout log of a \
         service `a`",
        env.log_dir.join("a.out.log").display()
    );
    assert!(s.reason.starts_with(&why), "{s:?}");
    // Nor by hand: start, restart and logs say why; a bundle added later likewise.
    env.bundle(&dir, "b.out", &["sh", "-c", &talk("y")]);
    for args in [
        ["start", "a.out"],
        ["restart", "a.out"],
        ["logs", "a.out"],
        ["start", "b.out"],
    ] {
        let (r, _) = cli_within(&env, &args, PATIENCE);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stderr.contains("cannot be a service name"),
            "{}",
            r.stderr
        );
    }
    let out = sup.wait_until("a's logs", PATIENCE, || {
        (env.log("a.log") == "a-err\n").then(|| env.log("a.out.log"))
    });
    assert_eq!(out.unwrap(), "a-out\nup\n");
    let mut logs: Vec<String> = std::fs::read_dir(&env.log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    logs.sort();
    assert_eq!(logs, ["a.log", "a.out.log"]);
    assert_eq!(env.containers(), vec!["a".to_string()]);
}

/// The socket's directory is one only root can write: made mode 0700 when missing, and a
/// directory others could bind in (the path taken first, the CLI answered by them) is
/// refused, naming it and its mode.
#[test]
fn the_socket_directory_is_roots_alone() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let services = env.bundles_dir("services");
    let supervise = |sock: &Path| {
        let mut c = env.lkinit();
        c.arg("--sock")
            .arg(sock)
            .arg("system-init")
            .arg("--path")
            .arg(&services)
            .arg("--log-dir")
            .arg(&env.log_dir);
        c
    };
    for (name, mode) in [("sticky", 0o1777), ("group", 0o775), ("others", 0o757)] {
        let d = env.dir.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        let (r, _) = run_within(supervise(&d.join("sock")), PATIENCE, name);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(&format!(
                "the socket's directory {} is writable by others (mode {mode:04o})",
                d.display()
            )),
            "{}",
            r.stderr
        );
        assert!(!d.join("sock").exists());
    }
    let d = env.dir.join("theirs");
    std::fs::create_dir(&d).unwrap();
    nix::unistd::chown(&d, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let (r, _) = run_within(supervise(&d.join("sock")), PATIENCE, "theirs");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "the socket's directory {} belongs to uid 65534",
            d.display()
        )),
        "{}",
        r.stderr
    );
    // A missing one is made, root's alone.
    let sup = env.system_init(&services);
    let run = env.sock().parent().unwrap().to_path_buf();
    let m = std::fs::metadata(&run).unwrap();
    assert_eq!(
        (
            m.permissions().mode() & 0o7777,
            std::os::unix::fs::MetadataExt::uid(&m)
        ),
        (0o700, 0)
    );
    assert_eq!(sup.cli(&["list"]).code, 0);
}

/// Someone else's process on the socket path (bound first in a directory anyone can
/// write): the CLI checks who answers before it says anything, and refuses, naming the
/// socket and the uid; it never shows their services nor takes their descriptors.
#[test]
fn the_cli_trusts_only_root_on_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    // Debian's (a python3 found first in PATH may be out of the unprivileged user's reach).
    ensure_installed(&["python3", "setpriv"]);
    let env = TestEnv::new();
    let shared = env.dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let sock = shared.join("service.sock");
    let heard = shared.join("heard");
    let fake = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
open(sys.argv[2] + ".ready", "w").close()
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        data = c.recv(4096)
    except OSError:
        data = b""
    open(sys.argv[2], "ab").write(data)
    try:
        c.sendall(b'{"v":1,"ok":true,"services":[{"name":"fake","state":"running","pid":1,"restarts":0,"since":0}],"message":"fake: stopped"}\n')
    except OSError:
        pass
    c.close()
"#;
    struct Fake(std::process::Child);
    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _fake = Fake(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["/usr/bin/python3", "-c"])
            .arg(fake)
            .arg(&sock)
            .arg(&heard)
            .spawn()
            .unwrap(),
    );
    wait_for_file(&shared.join("heard.ready"), "the fake supervisor");
    for args in [
        vec!["list"],
        vec!["status", "fake"],
        vec!["stop", "fake"],
        vec!["logs", "fake"],
    ] {
        let mut c = env.lkinit();
        c.arg("--sock").arg(&sock).args(&args);
        let (r, _) = run_within(c, PATIENCE, &format!("{args:?} to someone else's socket"));
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
        assert!(
            r.stderr
                .contains(&format!("refusing to talk to {}: ", sock.display()))
                && r.stderr.contains("runs as uid 65534, not as root"),
            "{}",
            r.stderr
        );
    }
    // Nothing was even asked of it.
    assert_eq!(std::fs::read(&heard).unwrap_or_default(), b"");
    // And a supervisor refuses that directory.
    let mut c = env.lkinit();
    c.arg("--sock")
        .arg(&sock)
        .args(["system-init", "--path"])
        .arg(env.bundles_dir("services"))
        .arg("--log-dir")
        .arg(&env.log_dir);
    let (r, _) = run_within(c, PATIENCE, "a supervisor on that socket");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("is writable by others (mode 1777)"),
        "{}",
        r.stderr
    );
}

/// A message that quotes a newline (a runtime's error about a cgroup path that holds one)
/// cannot forge a line: not in `list`'s table, `status`, a command's answer, the
/// supervisor's log, nor onboot's report.
#[test]
fn forged_lines_stay_on_one_line() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let forged = "forged      running     4711         0";
    let path = format!("/{}/x\n{forged}", env.cgroup_parent);
    for parent in [&dir, &env.bundles_dir("onboot")] {
        let b = env.bundle(parent, "g", &["sh", "-c", POLITE]);
        env.edit_config(&b, |c| c["linux"]["cgroupsPath"] = json!(path));
    }
    env.bundle(&dir, "fine", &["sh", "-c", POLITE]);
    let no_forged_line = |what: &str, text: &str| {
        assert!(
            !text.lines().any(|l| l.starts_with("forged")),
            "{what}: a forged line:\n{text}"
        );
    };
    let sup = env.system_init(&dir);
    sup.wait_running("fine");
    let s = sup.wait_status("g", "failed to start", |s| s.reason.contains("forged"));
    assert!(s.reason.contains("\\nforged"), "{s:?}");
    let (r, _) = cli_within(&env, &["list"], PATIENCE);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    no_forged_line("list", &r.stdout);
    let (r, _) = cli_within(&env, &["status", "g"], PATIENCE);
    no_forged_line("status", &r.stdout);
    assert!(
        r.stdout.lines().all(|l| l.contains(':')),
        "status:\n{}",
        r.stdout
    );
    let (r, _) = cli_within(&env, &["restart", "g"], PATIENCE);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    no_forged_line("restart", &r.stderr);
    no_forged_line("the supervisor's log", &sup.log());
    drop(sup);
    let r = env.onboot(&env.dir.join("onboot"), &[]);
    assert_eq!(r.code, 1);
    // The report line holds all of the runtime's message (its stdout also carries what
    // the runtime wrote to the container's stderr, as it was written: that is output).
    let l = r.line("g");
    assert!(
        l.contains("\\nforged") && l.ends_with(": invalid argument"),
        "{l}"
    );
    no_forged_line("onboot's log", &r.stderr);
}
