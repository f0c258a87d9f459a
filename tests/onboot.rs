//! onboot / onshutdown against real runc (and crun) with busybox bundles.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::json;
use std::path::Path;

#[test]
fn runs_a_bundle_and_logs_its_output() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(
        &ob,
        "hello",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2"],
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.line("hello"), "hello: exit code 0");
    assert!(r.stdout.contains("to-stdout\n"));
    assert!(r.stdout.contains("to-stderr\n"));
    assert_eq!(env.log("onboot.hello.out.log"), "to-stdout\n");
    assert_eq!(env.log("onboot.hello.log"), "to-stderr\n");
    // Nothing left: the rootfs bind is gone and the runtime forgot the container.
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(env.containers().is_empty(), "{:?}", env.containers());
}

/// LinuxKit's `linuxkit.runc_debug=1` and `linuxkit.runc_console=1`, which PID 1 turns into
/// these options: the runtime runs with `--debug`, its messages reach the console (stderr),
/// and its JSON log stays for reading. Without them the log goes and stderr has none.
#[test]
fn runtime_debug_and_its_messages_on_the_console() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "dbg", &["true"]);
    let r = env.onboot(&ob, &["--runtime-debug", "--runtime-log-console"]);
    assert_eq!(r.line("dbg"), "dbg: exit code 0");
    assert!(
        r.stderr.contains("lkinit: dbg: runc run: debug: "),
        "no runtime debug line on stderr"
    );
    let kept = env.state_dir.join("runtime-logs/dbg.run.json");
    let log = std::fs::read_to_string(&kept).unwrap();
    assert!(log.contains("\"level\":\"debug\""), "{log}");

    std::fs::remove_file(&kept).unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.line("dbg"), "dbg: exit code 0");
    assert!(!r.stderr.contains("runc run"), "{}", r.stderr);
    assert!(!kept.exists());
}

/// Far more than a pipe holds (64 KiB) on stdout and stderr at once, interleaved: both are
/// drained as they fill, so neither the container nor lkinit blocks, and nothing is lost
/// or mixed between the two logs.
#[test]
fn much_output_on_both_streams_at_once() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let pad = "x".repeat(100);
    let script = format!(
        "i=0; while [ $i -lt 3000 ]; do echo out $i {pad}; echo err $i {pad} >&2; i=$((i+1)); done"
    );
    env.bundle(&ob, "loud", &["sh", "-c", &script]);
    let r = env.onboot(&ob, &["--timeout", "120"]);
    assert_eq!(r.line("loud"), "loud: exit code 0");
    let (out, err) = (env.log("onboot.loud.out.log"), env.log("onboot.loud.log"));
    assert!(
        out.len() > 300_000 && err.len() > 300_000,
        "{} {}",
        out.len(),
        err.len()
    );
    for (log, word) in [(&out, "out"), (&err, "err")] {
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3000);
        for (n, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("{word} {n} {pad}"));
        }
    }
    // On lkinit's stdout (the console) the two streams interleave, by whole lines only.
    let echoed: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains(&pad) || l.starts_with("out ") || l.starts_with("err "))
        .collect();
    assert_eq!(echoed.len(), 6000);
    for l in echoed {
        let mut w = l.split(' ');
        let (word, n, rest) = (w.next(), w.next(), w.next());
        assert!(matches!(word, Some("out" | "err")), "{l}");
        assert!(n.is_some_and(|n| n.parse::<u32>().is_ok()), "{l}");
        assert_eq!(rest, Some(pad.as_str()), "{l}");
        assert_eq!(w.next(), None, "{l}");
    }
}

#[test]
fn readonly_root_cannot_be_written() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "ro", &["sh", "-c", "touch /newfile"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.line("ro"), "ro: exit code 1");
    assert!(!b.join("rootfs/newfile").exists());
}

