//! Hostile paths and names: what a bundle (its runtime.json, the symlinks in its image, its
//! own layout, its name) can make lkinit do to the host. Each is refused or confined to the
//! bundle's rootfs, and a canary directory beside the bundles proves the host side: not a
//! byte, mode or entry of it changes, nothing is mounted on it or below it, and nothing
//! appears next to it.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

/// Everything about a tree that a write, a mount or a chmod would change.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let content = if md.is_file() {
            std::fs::read(p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            p.to_path_buf(),
            format!(
                "mode={:o} uid={} dev={} ino={} len={} content={:?} mounted={}",
                md.mode(),
                md.uid(),
                md.dev(),
                md.ino(),
                md.len(),
                content,
                is_mounted(p)
            ),
        );
        if md.is_dir() {
            for e in std::fs::read_dir(p).unwrap().filter_map(Result::ok) {
                walk(&e.path(), out);
            }
        }
    }
    walk(root, &mut out);
    out
}

/// A host directory the bundles try to reach: `canary/` with a file and a subdirectory.
fn canary(env: &TestEnv) -> PathBuf {
    let c = env.dir.join("canary");
    std::fs::create_dir_all(c.join("sub")).unwrap();
    std::fs::write(c.join("file"), "canary\n").unwrap();
    c
}

/// The entries of the test dir outside the bundles and lkinit's own directories.
fn host_entries(env: &TestEnv) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&env.dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "log" | "state" | "runtime-root" | "gate"))
        .collect();
    v.sort();
    v
}

