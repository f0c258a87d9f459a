//! What lkinit's children inherit. lkinit is started here the way a careless parent would
//! start it: signals ignored and blocked, a descriptor without close-on-exec, a systemd
//! notify socket in the environment. Containers (through runc and crun, on the `run` and
//! the create/start path) and commands run by `service exec` must still start with stdin,
//! stdout and stderr only, no blocked or ignored signal, and none of that environment;
//! lkinit itself keeps every descriptor above stdio close-on-exec.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Signals a shell or `nohup` leaves ignored, and a few more.
const IGNORED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
];
/// The descriptor number the inherited file gets.
const INHERITED_FD: i32 = 9;

/// Makes `c` start with IGNORED ignored, every signal blocked, `file` on INHERITED_FD
/// without close-on-exec, and a notify socket and socket activation in its environment.
fn dirty(c: &mut Command, file: &std::fs::File) {
    let fd = file.as_raw_fd();
    c.env("NOTIFY_SOCKET", "/run/lkinit-test-no-such/notify.sock")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1");
    // SAFETY: only async-signal-safe calls (sigaction, sigprocmask, dup2) after the fork.
    unsafe {
        c.pre_exec(move || {
            let mut ign: libc::sigaction = std::mem::zeroed();
            ign.sa_sigaction = libc::SIG_IGN;
            for s in IGNORED {
                libc::sigaction(s, &ign, std::ptr::null_mut());
            }
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            if libc::dup2(fd, INHERITED_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn inherited_file(env: &TestEnv) -> std::fs::File {
    let p = env.dir.join("inherited");
    std::fs::write(&p, "lkinit's parent's file\n").unwrap();
    std::fs::File::open(p).unwrap()
}

/// `SigBlk` and `SigIgn` of a /proc/PID/status text that follows `marker` in `out`.
fn sig_masks(out: &str, marker: &str) -> (String, String) {
    let part = out
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker} in:\n{out}"));
    let field = |k: &str| {
        part.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} after {marker}"))
            .trim()
            .to_string()
    };
    (field("SigBlk:"), field("SigIgn:"))
}

/// The descriptors `ls -l /proc/self/fd/` shows with a target, but ls's own directory.
fn open_fds(out: &str, marker: &str) -> Vec<(u32, String)> {
    let part = out.split(marker).nth(1).unwrap_or("");
    part.lines()
        .take_while(|l| !l.starts_with("=="))
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let n = left.split_whitespace().last()?.parse().ok()?;
            Some((n, target.to_string()))
        })
        // GNU ls shows its own directory descriptor; busybox ls has closed it by then.
        .filter(|(_, t)| !(t.starts_with("/proc/") && t.ends_with("/fd")))
        .collect()
}

/// Checks what `cat /proc/self/status`, `ls -l /proc/self/fd/` and (with `check_env`)
/// `env` printed after their markers.
fn check_showing(out: &str, what: &str, check_env: bool) {
    let (blk, ign) = sig_masks(out, "==status");
    assert_eq!(blk, "0000000000000000", "{what}: blocked signals");
    assert_eq!(ign, "0000000000000000", "{what}: ignored signals");
    let fds = open_fds(out, "==fds");
    let nums: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(nums, vec![0, 1, 2], "{what}: descriptors {fds:?}");
    if !check_env {
        return;
    }
    let env_part = out.split("==env").nth(1).unwrap_or("");
    assert!(env_part.contains("PATH="), "{what}: {out}");
    for var in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"] {
        assert!(
            !env_part.contains(var),
            "{what}: {var} reached the container"
        );
    }
}

#[test]
fn containers_start_clean_through_runc() {
    let env = TestEnv::new();
    let file = inherited_file(&env);
    for bound in [false, true] {
        let ob = env.bundles_dir(if bound { "bound" } else { "run" });
        for (name, script) in [
            ("1-status", "echo ==status; exec cat /proc/self/status"),
            ("2-fds", "echo ==fds; exec ls -l /proc/self/fd/"),
            ("3-env", "echo ==env; exec env"),
        ] {
            let b = env.bundle(&ob, name, &["sh", "-c", script]);
            if bound {
                write_runtime(
                    &b,
                    json!({"bindNS": {"uts": env.dir.join("ns").join(name)}}),
                );
            }
        }
        let probe = env.probe(&ob, "4-probe");
        let mut c = env.onboot_command(&ob, &[]);
        dirty(&mut c, &file);
        let mut bg = Background::spawn(c);
        let lk = probe.view(&mut bg, || {}).expect("the probe ran");
        let r = bg.finish();
        assert_eq!(r.code, 0);
        let what = if bound { "create/start" } else { "run" };
        check_showing(&r.stdout, what, true);
        assert!(
            lk.inheritable.is_empty(),
            "lkinit kept inheritable descriptors: {:?} ({lk:?})",
            lk.inheritable
        );
        assert!(lk.fds.contains_key(&INHERITED_FD), "{:?}", lk.fds);
        // Only SIGCHLD (17) is blocked in lkinit: what its parent blocked is not.
        assert_eq!(lk.sig_blk, "0000000000010000", "lkinit's own mask");
    }
}