#[test]
fn rw_root_writes_never_reach_lower() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.rw_bundle(
        &ob,
        "rw",
        &[
            "sh",
            "-c",
            "echo data > /written && rm /bin/ls && cat /written",
        ],
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("data\n"));
    assert!(!b.join("lower/written").exists());
    assert!(b.join("lower/bin/ls").exists(), "a delete reached lower/");
    // The overlay and its tmpfs are gone, and with them the writes.
    assert!(!is_mounted(&b.join("rootfs")));
    assert!(!is_mounted(&b.join("tmp")));
    assert!(!b.join("rootfs/written").exists());
    assert!(env.my_mounts().is_empty());
}

#[test]
fn mkdir_and_mounts_absolute_and_relative() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let host = env.dir.join("host");
    let abs_dir = host.join("abs/made");
    let abs_mnt = host.join("abs-tmpfs");
    let b = env.bundle(
        &ob,
        "mnt",
        &[
            "sh",
            "-c",
            "test -d /rel/made && grep -q ' /reltmp tmpfs ' /proc/mounts && echo ok > /reltmp/f && cat /reltmp/f && grep ' /reltmp ' /proc/mounts",
        ],
    );
    std::fs::write(
        b.join("runtime.json"),
        json!({
            "mounts": [
                {"type": "tmpfs", "source": "tmpfs", "destination": abs_mnt, "options": ["size=1m", "nosuid"]},
                {"type": "tmpfs", "source": "tmpfs", "destination": "reltmp", "options": ["size=1m", "noexec", "mode=0777"]}
            ],
            "mkdir": [abs_dir, "rel/made"]
        })
        .to_string(),
    )
    .unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("ok\n"));
    // fstab options became mount flags and data.
    let line = r.stdout.lines().find(|l| l.contains(" /reltmp ")).unwrap();
    assert!(
        line.contains("noexec") && line.contains("size=1024k"),
        "{line}"
    );
    // The absolute ones outlive the container on purpose; the relative ones went with it,
    // and the bundle is as it was found.
    assert!(abs_dir.is_dir());
    assert!(is_mounted(&abs_mnt));
    assert!(!b.join("rootfs/rel").exists());
    assert!(!b.join("rootfs/reltmp").exists());
    assert!(!is_mounted(&b.join("rootfs/reltmp")));
    assert_eq!(env.my_mounts(), vec![abs_mnt.clone()]);
}

#[test]
fn bind_mount_with_flags_is_remounted() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let src = env.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "host file\n").unwrap();
    let b = env.bundle(
        &ob,
        "bind",
        &[
            "sh",
            "-c",
            "cat /data/f && ! touch /data/g 2>/dev/null && echo readonly",
        ],
    );
    std::fs::write(
        b.join("runtime.yml"),
        format!(
            "mounts:\n  - type: bind\n    source: {}\n    destination: data\n    options: [rbind, ro, private]\n",
            src.display()
        ),
    )
    .unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("host file\nreadonly\n"), "{}", r.stdout);
    assert!(!src.join("g").exists());
}