#[test]
fn runtime_config_paths_cannot_leave_the_rootfs() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let can = canary(&env);
    let write_rt = |b: &Path, v: serde_json::Value| write_runtime(b, v);

    // `..` in the config itself (from a rootfs, `../../../canary` is the canary).
    let b = env.bundle(&ob, "a1-mkdir-dotdot", &["true"]);
    write_rt(&b, json!({"mkdir": ["../../../canary/x"]}));
    let b = env.bundle(&ob, "a2-mkdir-deep-dotdot", &["true"]);
    write_rt(&b, json!({"mkdir": ["a/b/../../../../../canary/x"]}));
    let b = env.bundle(&ob, "a3-mount-dotdot", &["true"]);
    write_rt(
        &b,
        json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "tmp/../../canary"}]}),
    );

    // Symlinks in the image: relative ones that climb out, chains, loops.
    let b = env.bundle(&ob, "b1-link-up", &["true"]);
    symlink("../../../canary", b.join("rootfs/up")).unwrap();
    write_rt(&b, json!({"mkdir": ["up/x"]}));
    let b = env.bundle(&ob, "b2-chain-out", &["true"]);
    symlink("c2", b.join("rootfs/c1")).unwrap();
    symlink("/c3", b.join("rootfs/c2")).unwrap();
    symlink("etc/../../../../canary", b.join("rootfs/c3")).unwrap();
    write_rt(&b, json!({"mkdir": ["c1/x"]}));
    let b = env.bundle(&ob, "b3-mount-link-up", &["true"]);
    symlink("../../..", b.join("rootfs/up")).unwrap();
    write_rt(
        &b,
        json!({"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "up/canary"}]}),
    );
    let b = env.bundle(&ob, "b4-loop", &["true"]);
    symlink("l2", b.join("rootfs/l1")).unwrap();
    symlink("/l1", b.join("rootfs/l2")).unwrap();
    write_rt(&b, json!({"mkdir": ["l1/x"]}));
    let b = env.bundle(&ob, "b5-through-a-file", &["true"]);
    write_rt(&b, json!({"mkdir": ["bin/busybox/x"]}));

    // Absolute symlinks mean the container's root: followed inside, never on the host,
    // even when they spell a host path that exists.
    let inside_can = can.strip_prefix("/").unwrap();
    let b = env.bundle(
        &ob,
        "c1-abs-host-path",
        &["test", "-d", &format!("{}/x", can.display())],
    );
    symlink(&can, b.join("rootfs/abs")).unwrap();
    write_rt(&b, json!({"mkdir": ["abs/x"]}));
    let b = env.bundle(
        &ob,
        "c2-abs-chain-inside",
        &[
            "sh",
            "-c",
            "test -d /etc/made && grep -q ' /etc/mnt tmpfs' /proc/mounts",
        ],
    );
    symlink("/d2", b.join("rootfs/d1")).unwrap();
    symlink("etc", b.join("rootfs/d2")).unwrap();
    symlink("/etc", b.join("rootfs/etc-link")).unwrap();
    write_rt(
        &b,
        json!({"mkdir": ["d1/made"], "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "etc-link/mnt"}]}),
    );
    env.bundle(&ob, "d-next", &["echo", "next ran"]);

    let snap = snapshot(&can);
    let entries = host_entries(&env);
    let etc_mounted = is_mounted(Path::new("/etc"));
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let expect = [
        (
            "a1-mkdir-dotdot",
            "mkdir[0]: `../../../canary/x` escapes the rootfs: `../../../canary/x` climbs out through `..`",
        ),
        ("a2-mkdir-deep-dotdot", "climbs out through `..`"),
        (
            "a3-mount-dotdot",
            "mounts[0]: `tmp/../../canary` escapes the rootfs",
        ),
        ("b1-link-up", "escapes"),
        ("b2-chain-out", "escapes"),
        ("b3-mount-link-up", "escapes"),
        ("b4-loop", "too many levels of symbolic links"),
        ("b5-through-a-file", "`busybox` is not a directory"),
    ];
    for (name, cause) in expect {
        let l = r.line(name);
        assert!(l.starts_with(&format!("{name}: error: mounts: ")), "{l}");
        assert!(l.contains(cause), "{l}");
    }
    assert!(
        r.line("b1-link-up")
            .contains("symlink `up` -> `../../../canary`")
    );
    assert!(r.line("b2-chain-out").contains("symlink `c3`"));
    assert_eq!(r.line("c1-abs-host-path"), "c1-abs-host-path: exit code 0");
    assert_eq!(
        r.line("c2-abs-chain-inside"),
        "c2-abs-chain-inside: exit code 0"
    );
    assert_eq!(r.line("d-next"), "d-next: exit code 0");

    // The host side: the canary as it was, nothing new beside it, /etc as it was.
    assert_eq!(snapshot(&can), snap);
    assert_eq!(host_entries(&env), entries);
    assert_eq!(is_mounted(Path::new("/etc")), etc_mounted);
    assert!(!Path::new("/etc/made").exists() && !Path::new("/etc/mnt").exists());
    // What was made inside the rootfs for the container went with it.
    let c1 = ob.join("c1-abs-host-path/rootfs");
    assert!(!c1.join(inside_can).join("x").exists());
    assert!(!ob.join("c2-abs-chain-inside/rootfs/etc/made").exists());
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(env.containers().is_empty());
}

#[test]
fn a_bundle_layout_that_points_outside_is_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let can = canary(&env);
    // rootfs itself a symlink to a host directory: its self-bind, and every relative
    // mkdir and mount, would land there.
    let b = ob.join("1-rootfs-link");
    std::fs::create_dir_all(&b).unwrap();
    env.write_config(&b, config(&["true"], &env.cgroups_path("1-rootfs-link")));
    symlink(&can, b.join("rootfs")).unwrap();
    write_runtime(&b, json!({"mkdir": ["made"]}));
    // With lower/, tmp/ (the writable layer's tmpfs) and rootfs (the overlay) are mount
    // points lkinit makes: symlinks there would put them on the host.
    let b = env.rw_bundle(&ob, "2-tmp-link", &["true"]);
    symlink(can.join("sub"), b.join("tmp")).unwrap();
    let b = ob.join("3-rw-rootfs-link");
    make_rootfs(&b.join("lower"));
    env.write_config(&b, config(&["true"], &env.cgroups_path("3-rw-rootfs-link")));
    symlink(&can, b.join("rootfs")).unwrap();
    env.bundle(&ob, "4-next", &["echo", "next ran"]);

    let snap = snapshot(&can);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    for (name, what) in [
        ("1-rootfs-link", "rootfs"),
        ("2-tmp-link", "tmp"),
        ("3-rw-rootfs-link", "rootfs"),
    ] {
        let l = r.line(name);
        let p = ob.join(name).join(what);
        assert_eq!(
            l,
            format!(
                "{name}: error: {} is a symlink; lkinit mounts on it and would follow it \
                 out of the bundle",
                p.display()
            )
        );
    }
    assert_eq!(r.line("4-next"), "4-next: exit code 0");
    assert_eq!(snapshot(&can), snap);
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(env.containers().is_empty());
}

#[test]
fn bind_ns_targets_that_are_symlinks_are_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let can = canary(&env);
    let ns = env.dir.join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    // A link to a host file, a dangling link (following it would create its target), and
    // a chain.
    symlink(can.join("file"), ns.join("to-file")).unwrap();
    symlink(can.join("new-file"), ns.join("dangling")).unwrap();
    symlink(ns.join("to-file"), ns.join("chain")).unwrap();
    for (i, target) in ["to-file", "dangling", "chain"].iter().enumerate() {
        let name = format!("{}-{target}", i + 1);
        let b = env.bundle(&ob, &name, &["true"]);
        // An earlier bind that succeeds is undone too.
        write_runtime(
            &b,
            json!({"bindNS": {"ipc": ns.join(format!("ok-{i}")), "net": ns.join(target)}}),
        );
    }
    let b = env.bundle(&ob, "4-relative", &["true"]);
    write_runtime(&b, json!({"bindNS": {"net": "run/netns/x"}}));
    env.bundle(&ob, "5-next", &["echo", "next ran"]);
    let snap = snapshot(&can);
    let before = env.census(&[&ns]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    for target in ["to-file", "dangling", "chain"] {
        let name = r
            .stdout
            .lines()
            .find(|l| l.split(':').next().unwrap().ends_with(target))
            .unwrap()
            .to_string();
        assert!(
            name.contains(&format!(
                "bindNS.net: {} is a symlink; a namespace is never bound through a symlink",
                ns.join(target).display()
            )),
            "{name}"
        );
    }
    let l = r.line("4-relative");
    assert!(l.contains("bindNS.net") && l.contains("run/netns/x"), "{l}");
    assert_eq!(r.line("5-next"), "5-next: exit code 0");
    assert_eq!(snapshot(&can), snap);
    assert!(!can.join("new-file").exists());
    env.census(&[&ns]).assert_nothing_added_since(&before);
}

#[test]
fn hostile_bundle_names_are_refused_and_cannot_forge_report_lines() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    // A directory name may hold anything but `/` and NUL; `.` and `..` never show up in a
    // listing. A name with a newline must not print a line of its own.
    let names = [
        ".hidden",
        "-dash",
        "_under",
        "a b",
        "a:b",
        "x\nforged: exit code 0",
        "tab\tname",
        "esc\u{1b}[2Jname",
        "é",
    ];
    for n in names {
        env.bundle(&ob, n, &["true"]);
    }
    let long = "l".repeat(250);
    env.bundle(&ob, &long, &["true"]);
    env.bundle(&ob, "ok", &["echo", "fine"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.line("ok"), "ok: exit code 0");
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("forged")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains('\u{1b}') && !r.stdout.contains('\t'));
    let refused = r
        .stdout
        .lines()
        .filter(|l| l.contains("is not a valid bundle name"))
        .count();
    assert_eq!(refused, names.len() + 1, "{}", r.stdout);
    assert!(r.stdout.contains("x\\nforged: exit code 0"), "{}", r.stdout);
    assert!(env.containers().is_empty());
    assert!(env.my_mounts().is_empty());
    assert!(std::fs::read_dir(&env.log_dir).unwrap().all(|e| {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        n.starts_with("onboot.ok.")
    }));
}

#[test]
fn hostile_service_names_are_refused_before_anything_runs() {
    let env = TestEnv::new();
    for name in ["..", "../x", "a/b", "/abs", "", ".", "a\nb"] {
        for args in [
            vec!["exec", name, "--", "true"],
            vec!["mount", name, "/tmp", "/mnt"],
            vec!["umount", name, "/mnt"],
        ] {
            let mut c = env.lkinit();
            c.args(&args);
            let r = Run::of(c);
            assert_ne!(r.code, 0, "{args:?}");
            assert!(
                r.stderr.contains("is not a valid service name"),
                "{args:?}: {}",
                r.stderr
            );
            // Refused before the runtime was asked anything: it has no log of it.
            assert!(!env.state_dir.join("runtime-logs").exists(), "{args:?}");
        }
    }
}

#[test]
fn a_mount_point_swapped_for_a_symlink_after_the_check_is_not_followed() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let can = canary(&env);
    let snap = snapshot(&can);
    // The window between reading the bundle and mounting: the directory is replaced by a
    // symlink once Bundle::open has looked at it.
    let ro = env.bundle(&ob, "ro", &["true"]);
    let rw = env.rw_bundle(&ob, "rw", &["true"]);
    for (b, swapped) in [(&ro, "rootfs"), (&rw, "tmp"), (&rw, "rootfs")] {
        let bundle = lkinit::bundle::Bundle::open(b).unwrap();
        let p = b.join(swapped);
        let kept = b.join(format!("{swapped}.real"));
        if p.exists() {
            std::fs::rename(&p, &kept).unwrap();
        }
        symlink(&can, &p).unwrap();
        let mut undo = lkinit::undo::Undo::new();
        let mut scratch = lkinit::mounts::Scratch::default();
        let e = lkinit::rootfs::prepare(&bundle, &mut undo, &mut scratch)
            .err()
            .unwrap_or_else(|| panic!("{swapped}: a mount through the symlink"));
        let msg = lkinit::error_chain(&e);
        assert!(
            msg.contains(&format!("cannot open {} to mount on it", p.display())),
            "{msg}"
        );
        assert!(undo.rollback().is_empty());
        std::fs::remove_file(&p).unwrap();
        if kept.exists() {
            std::fs::rename(&kept, &p).unwrap();
        }
        assert_eq!(snapshot(&can), snap, "{swapped}");
    }
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
}

