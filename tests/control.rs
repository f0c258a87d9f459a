//! The supervisor's control socket against clients that do not play by the rules: garbage,
//! wrong types, nesting, NUL bytes, oversized and half-sent requests, clients that vanish
//! before or after asking, hostile service names, many clients at once. Each gets an error
//! (or its answer), and the supervisor serves on: its service untouched, and its own
//! descriptors as they were (seen through /proc), so no connection is leaked.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::Supervisor;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const POLITE: &str = "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done";

/// Sends `bytes` (then closes the writing side when `close` says so) and reads the answer
/// line; writes may fail once the supervisor has answered and hung up.
fn ask(sock: &Path, bytes: &[u8], close: bool) -> String {
    let mut s = UnixStream::connect(sock).expect("the supervisor listens");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    if close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(sock: &Path, line: &str) -> serde_json::Value {
    let a = ask(sock, format!("{line}\n").as_bytes(), false);
    serde_json::from_str(a.trim_end()).unwrap_or_else(|e| panic!("{line}: `{a}`: {e}"))
}

fn assert_error(sock: &Path, bytes: &[u8], close: bool, why: &str) {
    let a = ask(sock, bytes, close);
    assert_eq!(a.matches('\n').count(), 1, "one line: {a:?}");
    let v: serde_json::Value = serde_json::from_str(a.trim_end()).unwrap();
    assert_eq!(v["ok"], false, "{a}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(bytes));
}

/// The supervisor's descriptors, numbers aside.
fn sup_fds(sup: &Supervisor) -> Vec<String> {
    ProcView::of(sup.pid(), "").fd_kinds()
}

/// The supervisor's descriptors once they have stopped changing: right after a service
/// comes up, or after a CLI call, the supervisor may still hold a connection or a pidfd for
/// the step that is finishing, which a baseline must not count.
fn fds_quiet(sup: &Supervisor) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    let mut last = sup_fds(sup);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = sup_fds(sup);
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// Which kinds of descriptor differ in number between `now` and `want`, for a readable
/// failure.
fn fd_diff(now: &[String], want: &[String]) -> String {
    let mut count = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for f in now {
        count.entry(f).or_default().0 += 1;
    }
    for f in want {
        count.entry(f).or_default().1 += 1;
    }
    let differ: Vec<String> = count
        .iter()
        .filter(|(_, (n, w))| n != w)
        .map(|(f, (n, w))| format!("{f}: {n} now, {w} before"))
        .collect();
    format!("descriptors changed: {}", differ.join("; "))
}

/// Polls until the supervisor's descriptors are `want` again (a connection being torn
/// down may hold one for a moment).
fn fds_settle(sup: &Supervisor, want: &[String]) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let now = sup_fds(sup);
        if now == want || Instant::now() > end {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_requests_get_an_error_and_the_supervisor_serves_on() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "svc", &["sh", "-c", POLITE]);
    let sup = env.system_init(&dir);
    let pid = sup.wait_running("svc").pid.unwrap();
    let sock = env.sock();
    let before = fds_quiet(&sup);

    let deep = format!("{}\n", "[".repeat(4000));
    let at_limit = format!(
        "{{\"v\":1,\"op\":\"list\"}}{}\n",
        " ".repeat(4096 - r#"{"v":1,"op":"list"}"#.len())
    );
    let over_limit = format!(
        "{{\"v\":1,\"op\":\"list\"}}{}\n",
        " ".repeat(4097 - r#"{"v":1,"op":"list"}"#.len())
    );
    let cases: Vec<(Vec<u8>, bool, &str)> = vec![
        (b"not json\n".to_vec(), false, "bad request"),
        (b"\xff\xfe\xfd\n".to_vec(), false, "bad request"),
        (b"\0\0\0\n".to_vec(), false, "bad request"),
        (b"\n".to_vec(), false, "bad request"),
        (b"[]\n".to_vec(), false, "no protocol version"),
        (
            br#"{"v":"1","op":"list"}"#.to_vec(),
            true,
            "no protocol version",
        ),
        (
            br#"{"v":-1,"op":"list"}"#.to_vec(),
            true,
            "no protocol version",
        ),
        (
            br#"{"v":99999999999999999999,"op":"list"}"#.to_vec(),
            true,
            "bad request",
        ),
        (
            br#"{"v":2,"op":"list"}"#.to_vec(),
            true,
            "unsupported protocol version 2",
        ),
        (br#"{"v":1,"op":5}"#.to_vec(), true, "bad request"),
        (
            br#"{"v":1,"op":"stop","name":5}"#.to_vec(),
            true,
            "bad request",
        ),
        (
            br#"{"v":1,"op":"stop","name":null}"#.to_vec(),
            true,
            "`stop` needs a `name`",
        ),
        (
            br#"{"v":1,"op":"list","x":{"y":[1,2]}}"#.to_vec(),
            true,
            "unknown field `x`",
        ),
        (
            br#"{"v":1,"op":"kill-everything"}"#.to_vec(),
            true,
            "unknown op",
        ),
        (deep.into_bytes(), false, "recursion limit"),
        // Half sent, then the client stops writing: what came is all there is.
        (br#"{"v":1,"op":"sta"#.to_vec(), true, "bad request"),
        (Vec::new(), true, "bad request"),
        // Oversized: a line past the limit, and a stream that never ends a line.
        (over_limit.into_bytes(), false, "too long"),
        (vec![b'a'; 1 << 20], false, "too long"),
        // Names that are not bundles of the services directory.
        (
            br#"{"v":1,"op":"start","name":"../../etc"}"#.to_vec(),
            true,
            "not a bundle directory",
        ),
        (
            br#"{"v":1,"op":"start","name":"a/b"}"#.to_vec(),
            true,
            "not a bundle directory",
        ),
        (
            br#"{"v":1,"op":"start","name":"."}"#.to_vec(),
            true,
            "not a bundle directory",
        ),
        (
            br#"{"v":1,"op":"restart","name":"x\ny"}"#.to_vec(),
            true,
            "not a bundle directory",
        ),
        (
            br#"{"v":1,"op":"stop","name":"../svc"}"#.to_vec(),
            true,
            "no service `../svc`",
        ),
        (
            br#"{"v":1,"op":"logs","name":"/etc/shadow"}"#.to_vec(),
            true,
            "no service",
        ),
    ];
    for (bytes, close, why) in &cases {
        assert_error(&sock, bytes, *close, why);
    }
    // Right at the limit is still a request.
    assert_eq!(at_limit.len(), 4096 + 1);
    let a = ask(&sock, at_limit.as_bytes(), false);
    assert!(a.starts_with(r#"{"v":1,"ok":true"#), "{a}");
    // Nothing was made for the hostile names.
    assert!(!dir.join("a").exists() && !env.dir.join("etc").exists());

    // Half sent and held open: after the supervisor's patience runs out, an error; in the
    // meantime it answers everyone else.
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.write_all(br#"{"v":1,"op":"li"#).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            answer(&sock, r#"{"v":1,"op":"status","name":"svc"}"#)["ok"],
            true
        );
    }
    let mut late = String::new();
    let _ = slow.read_to_string(&mut late);
    assert!(late.contains("nothing arrived in time"), "{late}");

    // Clients that vanish: before sending, after sending without reading the answer, and
    // after asking for logs (whose descriptors are then never received).
    for _ in 0..50 {
        drop(UnixStream::connect(&sock).unwrap());
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"{\"v\":1,\"op\":\"list\"}\n").unwrap();
        drop(s);
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"{\"v\":1,\"op\":\"logs\",\"name\":\"svc\"}\n")
            .unwrap();
        drop(s);
    }

    // Served on: the service untouched, the CLI answered, no descriptor left behind.
    let s = sup.status("svc");
    assert_eq!((s.state.as_str(), s.pid), ("running", Some(pid)));
    assert_eq!(sup.cli(&["list"]).code, 0);
    let now = fds_settle(&sup, &before);
    assert!(now == before, "{}", fd_diff(&now, &before));
    let v = ProcView::of(sup.pid(), "");
    assert!(v.zombies().is_empty(), "{:?}", v.zombies());
    assert!(v.inheritable.is_empty(), "{:?}", v.inheritable);
}

#[test]
fn many_clients_at_once() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    for n in ["a", "b", "c"] {
        env.bundle(&dir, n, &["sh", "-c", POLITE]);
    }
    let sup = env.system_init(&dir);
    let pids: Vec<i32> = ["a", "b", "c"]
        .iter()
        .map(|n| sup.wait_running(n).pid.unwrap())
        .collect();
    let sock = env.sock();
    let before = fds_quiet(&sup);
    // 100 raw clients at the same moment, each asking several things in turn, and 20 CLI
    // processes beside them.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (sock, barrier) = (sock.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let name = ["a", "b", "c"][i % 3];
                let mut oks = 0;
                for line in [
                    r#"{"v":1,"op":"list"}"#.to_string(),
                    format!(r#"{{"v":1,"op":"status","name":"{name}"}}"#),
                    format!(r#"{{"v":1,"op":"logs","name":"{name}"}}"#),
                ] {
                    let v = answer(&sock, &line);
                    if v["ok"] == true {
                        oks += 1;
                    }
                }
                oks
            })
        })
        .collect();
    let clis: Vec<_> = (0..20)
        .map(|_| {
            let mut c = env.cli();
            c.arg("list")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let oks: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(oks, 300);
    for c in clis {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 4);
    }
    for (n, pid) in ["a", "b", "c"].iter().zip(pids) {
        assert_eq!(sup.status(n).pid, Some(pid), "{n}");
    }
    let now = fds_settle(&sup, &before);
    assert!(now == before, "{}", fd_diff(&now, &before));
}