#[test]
fn escapes_are_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let outside = env.dir.join("onboot").join("pwned");

    let dotdot = env.bundle(&ob, "a-dotdot", &["true"]);
    std::fs::write(dotdot.join("runtime.json"), r#"{"mkdir": ["../../pwned"]}"#).unwrap();

    let link = env.bundle(&ob, "b-link", &["true"]);
    std::os::unix::fs::symlink("../../../../../../..", link.join("rootfs/up")).unwrap();
    std::fs::write(
        link.join("runtime.json"),
        format!(r#"{{"mkdir": ["up{}"]}}"#, outside.display()),
    )
    .unwrap();

    let mnt = env.bundle(&ob, "c-mount", &["true"]);
    std::os::unix::fs::symlink("../../..", mnt.join("rootfs/up")).unwrap();
    std::fs::write(
        mnt.join("runtime.json"),
        r#"{"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "up/x"}]}"#,
    )
    .unwrap();

    // An absolute link means the container's own root: it is followed inside the rootfs.
    let abs = env.bundle(&ob, "d-abs", &["test", "-d", "/etc/lkinit-made"]);
    std::os::unix::fs::symlink("/etc", abs.join("rootfs/hostetc")).unwrap();
    std::fs::write(
        abs.join("runtime.json"),
        r#"{"mkdir": ["hostetc/lkinit-made"]}"#,
    )
    .unwrap();

    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("a-dotdot");
    assert!(l.contains("mkdir[0]") && l.contains("climbs out"), "{l}");
    let l = r.line("b-link");
    assert!(l.contains("mkdir[0]") && l.contains("escapes"), "{l}");
    assert!(l.contains("symlink `up`"), "{l}");
    let l = r.line("c-mount");
    assert!(l.contains("mounts[0]") && l.contains("escapes"), "{l}");
    assert_eq!(r.line("d-abs"), "d-abs: exit code 0");
    assert!(!abs.join("rootfs/etc/lkinit-made").exists());
    assert!(!Path::new("/etc/lkinit-made").exists());
    assert!(!outside.exists());
    assert!(!env.dir.join("pwned").exists());
    assert!(env.my_mounts().is_empty());
}

#[test]
fn yaml_runtime_config() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "y", &["test", "-d", "/from/yaml"]);
    std::fs::write(
        b.join("runtime.yml"),
        "# a comment\nmkdir:\n  - from/yaml\n",
    )
    .unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.line("y"), "y: exit code 0");
}

#[test]
fn bad_configs_are_reported_and_the_next_bundle_runs() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let a = env.bundle(&ob, "1-badjson", &["true"]);
    std::fs::write(a.join("runtime.json"), "{\n  \"mkdir\": [\"/x\",]\n}\n").unwrap();
    env.bundle(&ob, "2-good", &["echo", "second ran"]);
    let c = env.bundle(&ob, "3-unknown", &["true"]);
    std::fs::write(
        c.join("runtime.yml"),
        "mkdir: []\ninterfaces:\n  - name: eth0\n    creatInRoot: true\n",
    )
    .unwrap();
    let d = env.bundle(&ob, "4-both", &["true"]);
    std::fs::write(d.join("runtime.json"), "{}").unwrap();
    std::fs::write(d.join("runtime.yml"), "{}").unwrap();
    let e = env.bundle(&ob, "5-type", &["true"]);
    std::fs::write(e.join("runtime.json"), r#"{"cgroups": "notalist"}"#).unwrap();
    let f = env.bundle(&ob, "6-badspec", &["true"]);
    std::fs::write(f.join("config.json"), r#"{"ociVersion": 1}"#).unwrap();
    env.bundle(&ob, "7-last", &["echo", "last ran"]);

    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("1-badjson");
    assert!(
        l.starts_with("1-badjson: error: ") && l.contains("runtime.json: line 2"),
        "{l}"
    );
    assert_eq!(r.line("2-good"), "2-good: exit code 0");
    let l = r.line("3-unknown");
    assert!(
        l.contains("runtime.yml: line 4")
            && l.contains("interfaces[0].creatInRoot")
            && l.contains("unknown field `creatInRoot`"),
        "{l}"
    );
    let l = r.line("4-both");
    assert!(l.contains("both runtime.json and runtime.yml"), "{l}");
    let l = r.line("5-type");
    assert!(
        l.contains("field `cgroups`") && l.contains("expected a sequence"),
        "{l}"
    );
    let l = r.line("6-badspec");
    assert!(l.contains("config.json") && l.contains("ociVersion"), "{l}");
    assert_eq!(r.line("7-last"), "7-last: exit code 0");
    assert!(r.stdout.contains("second ran") && r.stdout.contains("last ran"));
    // Each report is one line: nothing of a failure spills onto the next.
    assert_eq!(
        r.stdout.lines().filter(|l| l.contains(": error: ")).count(),
        5
    );
}

#[test]
fn exit_codes_and_overall_status() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "a", &["sh", "-c", "exit 7"]);
    env.bundle(&ob, "b", &["true"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.line("a"), "a: exit code 7");
    assert_eq!(r.line("b"), "b: exit code 0");

    let ok = env.bundles_dir("ok");
    env.bundle(&ok, "only", &["true"]);
    assert_eq!(env.onboot(&ok, &[]).code, 0);
}