/// A runtime quotes a failing hook's output in its error; a newline there must not start a
/// report line of its own, forged as another bundle's. (The runtime also prints its error
/// on its stderr, which is the container's: that copy is the container's output, in its
/// log, as anything else the container prints.)
#[test]
fn a_hook_cannot_forge_a_report_line() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "1-hooked", &["true"]);
    env.edit_config(&b, |c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "printf 'oops\\nz-forged: exit code 0\\n' >&2; exit 1"]
        }]});
    });
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("1-hooked");
    assert!(line.starts_with("1-hooked: error: "), "{line}");
    assert!(line.contains(r"oops\nz-forged: exit code 0\n"), "{line}");
    let container_stderr = env.log("onboot.1-hooked.log");
    for l in r.stdout.lines().filter(|l| l.starts_with("z-forged")) {
        assert!(
            container_stderr.lines().any(|c| c == l),
            "`{l}` on the console is not the container's output:\n{}",
            r.stdout
        );
    }
}

/// Config files are read only when they are regular files, and only so much of them: a
/// FIFO, a link to a device or a huge file is refused at once with a line that names it,
/// and the next bundle runs.
#[test]
fn config_files_that_are_not_regular_files_are_refused_at_once() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let mut expect = Vec::new();
    for (i, file) in ["config.json", "runtime.json", "runtime.yml"]
        .iter()
        .enumerate()
    {
        for (j, kind) in ["fifo", "zero", "big", "link"].iter().enumerate() {
            let name = format!("{i}{j}-{}-{kind}", file.replace('.', "-"));
            let b = env.bundle(&ob, &name, &["true"]);
            let p = b.join(file);
            let _ = std::fs::remove_file(&p);
            let why = match *kind {
                "fifo" => {
                    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .unwrap();
                    "is a FIFO, not a regular file".to_string()
                }
                "zero" => {
                    symlink("/dev/zero", &p).unwrap();
                    "is a symlink".to_string()
                }
                "big" => {
                    std::fs::write(&p, vec![b' '; (16 << 20) + 1]).unwrap();
                    format!("is larger than {} bytes", 16 << 20)
                }
                _ => {
                    let real = env.dir.join(format!("{name}.real"));
                    std::fs::write(&real, "{}").unwrap();
                    symlink(&real, &p).unwrap();
                    "is a symlink".to_string()
                }
            };
            expect.push((name, format!("{} {why}", p.display())));
        }
    }
    env.bundle(&ob, "99-next", &["echo", "next ran"]);
    let mut c = env.onboot_command(&ob, &["--timeout", "5"]);
    c.env("RUST_LOG", "warn");
    let r = Run::within(c, std::time::Duration::from_secs(120));
    for (name, why) in &expect {
        let line = r.line(name);
        assert!(line.contains(why), "{line} lacks `{why}`");
    }
    assert_eq!(r.line("99-next"), "99-next: exit code 0");
}

