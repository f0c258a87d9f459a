//! The supervisor under faults and repetition: a service that crash-loops, many start/stop
//! cycles, and the supervisor killed while it starts services. Nothing may pile up (the
//! census: containers, mounts, cgroups, state files, processes; the supervisor's own
//! descriptors and memory through /proc), and after a kill the next supervisor must leave
//! each service running exactly once.
//!
//! `LKINIT_CYCLES` changes the number of start/stop cycles (scripts/stress.sh runs 1000).
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::{Supervisor, alive};
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const POLITE: &str = "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done";

fn settings(bundle: &Path, v: serde_json::Value) {
    std::fs::write(bundle.join("service.json"), v.to_string()).unwrap();
}

/// One request on the control socket; the answer, parsed.
fn request(sock: &Path, op: &str, name: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(sock).expect("the supervisor listens");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    writeln!(s, r#"{{"v":1,"op":"{op}","name":"{name}"}}"#).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("`{out}`: {e}"))
}

/// The supervisor's descriptors, numbers aside, once they have settled.
fn settled_fds(sup: &Supervisor, like: Option<&[String]>) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let now = ProcView::of(sup.pid(), "").fd_kinds();
        if like.is_none_or(|l| l == now) || Instant::now() > end {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crash_looping_service_leaves_nothing_behind() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.rw_bundle(&dir, "crashy", &["sh", "-c", "echo crashing; exit 3"]);
    write_runtime(
        &b,
        json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "scratch"}],
               "mkdir": ["made/here"]}),
    );
    settings(
        &b,
        json!({"restartDelay": 0.01, "maxRestartDelay": 0.02,
               "crashLoop": {"restarts": 25, "within": 600}}),
    );
    env.bundle(&dir, "steady", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    let steady = sup.wait_running("steady").pid.unwrap();
    let failed = |sup: &Supervisor| {
        let s = sup.wait_status("crashy", "failed", |s| s.state == "failed");
        assert_eq!(
            (s.restarts, s.reason.as_str()),
            (25, "crash loop: 26 exits within 600s")
        );
    };
    failed(&sup);
    let census = env.census(&[]);
    let fds = settled_fds(&sup, None);
    // Started on purpose, it loops again: 26 more launches and cleanups.
    assert_eq!(request(&env.sock(), "start", "crashy")["ok"], true);
    sup.wait_status("crashy", "looping", |s| s.restarts > 0);
    failed(&sup);
    assert_eq!(env.log("crashy.out.log"), "crashing\n".repeat(52));
    env.census(&[]).assert_nothing_added_since(&census);
    assert_eq!(settled_fds(&sup, Some(&fds)), fds);
    // Nothing of crashy is left, and the other service never noticed.
    assert_eq!(env.containers(), vec!["steady".to_string()]);
    assert!(!b.join("tmp").exists() && !b.join("rootfs/made").exists());
    assert_eq!(sup.status("steady").pid, Some(steady));
    let v = ProcView::of(sup.pid(), "");
    assert!(v.zombies().is_empty(), "{:?}", v.zombies());
}

fn cycles() -> usize {
    std::env::var("LKINIT_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[test]
fn start_stop_cycles_leave_nothing_and_memory_stays_flat() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let ns = env.dir.join("ns");
    // Every kind of step a launch makes and a stop undoes: a writable root, a runtime
    // mount and mkdir inside it, a link in its own namespace, a namespace bind (re-pointed
    // at each start).
    let b = env.rw_bundle(&dir, "svc", &["sh", "-c", POLITE]);
    write_runtime(
        &b,
        json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "scratch"}],
               "mkdir": ["made/here"],
               "interfaces": [{"name": env.lname(), "add": "ifb"}],
               "bindNS": {"uts": ns.join("uts")}}),
    );
    settings(&b, json!({"stopGrace": 5}));
    let sup = env.system_init(&dir);
    sup.wait_running("svc");
    let sock = env.sock();
    let stop = || {
        let r = request(&sock, "stop", "svc");
        assert_eq!(r["ok"], true, "{r}");
    };
    let start = || {
        let r = request(&sock, "start", "svc");
        assert_eq!(r["ok"], true, "{r}");
        i32::try_from(r["service"]["pid"].as_i64().unwrap()).unwrap()
    };
    // The first cycle makes what stays (the bind and its file, the runtime's cgroup
    // parent); the census starts after it.
    stop();
    start();
    stop();
    let census = env.census(&[&ns]);
    let n = cycles();
    let mut views: Vec<(Vec<String>, ProcView)> = Vec::new();
    let mut last_pid = 0;
    for i in 1..=n {
        let pid = start();
        assert_ne!(pid, last_pid);
        last_pid = pid;
        assert!(is_mounted(&b.join("rootfs/scratch")));
        stop();
        assert!(!alive(pid));
        if i == n / 2 || i == n {
            let like = views.first().map(|(f, _)| f.clone());
            let fds = settled_fds(&sup, like.as_deref());
            views.push((fds, ProcView::of(sup.pid(), "")));
        }
    }
    env.census(&[&ns]).assert_nothing_added_since(&census);
    assert!(env.containers().is_empty());
    let (mid, end) = (&views[0], &views[1]);
    assert_eq!(mid.0, end.0, "descriptors after {} and {n} cycles", n / 2);
    assert!(end.1.zombies().is_empty(), "{:?}", end.1.zombies());
    eprintln!(
        "cycles: {n} start/stop cycles; supervisor VmRSS {} kB after {}, {} kB after {n}; \
         VmHWM {} kB",
        mid.1.vm_rss_kb,
        n / 2,
        end.1.vm_rss_kb,
        end.1.vm_hwm_kb
    );
    assert!(
        end.1.vm_rss_kb <= mid.1.vm_rss_kb + 1024,
        "the supervisor grew from {} kB to {} kB over the second half",
        mid.1.vm_rss_kb,
        end.1.vm_rss_kb
    );
}