#[test]
fn bundles_run_in_order_one_at_a_time() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let shared = env.dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    // Each bundle checks its predecessor finished (its last act is to write its marker),
    // then takes a while before writing its own.
    for (name, prev) in [
        ("10-first", ""),
        ("2-second", "10-first"),
        ("b-third", "2-second"),
    ] {
        let script = format!(
            "{} sleep 0.2; echo {name} >> /shared/order; touch /shared/{name}",
            if prev.is_empty() {
                String::new()
            } else {
                format!("test -e /shared/{prev} || exit 9;")
            }
        );
        let b = env.bundle(&ob, name, &["sh", "-c", &script]);
        std::fs::write(
            b.join("runtime.json"),
            json!({"mounts": [{"type": "bind", "source": shared, "destination": "shared", "options": ["rbind", "rw"]}]}).to_string(),
        )
        .unwrap();
    }
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    // Name order is byte order: "10-first" < "2-second" < "b-third".
    assert_eq!(
        std::fs::read_to_string(shared.join("order")).unwrap(),
        "10-first\n2-second\nb-third\n"
    );
    let names: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| {
            l.split(": exit code")
                .next()
                .filter(|_| l.contains(": exit code"))
        })
        .collect();
    assert_eq!(names, vec!["10-first", "2-second", "b-third"]);
}

#[test]
fn a_second_run_on_the_same_bundles_works() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "again", &["echo", "run"]);
    let rw = env.rw_bundle(
        &ob,
        "again-rw",
        &["sh", "-c", "test ! -e /mark && touch /mark"],
    );
    std::fs::write(rw.join("runtime.json"), r#"{"mkdir": ["made"]}"#).unwrap();
    for _ in 0..2 {
        let r = env.onboot(&ob, &[]);
        assert_eq!(r.code, 0);
        assert!(env.my_mounts().is_empty());
        assert!(env.containers().is_empty());
    }
    assert_eq!(env.log("onboot.again.out.log"), "run\nrun\n");
}

#[test]
fn a_stale_container_of_the_same_name_is_replaced() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "stale", &["echo", "fresh"]);
    // A leftover from a run that was killed after `create`.
    nix::mount::mount(
        Some(&b.join("rootfs")),
        &b.join("rootfs"),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&env.runtime_root)
        .args(["create", "--bundle"])
        .arg(&b)
        .arg("stale")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    nix::mount::umount2(&b.join("rootfs"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert_eq!(env.containers(), vec!["stale"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("left by an earlier run"), "{}", r.stderr);
    assert!(r.stdout.contains("fresh\n"));
    assert!(env.containers().is_empty());
}

#[test]
fn what_a_runtime_killed_in_create_left_is_cleared() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "half", &["echo", "made"]);
    // What runc killed part way through `create` leaves: its state directory without a
    // saved state, with the copy of itself it mounts there for a moment, and the file it
    // writes the pid file through.
    let state = env.runtime_root.join("half");
    std::fs::create_dir_all(&state).unwrap();
    let copy = state.join("runc.Xy12Ab");
    std::fs::write(&copy, "").unwrap();
    nix::mount::mount(
        Some("/bin/true"),
        &copy,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let pids = env.state_dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    std::fs::write(pids.join(".half.pid"), "").unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("left half made"), "{}", r.stderr);
    assert_eq!(env.log("onboot.half.out.log"), "made\n");
    assert!(env.containers().is_empty());
    assert!(!pids.join(".half.pid").exists());
    assert!(!is_mounted(&copy) && !state.exists());
}