/// The supervisor reads the same files the same way: a service whose config.json or
/// service.yml is a FIFO fails at once with the reason, and the others run.
#[test]
fn a_service_with_a_fifo_for_a_config_file_fails_at_once() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let mkfifo = |p: &Path| {
        let _ = std::fs::remove_file(p);
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    };
    let a = env.bundle(&dir, "fifo-config", &["sleep", "1000"]);
    mkfifo(&a.join("config.json"));
    let b = env.bundle(&dir, "fifo-settings", &["sleep", "1000"]);
    mkfifo(&b.join("service.yml"));
    env.bundle(&dir, "fine", &["sleep", "1000"]);
    let sup = env.system_init(&dir);
    sup.wait_running("fine");
    for (name, file) in [
        ("fifo-config", "config.json"),
        ("fifo-settings", "service.yml"),
    ] {
        let s = sup.wait_status(name, "failed", |s| s.state == "failed");
        let why = format!(
            "{}/{name}/{file} is a FIFO, not a regular file",
            dir.display()
        );
        assert!(s.reason.contains(&why), "{}", s.reason);
    }
    assert_eq!(env.containers(), vec!["fine".to_string()]);
}

/// A service that can see its log directory swaps its log for a symlink to a host file and
/// crashes: the supervisor, restarting it, must not append the service's output to that
/// file (nor create it).
#[test]
fn a_service_cannot_turn_its_log_into_a_write_to_a_host_file() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let secret = env.dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let target = secret.join("target");
    std::fs::write(&target, "kept\n").unwrap();
    let missing = secret.join("missing");
    let script = format!(
        "if [ ! -L /hostlog/esc.out.log ]; then rm -f /hostlog/esc.out.log /hostlog/esc.log; \
         ln -s {} /hostlog/esc.out.log; ln -s {} /hostlog/esc.log; exit 1; fi; \
         echo ATTACKER-KEY; echo ATTACKER-KEY >&2; exec sleep 1000",
        target.display(),
        missing.display()
    );
    let b = env.bundle(&dir, "esc", &["sh", "-c", &script]);
    std::fs::create_dir_all(&env.log_dir).unwrap();
    let log_dir = env.log_dir.clone();
    env.edit_config(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hostlog", "type": "bind", "source": log_dir, "options": ["rbind", "rw"]
        }));
    });
    std::fs::write(b.join("service.json"), r#"{"restartDelay": 0.1}"#).unwrap();
    let sup = env.system_init(&dir);
    sup.wait_status("esc", "restarted after swapping its logs", |s| {
        s.restarts >= 1 && s.state == "running"
    });
    // Its output goes nowhere rather than through the links.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept\n");
    assert!(!missing.exists(), "a file was created through the link");
    assert!(
        sup.log().contains("is a symlink"),
        "the supervisor says why the log is not written: {}",
        sup.log()
    );
}