/// Each service runs exactly once: one container each, its rootfs mounted once, one init
/// (and its children) rooted in it, nothing else of lkinit's runtime still running.
fn each_running_once(env: &TestEnv, sup: &Supervisor, dir: &Path, names: &[&str]) {
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut got = env.containers();
    got.sort();
    assert_eq!(got, want, "containers");
    for n in names {
        let s = sup.wait_running(n);
        let rootfs = dir.join(n).join("rootfs");
        assert_eq!(mount_count(&rootfs), 1, "{n}: rootfs mounts");
        let pid = s.pid.unwrap();
        assert!(alive(pid), "{n}");
    }
    // No runtime process of an earlier supervisor is still at work.
    let runc: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.starts_with("runc") && cmd.contains(&*env.runtime_root.to_string_lossy()))
                .then_some(cmd)
        })
        .collect();
    assert!(runc.is_empty(), "{runc:?}");
}

#[test]
fn a_supervisor_killed_while_starting_services_is_replaced_cleanly() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let names = ["a", "b", "c", "d"];
    for n in names {
        let b = env.rw_bundle(&dir, n, &["sh", "-c", POLITE]);
        write_runtime(
            &b,
            json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "scratch"}]}),
        );
    }
    let census = env.census(&[]);
    let (mut interrupted, mut adopted) = (0, 0);
    // Killed at different moments of the start: before, during and after the launches.
    for delay_ms in [0u64, 20, 50, 100, 200, 400] {
        let mut first = env.system_init_nowait(&dir);
        std::thread::sleep(Duration::from_millis(delay_ms));
        first.kill9();
        let mut second = env.system_init(&dir);
        for n in names {
            second.wait_running(n);
        }
        each_running_once(&env, &second, &dir, &names);
        let log = second.log();
        interrupted += log
            .matches("was being started when the last supervisor ended")
            .count();
        adopted += log.matches(": adopted, pid").count();
        assert_eq!(second.terminate(), 0);
        assert!(env.containers().is_empty(), "{:?}", env.containers());
    }
    // The lock file stays (the lock is the flock on it, not its existence).
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
    // Which moments the kills hit depends on the machine; what matters is the result.
    eprintln!("killed mid start: {interrupted} launches cleared, {adopted} services adopted");
}

#[test]
fn a_supervisor_killed_while_the_runtime_hangs_in_create_is_replaced_cleanly() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let gate = env.dir.join("gate-open");
    let started = env.dir.join("hook-started");
    let b = env.bundle(&dir, "gated", &["sh", "-c", POLITE]);
    // runc 1.1 runs poststart hooks inside `create`: the supervisor waits on it there.
    let script = format!(
        "cd {}; touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        b.display(),
        started.display(),
        gate.display()
    );
    env.edit_config(&b, |c| {
        c["hooks"] = json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
    env.bundle(&dir, "free", &["sh", "-c", POLITE]);
    let census = env.census(&[]);
    let mut first = env.system_init(&dir);
    first.wait_running("free");
    assert!(eventually(|| started.exists()), "the hook never ran");
    assert_eq!(first.status("gated").state, "starting");
    first.kill9();
    std::fs::remove_file(&started).unwrap();
    // The next supervisor clears what the first left, and starts it again; the hook holds
    // that start too until the gate opens.
    let mut second = env.system_init(&dir);
    assert!(eventually(|| started.exists()), "the hook never ran again");
    std::fs::write(&gate, "").unwrap();
    second.wait_running("gated");
    each_running_once(&env, &second, &dir, &["free", "gated"]);
    // The first's `create` (hung in the same hook) was ended before anything else.
    let log = second.log();
    assert!(
        log.contains("a runtime command of the last supervisor was still running")
            && log.contains(" create --bundle ")
            && log.contains("gated.pid gated); killing it"),
        "{log}"
    );
    assert_eq!(second.terminate(), 0);
    let lock = env.state_dir.join("supervisor.lock");
    env.assert_census_settles(&census, &[], &[&lock]);
}