/// An image without onboot bundles has no /containers/onboot, and PID 1's onboot says
/// nothing of it; a path the user typed is another matter: a typo must not pass as "nothing
/// to run". A bundle given where its parent was meant says so.
#[test]
fn a_given_path_that_is_missing_or_a_bundle_is_an_error() {
    let env = TestEnv::new();
    let missing = env.dir.join("onbot");
    let r = env.onboot(&missing, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(&format!(
            "onboot: --path {} does not exist",
            missing.display()
        )),
        "{}",
        r.stderr
    );
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "one", &["true"]);
    let r = env.onboot(&b, &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "onboot: {} is a bundle, not a directory of bundles: give its parent (--path {})",
            b.display(),
            ob.display()
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn runtime_failure_is_reported_with_its_message() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "noexec", &["/no/such/binary"]);
    env.bundle(&ob, "next", &["true"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("noexec");
    assert!(
        l.starts_with("noexec: error: run: `runc run` failed: "),
        "{l}"
    );
    assert!(l.contains("/no/such/binary"), "{l}");
    assert_eq!(r.line("next"), "next: exit code 0");
    assert!(env.my_mounts().is_empty());
    assert!(env.containers().is_empty());
}

#[test]
fn missing_runtime_binary() {
    let mut env = TestEnv::new();
    env.runtime = "/nonexistent/runc".into();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "x", &["true"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("x");
    assert!(
        l.contains("cannot run the OCI runtime `/nonexistent/runc`") && l.contains("No such file"),
        "{l}"
    );
    assert!(env.my_mounts().is_empty());
    env.runtime = "runc".into();
}

#[test]
fn a_failed_step_undoes_what_was_done() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let host = env.dir.join("host");
    let b = env.rw_bundle(&ob, "undo", &["true"]);
    // The first mount and mkdir succeed; the second mount fails (no such filesystem).
    std::fs::write(
        b.join("runtime.json"),
        json!({
            "mounts": [
                {"type": "tmpfs", "source": "tmpfs", "destination": host.join("m1")},
                {"type": "tmpfs", "source": "tmpfs", "destination": "inner/m2"},
                {"type": "nosuchfs", "source": "x", "destination": host.join("deep/m3")}
            ],
            "mkdir": ["never"]
        })
        .to_string(),
    )
    .unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("undo");
    assert!(l.contains("mounts[2]") && l.contains("nosuchfs"), "{l}");
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(!host.exists(), "directories made for the mounts were left");
    assert!(!b.join("tmp").exists());
    assert!(!b.join("rootfs/inner").exists());
    assert!(env.containers().is_empty());
}

#[test]
fn cgroups_are_created_in_every_hierarchy() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let name = unique("lkinit-cg-");
    env.track_cgroup(&name);
    let b = env.bundle(&ob, "cg", &["true"]);
    std::fs::write(
        b.join("runtime.json"),
        json!({"cgroups": [format!("{name}/sub")]}).to_string(),
    )
    .unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    let hier = lkinit::cgroups::hierarchies(Path::new("/sys/fs/cgroup"));
    assert!(!hier.is_empty());
    for h in hier {
        assert!(h.join(&name).join("sub").is_dir(), "{}", h.display());
    }
}

#[test]
fn timeout_kills_and_the_rest_goes_on() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "1-hang", &["sleep", "1000"]);
    env.bundle(&ob, "2-after", &["echo", "after"]);
    let t = std::time::Instant::now();
    let r = env.onboot(&ob, &["--timeout", "1"]);
    assert!(t.elapsed().as_secs() < 30);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-hang"),
        "1-hang: timed out after 1s, killed: exit code 137"
    );
    assert_eq!(r.line("2-after"), "2-after: exit code 0");
    assert!(env.containers().is_empty());
    assert!(env.my_mounts().is_empty());
}