/// The same for onboot: a container that leaves a symlink where the next bundle's log
/// goes cannot make onboot write through it.
#[test]
fn onboot_never_writes_a_log_through_a_symlink() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let target = env.dir.join("target");
    std::fs::write(&target, "kept\n").unwrap();
    std::fs::create_dir_all(&env.log_dir).unwrap();
    let log_dir = env.log_dir.clone();
    let b = env.bundle(
        &ob,
        "1-plant",
        &[
            "sh",
            "-c",
            &format!(
                "ln -s {} /hostlog/onboot.2-victim.out.log",
                target.display()
            ),
        ],
    );
    env.edit_config(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hostlog", "type": "bind", "source": log_dir, "options": ["rbind", "rw"]
        }));
    });
    env.bundle(&ob, "2-victim", &["echo", "ATTACKER-KEY"]);
    let fifo = env.log_dir.join("onboot.3-fifo.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    env.bundle(&ob, "3-fifo", &["echo", "x"]);
    env.bundle(&ob, "4-next", &["echo", "next ran"]);
    let r = Run::within(
        env.onboot_command(&ob, &["--timeout", "5"]),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(r.line("1-plant"), "1-plant: exit code 0");
    let line = r.line("2-victim");
    assert!(line.contains("is a symlink"), "{line}");
    assert!(
        r.line("3-fifo").contains("is a FIFO, not a regular file"),
        "{}",
        r.stdout
    );
    assert_eq!(r.line("4-next"), "4-next: exit code 0");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept\n");
}

/// A FIFO where a service's log file should be: `logs` answers at once with the reason,
/// and the supervisor goes on answering everyone else.
#[test]
fn a_fifo_for_a_service_log_hangs_nothing() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    env.bundle(&dir, "svc", &["sh", "-c", "echo up; exec sleep 1000"]);
    let sup = env.system_init(&dir);
    sup.wait_running("svc");
    let log = env.log_dir.join("svc.out.log");
    std::fs::remove_file(&log).unwrap();
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut c = env.cli();
    c.args(["logs", "svc"]);
    let r = Run::within(c, std::time::Duration::from_secs(30));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("is a FIFO, not a regular file"),
        "{}",
        r.stderr
    );
    let mut c = env.cli();
    c.arg("list");
    let r = Run::within(c, std::time::Duration::from_secs(30));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("svc"), "{}", r.stdout);
    // The service is killed and restarted: its new run's output is not stuck on the FIFO.
    let pid = sup.status("svc").pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    sup.wait_status("svc", "running again", |s| {
        s.state == "running" && s.pid.is_some_and(|p| p != pid)
    });
}

/// A log directory others may write in is refused with the reason, before anything runs.
#[test]
fn a_log_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "1-never", &["echo", "ran"]);
    std::fs::create_dir_all(&env.log_dir).unwrap();
    std::fs::set_permissions(&env.log_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("is writable by others (mode 0777"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("ran"), "{}", r.stdout);
}

/// With LinuxKit's log names, the stderr log of `a.out` is the stdout log of `a`: an onboot
/// bundle named so is refused (as a service is), and `a`'s log holds `a`'s output only.
#[test]
fn an_onboot_bundle_name_cannot_take_another_bundles_log() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "a", &["echo", "from a"]);
    env.bundle(&ob, "a.out", &["sh", "-c", "echo forged >&2"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.line("a"), "a: exit code 0");
    let line = r.line("a.out");
    assert!(
        line.contains("`a.out` cannot be a bundle name: its stderr log")
            && line.contains("onboot.a.out.log would be the stdout log of a bundle `a`"),
        "{line}"
    );
    assert_eq!(env.log("onboot.a.out.log"), "from a\n");
}