#[test]
fn containers_start_clean_through_crun() {
    let env = TestEnv::with_runtime("crun");
    let file = inherited_file(&env);
    let ob = env.bundles_dir("onboot");
    for (name, script) in [
        ("1-status", "echo ==status; exec cat /proc/self/status"),
        ("2-fds", "echo ==fds; exec ls -l /proc/self/fd/"),
        ("3-env", "echo ==env; exec env"),
    ] {
        env.bundle(&ob, name, &["sh", "-c", script]);
    }
    let mut c = crun_onboot_command(&env, &ob, &[]);
    dirty(&mut c, &file);
    let r = Run::of(c);
    assert_eq!(r.code, 0);
    check_showing(&r.stdout, "crun", true);
}

/// A container started with runc directly, as a supervisor would leave it running.
fn start_service(env: &TestEnv) -> String {
    let name = unique("svc");
    let parent = env.bundles_dir("services");
    let bundle = env.bundle(&parent, &name, &["sleep", "1000"]);
    env.run_detached_by_hand(&bundle, &name);
    name
}

#[test]
fn commands_run_by_exec_start_clean() {
    let env = TestEnv::new();
    let file = inherited_file(&env);
    let svc = start_service(&env);
    // Inside the service (its root: busybox) and beside it (the host's tools, --ns net).
    for ns in [None, Some("net")] {
        let mut out = String::new();
        for (marker, cmd) in [
            ("==status", vec!["cat", "/proc/self/status"]),
            ("==fds", vec!["ls", "-l", "/proc/self/fd/"]),
            ("==env", vec!["env"]),
        ] {
            let mut c = env.lkinit();
            c.arg("exec");
            if let Some(ns) = ns {
                c.args(["--ns", ns]);
            }
            c.arg(&svc).arg("--").args(&cmd);
            dirty(&mut c, &file);
            let r = Run::of(c);
            assert_eq!(r.code, 0, "{}", r.stderr);
            out.push_str(&format!("{marker}\n{}", r.stdout));
        }
        // With the service's mount namespace, the command gets the environment of the
        // service's init; without, lkinit's own (as documented), which is not checked.
        check_showing(&out, &format!("exec --ns {ns:?}"), ns.is_none());
    }
}

#[test]
fn services_start_clean() {
    let env = TestEnv::new();
    let file = inherited_file(&env);
    let dir = env.bundles_dir("services");
    for (name, script) in [
        ("status", "exec cat /proc/self/status"),
        ("fds", "exec ls -l /proc/self/fd/"),
        ("env", "exec env"),
    ] {
        let b = env.bundle(&dir, name, &["sh", "-c", script]);
        std::fs::write(b.join("service.json"), r#"{"restart": "never"}"#).unwrap();
    }
    let mut c = env.cli();
    c.arg("system-init")
        .arg("--path")
        .arg(&dir)
        .arg("--log-dir")
        .arg(&env.log_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    dirty(&mut c, &file);
    let mut sup = c.spawn().unwrap();
    let exited = |n: &str| {
        let o = env.cli().args(["status", n]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).contains("state:    exited")
    };
    let all = eventually(|| ["status", "fds", "env"].iter().all(|n| exited(n)));
    let view = ProcView::of(pid_of(&sup), "");
    // SAFETY: kill(2) of the supervisor this test started.
    unsafe { libc::kill(pid_of(&sup), libc::SIGTERM) };
    let _ = sup.wait();
    assert!(all, "the services did not all run");
    let out = format!(
        "==status\n{}==fds\n{}==env\n{}",
        env.log("status.out.log"),
        env.log("fds.out.log"),
        env.log("env.out.log")
    );
    check_showing(&out, "service", true);
    assert!(view.inheritable.is_empty(), "{:?}", view.inheritable);
}