#[test]
fn config_json_is_never_rewritten() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "gen", &["echo", "generated root"]);
    env.edit_config(&b, |c| {
        c["root"]["path"] = json!("elsewhere");
        c["annotations"] = json!({"org.example.keep": "yes"});
    });
    let before = std::fs::read(b.join("config.json")).unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("generated root"));
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
    let generated: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state_dir.join("bundles/gen/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(generated["root"]["path"], json!(b.join("rootfs")));
    assert_eq!(generated["annotations"]["org.example.keep"], json!("yes"));
    assert_eq!(generated["linux"]["maskedPaths"][0], json!("/proc/kcore"));
}

#[test]
fn terminal_and_invalid_names_are_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let t = env.bundle(&ob, "tty", &["true"]);
    env.edit_config(&t, |c| c["process"]["terminal"] = json!(true));
    env.bundle(&ob, "bad name", &["true"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    assert!(r.line("tty").contains("process.terminal is true"));
    assert!(r.line("bad name").contains("not a valid bundle name"));
}

#[test]
fn onshutdown_and_multicall_names() {
    let env = TestEnv::new();
    let sd = env.bundles_dir("onshutdown");
    env.bundle(&sd, "bye", &["echo", "goodbye"]);
    let bin = env.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(LKINIT, bin.join("onshutdown")).unwrap();
    let mut c = std::process::Command::new(bin.join("onshutdown"));
    env.memlogd_env(&mut c);
    c.arg("--path")
        .arg(&sd)
        .arg("--log-dir")
        .arg(&env.log_dir)
        .arg("--runtime-root")
        .arg(&env.runtime_root)
        .arg("--state-dir")
        .arg(&env.state_dir)
        .args(["--timeout", common::BUNDLE_TIMEOUT]);
    let r = Run::of(c);
    assert_eq!(r.code, 0);
    assert_eq!(r.line("bye"), "bye: exit code 0");
    // LinuxKit's names: shutdown.NAME.out.log and shutdown.NAME.log.
    assert_eq!(env.log("shutdown.bye.out.log"), "goodbye\n");
    assert_eq!(env.log("shutdown.bye.log"), "");
    assert!(env.log_dir.join("shutdown.bye.log").exists());
    assert!(!env.log_dir.join("onshutdown.bye.out.log").exists());
}

#[test]
fn quiet_reports_failures_only() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "fine", &["true"]);
    env.bundle(&ob, "broken", &["false"]);
    let r = env.onboot(&ob, &["-q"]);
    assert_eq!(r.code, 1);
    assert!(!r.stdout.contains("fine:"));
    assert_eq!(r.line("broken"), "broken: exit code 1");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn help_explains_commands_and_defaults() {
    let r = Run::of({
        let mut c = std::process::Command::new(LKINIT);
        c.args(["onboot", "--help"]);
        c
    });
    assert_eq!(r.code, 0);
    for needle in [
        "/containers/onboot",
        "/run/log/onboot",
        "/run/log/shutdown",
        "--memlogd-socket",
        "/var/run/linuxkit-external-logging.sock",
        "/var/run/memlogdq.sock",
        "--timeout",
        "--runtime-root",
        "name order",
    ] {
        assert!(
            r.stdout.contains(needle),
            "help lacks {needle}:\n{}",
            r.stdout
        );
    }
}

/// crun refuses this host's hybrid cgroup layout unless run where the unified hierarchy is
/// not mounted: a private mount namespace does that without touching the host.
#[test]
fn crun_runs_the_same_bundles() {
    let env = TestEnv::with_runtime("crun");
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "c1", &["echo", "from crun"]);
    env.rw_bundle(&ob, "c2", &["sh", "-c", "echo x > /y && exit 4"]);
    let r = crun_onboot(&env, &ob);
    assert_eq!(r.line("c1"), "c1: exit code 0");
    assert_eq!(r.line("c2"), "c2: exit code 4");
    assert_eq!(r.code, 1);
    assert_eq!(env.log("onboot.c1.out.log"), "from crun\n");
    assert!(env.containers().is_empty());
}
