//! Faults injected on purpose: each is reported on one line naming the bundle and the cause,
//! the other bundles are unaffected, and nothing is left behind: no mount, link, namespace
//! bind, runtime state, cgroup, lkinit state file or process (a census before and after),
//! and lkinit itself ends in the state it began, with the same descriptors and threads and
//! no zombie (seen through /proc while a probe bundle runs first and last).
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// A poststart hook that freezes the container's cgroup. runc 1.1 runs poststart hooks
/// during `create`, once the init waits for `start`; `start` then finds the container
/// paused and refuses it. A real runtime failure at exactly the `start` step.
fn freeze_at_create(env: &TestEnv, bundle: &Path, name: &str) {
    let cg = env.cgroups_path(name);
    let script = format!(
        "f=/sys/fs/cgroup/freezer{cg}/freezer.state; \
         if [ -e $f ]; then echo FROZEN > $f; else echo 1 > /sys/fs/cgroup{cg}/cgroup.freeze; fi"
    );
    env.edit_config(bundle, |c| {
        c["hooks"] = json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
}

#[test]
fn a_missing_or_unusable_runtime_fails_every_bundle_cleanly() {
    let mut env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    env.bundle(&ob, "1-run", &["true"]);
    let b = env.bundle(&ob, "2-bound", &["true"]);
    write_runtime(&b, json!({"bindNS": {"net": ns.join("net")}}));
    let b = env.rw_bundle(&ob, "3-rw", &["true"]);
    write_runtime(
        &b,
        json!({"mkdir": ["made/here"], "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "cache"}]}),
    );
    let noexec = env.dir.join("runc-noexec");
    std::fs::write(&noexec, "#!/bin/sh\nexit 0\n").unwrap();
    let before = env.census(&[&ns]);
    for (runtime, cause) in [
        ("/nonexistent/runc", "No such file or directory"),
        (noexec.to_str().unwrap(), "Permission denied"),
    ] {
        env.runtime = runtime.to_string();
        let r = env.onboot(&ob, &[]);
        assert_eq!(r.code, 1);
        for (name, step) in [("1-run", "run"), ("2-bound", "create"), ("3-rw", "run")] {
            let l = r.line(name);
            assert!(
                l.starts_with(&format!(
                    "{name}: error: {step}: cannot run the OCI runtime `{runtime}`: {cause}"
                )),
                "{l}"
            );
        }
        env.census(&[&ns]).assert_nothing_added_since(&before);
        assert!(!b.join("tmp").exists() && !b.join("rootfs/made").exists());
    }
    env.runtime = "runc".into();
}

#[test]
fn a_config_the_runtime_rejects_at_create_is_rolled_back() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (ns, host) = (env.dir.join("ns"), env.dir.join("host"));
    let (veth, peer) = (env.lname(), env.lname());
    // The create/start path (interfaces, bindNS), a writable root, relative and absolute
    // mounts: everything up to `create` is done, then the runtime refuses the config.
    let b = env.rw_bundle(&ob, "1-create", &["true"]);
    env.edit_config(&b, |c| c["process"]["cwd"] = json!("relative"));
    write_runtime(
        &b,
        json!({
            "interfaces": [{"name": veth, "peer": peer}],
            "bindNS": {"net": ns.join("net"), "uts": ns.join("uts")},
            "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": host.join("m")},
                       {"type": "tmpfs", "source": "tmpfs", "destination": "inner"}],
            "mkdir": [host.join("d"), "made"]
        }),
    );
    // The same refusal on the `run` path.
    let b2 = env.bundle(&ob, "2-run", &["true"]);
    env.edit_config(&b2, |c| c["process"]["cwd"] = json!("relative"));
    env.bundle(&ob, "3-next", &["echo", "next ran"]);
    let before = env.census(&[&ns, &host]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-create"),
        "1-create: error: create: `runc create` failed: runc create failed: Cwd must be an absolute path"
    );
    assert_eq!(
        r.line("2-run"),
        "2-run: error: run: `runc run` failed: runc run failed: Cwd must be an absolute path"
    );
    assert_eq!(r.line("3-next"), "3-next: exit code 0");
    assert!(r.stdout.contains("next ran\n"));
    env.census(&[&ns, &host])
        .assert_nothing_added_since(&before);
    assert!(!b.join("tmp").exists() && !b.join("rootfs/inner").exists());
    p.assert_lkinit_clean();
}

#[test]
fn a_start_the_runtime_refuses_is_rolled_back() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    let (veth, peer, ifb) = (env.lname(), env.lname(), env.lname());
    let b = env.rw_bundle(&ob, "1-start", &["echo", "never printed"]);
    freeze_at_create(&env, &b, "1-start");
    write_runtime(
        &b,
        json!({
            "interfaces": [{"name": veth, "peer": peer}, {"name": ifb, "add": "ifb"}],
            "bindNS": {"net": ns.join("net"), "uts": ns.join("sub/uts")},
            "mkdir": ["made"]
        }),
    );
    env.bundle(&ob, "2-next", &["echo", "next ran"]);
    let before = env.census(&[&ns]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-start"),
        "1-start: error: start: `runc start` failed: cannot start a container in the paused state"
    );
    assert!(!r.stdout.contains("never printed"));
    assert_eq!(r.line("2-next"), "2-next: exit code 0");
    env.census(&[&ns]).assert_nothing_added_since(&before);
    assert!(!has_link(None, &peer) && !has_link(None, &veth));
    assert!(!b.join("tmp").exists());
    p.assert_lkinit_clean();
}

#[test]
fn interface_name_clashes_are_refused_and_the_taken_links_untouched() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    let taken = env.lname();
    ip(&["link", "add", &taken, "type", "ifb"]);
    let before_link = link(None, &taken).unwrap();
    let (a, c, missing) = (env.lname(), env.lname(), env.lname());
    let b = env.bundle(&ob, "1-peer-taken", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": a, "peer": taken}], "bindNS": {"net": ns.join("1")}}),
    );
    let b = env.bundle(&ob, "2-taken-inside", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": c, "add": "ifb"}, {"name": "lo", "add": "ifb"}], "bindNS": {"net": ns.join("2")}}),
    );
    let b = env.bundle(&ob, "3-moved-taken", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": taken}, {"name": missing}]}),
    );
    let b = env.bundle(&ob, "4-root-taken", &["true"]);
    env.edit_config(&b, |c| share_namespace(c, "network"));
    write_runtime(&b, json!({"interfaces": [{"name": taken, "add": "ifb"}]}));
    env.bundle(&ob, "5-next", &["echo", "next ran"]);
    let before = env.census(&[&ns]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-peer-taken"),
        format!(
            "1-peer-taken: error: interfaces: interfaces[0] `{a}`: the name `{taken}` is already \
             taken in the root network namespace: File exists (os error 17)"
        )
    );
    assert_eq!(
        r.line("2-taken-inside"),
        "2-taken-inside: error: interfaces: interfaces[1] `lo`: the name `lo` is already taken \
         in the container's network namespace: File exists (os error 17)"
    );
    // The existing link is moved in, then the missing one fails: the first goes back.
    assert_eq!(
        r.line("3-moved-taken"),
        format!(
            "3-moved-taken: error: interfaces: interfaces[1] `{missing}`: no link named \
             `{missing}` in the root network namespace: No such device (os error 19)"
        )
    );
    assert_eq!(
        r.line("4-root-taken"),
        format!(
            "4-root-taken: error: interfaces: interfaces[0] `{taken}`: the name `{taken}` is \
             already taken in the root network namespace: File exists (os error 17)"
        )
    );
    assert_eq!(r.line("5-next"), "5-next: exit code 0");
    // Back where it was, under its name; a move out and in gives it a new index.
    let after_link = link(None, &taken).expect("the taken link is still there");
    assert_eq!(after_link.name, before_link.name);
    env.census(&[&ns]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
}

#[test]
fn bind_ns_under_a_read_only_mount_is_refused_and_earlier_binds_undone() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ro = env.read_only_dir();
    let ns = env.dir.join("ns");
    let b = env.bundle(&ob, "1-deep", &["true"]);
    write_runtime(
        &b,
        json!({"bindNS": {"net": ns.join("net"), "uts": ro.join("deep/uts")}}),
    );
    let b = env.bundle(&ob, "2-file", &["true"]);
    write_runtime(
        &b,
        json!({"bindNS": {"ipc": ns.join("sub/ipc"), "net": ro.join("net")}}),
    );
    env.bundle(&ob, "3-next", &["echo", "next ran"]);
    let before = env.census(&[&ns]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-deep"),
        format!(
            "1-deep: error: bindNS: bindNS.uts: cannot create the directories above {}: \
             `{}`: mkdir `deep`: Read-only file system (os error 30)",
            ro.join("deep/uts").display(),
            ro.strip_prefix("/").unwrap().join("deep").display()
        )
    );
    assert_eq!(
        r.line("2-file"),
        format!(
            "2-file: error: bindNS: bindNS.net: cannot create {}: Read-only file system (os error 30)",
            ro.join("net").display()
        )
    );
    assert_eq!(r.line("3-next"), "3-next: exit code 0");
    env.census(&[&ns]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
}

#[test]
fn a_rw_container_filling_its_tmpfs() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.rw_bundle(
        &ob,
        "1-fill",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1k count=4096 2>&1; df -k / | tail -1; exit 3",
        ],
    );
    env.edit_config(&b, |c| {
        c["annotations"] = json!({"lkinit.rootfs-size": "1m"})
    });
    env.rw_bundle(&ob, "2-next", &["sh", "-c", "echo fine > /f && cat /f"]);
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.line("1-fill"), "1-fill: exit code 3");
    assert!(r.stdout.contains("No space left on device"), "{}", r.stdout);
    assert_eq!(r.line("2-next"), "2-next: exit code 0");
    assert!(r.stdout.contains("fine\n"));
    assert!(!b.join("lower/big").exists());
    env.census(&[]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
}

#[test]
fn a_bad_rootfs_size_is_refused_before_anything_is_mounted() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.rw_bundle(&ob, "size", &["true"]);
    env.edit_config(&b, |c| {
        c["annotations"] = json!({"lkinit.rootfs-size": "1m,uid=5"})
    });
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("size");
    assert!(
        l.contains("lkinit.rootfs-size") && l.contains("1m,uid=5"),
        "{l}"
    );
    assert!(env.my_mounts().is_empty());
    assert!(!b.join("tmp").exists());
}

#[test]
fn containers_that_exit_at_once() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    env.bundle(&ob, "1-true", &["true"]);
    env.bundle(&ob, "2-exit7", &["sh", "-c", "exit 7"]);
    // Killed by a signal: as the init of its own pid namespace, sh would be immune to its
    // own SIGKILL, so these share the host's.
    let b = env.bundle(&ob, "3-killed", &["sh", "-c", "kill -9 $$"]);
    env.edit_config(&b, |c| share_namespace(c, "pid"));
    // The same on the create/start path: the init is claimed before `start`, so its status
    // cannot be missed however fast it goes.
    for (name, args) in [
        ("4-bound-true", vec!["true"]),
        ("5-bound-exit7", vec!["sh", "-c", "exit 7"]),
        ("6-bound-killed", vec!["sh", "-c", "kill -9 $$"]),
    ] {
        let b = env.bundle(&ob, name, &args);
        env.edit_config(&b, |c| share_namespace(c, "pid"));
        write_runtime(&b, json!({"bindNS": {"uts": ns.join(name)}}));
    }
    let b = env.bundle(&ob, "7-bound-nobinary", &["/no/such/binary"]);
    write_runtime(&b, json!({"bindNS": {"uts": ns.join("7")}}));
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(r.line("1-true"), "1-true: exit code 0");
    assert_eq!(r.line("2-exit7"), "2-exit7: exit code 7");
    // `runc run` reports a killed container as 128 + signal, which is all lkinit sees.
    assert_eq!(r.line("3-killed"), "3-killed: exit code 137");
    assert_eq!(r.line("4-bound-true"), "4-bound-true: exit code 0");
    assert_eq!(r.line("5-bound-exit7"), "5-bound-exit7: exit code 7");
    assert_eq!(
        r.line("6-bound-killed"),
        "6-bound-killed: exit code 137 (killed by SIGKILL)"
    );
    // runc 1.1 looks the binary up before `create` returns.
    let l = r.line("7-bound-nobinary");
    assert!(
        l.starts_with("7-bound-nobinary: error: create: `runc create` failed: ")
            && l.contains("/no/such/binary"),
        "{l}"
    );
    // The binds of the bundles that ran stay (on purpose); that of the failed one does not.
    env.census(&[]).assert_only_kept_since(
        &before,
        &[
            &ns.join("4-bound-true"),
            &ns.join("5-bound-exit7"),
            &ns.join("6-bound-killed"),
        ],
    );
    assert!(!ns.join("7").exists());
    p.assert_lkinit_clean();
}

#[test]
fn containers_that_never_end_are_killed_at_the_timeout() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    env.bundle(&ob, "1-hang", &["sleep", "1000"]);
    let b = env.bundle(&ob, "2-hang-bound", &["sleep", "1000"]);
    write_runtime(&b, json!({"bindNS": {"uts": ns.join("uts")}}));
    // A tree of processes sharing the host's pid namespace, its init ignoring SIGTERM: the
    // kill has to reach every one of them through the cgroup.
    let b = env.rw_bundle(
        &ob,
        "3-hang-tree",
        &["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000 & wait"],
    );
    env.edit_config(&b, |c| share_namespace(c, "pid"));
    env.bundle(&ob, "4-next", &["echo", "next ran"]);
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &["--timeout", "4"]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-hang"),
        "1-hang: timed out after 4s, killed: exit code 137"
    );
    assert_eq!(
        r.line("2-hang-bound"),
        "2-hang-bound: timed out after 4s, killed: exit code 137 (killed by SIGKILL)"
    );
    assert_eq!(
        r.line("3-hang-tree"),
        "3-hang-tree: timed out after 4s, killed: exit code 137"
    );
    assert_eq!(r.line("4-next"), "4-next: exit code 0");
    assert!(r.stdout.contains("next ran\n"));
    // Every process gone (census: none rooted in the test dir or in its cgroups), the
    // container deleted, only the namespace bind kept.
    env.census(&[]).assert_only_kept_since(&before, &[&ns]);
    assert!(is_mounted(&ns.join("uts")));
    p.assert_lkinit_clean();
}

#[test]
fn a_log_file_that_cannot_be_opened_fails_that_bundle_only() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "1-nolog", &["echo", "lost"]);
    env.bundle(&ob, "2-next", &["echo", "next ran"]);
    std::fs::create_dir_all(env.log_dir.join("onboot.1-nolog.log")).unwrap();
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-nolog"),
        format!(
            "1-nolog: error: logs: cannot open {}: Is a directory (os error 21)",
            env.log_dir.join("onboot.1-nolog.log").display()
        )
    );
    assert_eq!(r.line("2-next"), "2-next: exit code 0");
    env.census(&[]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
}

#[test]
fn a_namespace_nobody_holds_goes_with_its_container_while_lkinit_runs_on() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (ifb, veth, peer) = (env.lname(), env.lname(), env.lname());
    // First of all (before the probes' warm-up), and inside the container's namespace
    // first: lkinit's first use of netlink is what could tie process-wide things to it.
    // The veth end moved in after shows from the host whether the namespace lives on.
    let b = env.bundle(&ob, "0-veth", &["ip", "link"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": ifb, "add": "ifb"}, {"name": veth, "peer": peer}]}),
    );
    let before = env.census(&[]);
    let mut gone_while_running = false;
    let p = env.onboot_probed_during(&ob, &[], || {
        gone_while_running = eventually(|| !has_link(None, &peer));
    });
    assert_eq!(p.run.line("0-veth"), "0-veth: exit code 0");
    assert!(p.run.stdout.contains(&veth), "{}", p.run.stdout);
    // The container ended and nothing holds its namespace: the veth pair went with it,
    // long before lkinit exits.
    assert!(
        gone_while_running,
        "the host end {peer} outlived its namespace"
    );
    env.census(&[]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
}

/// lkinit's child running `RUNTIME run ... NAME`, if there is one.
fn runtime_run_of(lkinit: i32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, r)| r.split(' ').nth(1)?.parse::<i32>().ok());
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            ppid == Some(lkinit) && cmd.contains(" run ") && cmd.trim_end().ends_with(name)
        })
}

#[test]
fn the_runtime_dying_under_a_running_container() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    // It says it runs, then waits for a go that never comes.
    let victim = env.probe(&ob, "1-orphaned");
    env.bundle(&ob, "2-next", &["echo", "next ran"]);
    let before = env.census(&[]);
    let bg = env.onboot_bg(&ob, &[]);
    assert!(
        eventually(|| victim.ready().exists()),
        "the container never ran"
    );
    let runc = runtime_run_of(bg.pid(), "1-orphaned").expect("runc run is lkinit's child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runc),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = bg.finish();
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-orphaned"),
        "1-orphaned: error: run: `runc run` was killed by SIGKILL"
    );
    assert_eq!(r.line("2-next"), "2-next: exit code 0");
    // The container it left running is killed and deleted, its processes gone.
    env.census(&[]).assert_nothing_added_since(&before);
}

#[test]
fn processes_a_container_leaves_behind_go_with_it() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    // Without a pid namespace of its own, nothing kills a container's other processes when
    // its init ends; one keeps its stdout open, the other has let go of it.
    for (name, bound) in [("1-daemon", false), ("2-daemon-bound", true)] {
        let b = env.bundle(
            &ob,
            name,
            &[
                "sh",
                "-c",
                "sleep 1000 & sleep 1000 </dev/null >/dev/null 2>&1 & echo started",
            ],
        );
        env.edit_config(&b, |c| share_namespace(c, "pid"));
        if bound {
            write_runtime(&b, json!({"bindNS": {"uts": ns.join(name)}}));
        }
    }
    env.bundle(&ob, "3-next", &["echo", "next ran"]);
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &[]);
    let r = &p.run;
    assert_eq!(r.line("1-daemon"), "1-daemon: exit code 0");
    assert_eq!(r.line("2-daemon-bound"), "2-daemon-bound: exit code 0");
    assert_eq!(r.line("3-next"), "3-next: exit code 0");
    env.census(&[]).assert_only_kept_since(&before, &[&ns]);
    p.assert_lkinit_clean();
}

#[test]
fn lkinits_own_directories_on_a_read_only_mount() {
    let mut env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ro = env.read_only_dir();
    env.bundle(&ob, "1-run", &["true"]);
    let b = env.bundle(&ob, "2-bound", &["true"]);
    write_runtime(&b, json!({"bindNS": {"uts": env.dir.join("ns/uts")}}));
    let before = env.census(&[]);
    // The state dir (pid files, runtime logs).
    let state = env.state_dir.clone();
    env.state_dir = ro.join("state");
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    for name in ["1-run", "2-bound"] {
        assert_eq!(
            r.line(name),
            format!(
                "{name}: error: config: cannot create {}: Read-only file system (os error 30)",
                ro.join("state/pids").display()
            )
        );
    }
    env.state_dir = state;
    // The runtime's root: runc says so.
    let root = env.runtime_root.clone();
    env.runtime_root = ro.join("root");
    let r = env.onboot(&ob, &[]);
    env.runtime_root = root;
    assert_eq!(r.code, 1);
    for (name, op) in [("1-run", "run"), ("2-bound", "create")] {
        let l = r.line(name);
        assert!(
            l.starts_with(&format!("{name}: error: {op}: `runc {op}` failed: "))
                && l.contains("read-only file system"),
            "{l}"
        );
    }
    env.census(&[]).assert_nothing_added_since(&before);
}

/// A hook that never returns: the runtime itself hangs, before the container's process
/// even starts. It works in the bundle dir, so the census sees it if it is left.
fn hanging_hook(env: &TestEnv, bundle: &Path, kind: &str) {
    let script = format!("cd {} && exec sleep 1000", bundle.display());
    env.edit_config(bundle, |c| {
        c["hooks"] = json!({kind: [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
}

#[test]
fn a_runtime_hanging_in_a_hook_is_bounded_by_the_timeout() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    // runc 1.1 runs poststart hooks inside `create`, after the container's state is saved;
    // createRuntime hooks run earlier, before it is. A bundle with hooks goes through
    // create and start (each bounded) even when it has nothing to set up between them.
    let b = env.bundle(&ob, "1-poststart-plain", &["echo", "never"]);
    hanging_hook(&env, &b, "poststart");
    let b = env.rw_bundle(&ob, "2-poststart-bound", &["echo", "never"]);
    hanging_hook(&env, &b, "poststart");
    write_runtime(
        &b,
        json!({"bindNS": {"uts": ns.join("uts")}, "mkdir": ["made"]}),
    );
    let b = env.bundle(&ob, "3-create-runtime-plain", &["echo", "never"]);
    hanging_hook(&env, &b, "createRuntime");
    let b = env.bundle(&ob, "4-create-runtime-bound", &["echo", "never"]);
    hanging_hook(&env, &b, "createRuntime");
    write_runtime(&b, json!({"bindNS": {"uts": ns.join("uts4")}}));
    env.bundle(&ob, "5-next", &["echo", "next ran"]);
    let before = env.census(&[]);
    let p = env.onboot_probed(&ob, &["--timeout", "3"]);
    let r = &p.run;
    assert_eq!(r.code, 1);
    for name in [
        "1-poststart-plain",
        "2-poststart-bound",
        "3-create-runtime-plain",
        "4-create-runtime-bound",
    ] {
        assert_eq!(
            r.line(name),
            format!(
                "{name}: error: create: `runc create` did not end within the timeout (3s) \
                 and was killed"
            )
        );
    }
    assert!(!r.stdout.contains("never\n"));
    assert_eq!(r.line("5-next"), "5-next: exit code 0");
    // The hooks went with the runtimes that ran them; the runtime's state and cgroups too.
    env.census(&[]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
}

/// `run` that cannot start the container's program is a launch that failed, as on the
/// create/start path: what was made for the bundle is undone, the host mounts and
/// directories meant to outlive a container that ran too.
#[test]
fn a_run_that_cannot_exec_the_program_is_rolled_back() {
    for runtime in ["runc", "crun"] {
        let env = TestEnv::with_runtime(runtime);
        let ob = env.bundles_dir("onboot");
        let host = env.dir.join("host");
        let b = env.bundle(&ob, "1-noexec", &["/no/such/program"]);
        write_runtime(
            &b,
            json!({
                "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": host.join("m")}],
                "mkdir": [host.join("d/e")]
            }),
        );
        env.bundle(&ob, "2-next", &["echo", "next ran"]);
        let before = env.census(&[&host]);
        let r = if runtime == "crun" {
            crun_onboot(&env, &ob)
        } else {
            env.onboot(&ob, &[])
        };
        assert_eq!(r.code, 1, "{runtime}");
        let line = r.line("1-noexec");
        assert!(
            line.starts_with(&format!("1-noexec: error: run: `{runtime} run` failed")),
            "{runtime}: {line}"
        );
        assert_eq!(r.line("2-next"), "2-next: exit code 0");
        env.census(&[&host]).assert_nothing_added_since(&before);
        assert!(!host.exists(), "{runtime}: {host:?} left");
    }
}
/// A poststop hook that never returns holds `RUNTIME delete`, the last step of a bundle:
/// the timeout covers it too (with a few seconds for the cleanup once the time is up), and
/// without a timeout the delete's own bound ends it. The hook is killed, what the killed
/// delete left is cleared, the bundle is reported with the reason, and the next one runs.
fn a_poststop_hook_holding_the_delete(runtime: &str) {
    let env = TestEnv::with_runtime(runtime);
    let ob = env.bundles_dir("onboot");
    let ns = env.dir.join("ns");
    let b = env.rw_bundle(&ob, "1-bound", &["echo", "ran"]);
    hanging_hook(&env, &b, "poststop");
    write_runtime(
        &b,
        json!({"bindNS": {"uts": ns.join("uts")}, "mkdir": ["made"]}),
    );
    let b = env.bundle(&ob, "2-plain", &["echo", "ran too"]);
    hanging_hook(&env, &b, "poststop");
    env.bundle(&ob, "3-next", &["echo", "next ran"]);
    let before = env.census(&[&ns]);
    let onboot = |extra: &[&str]| {
        let c = match runtime {
            "crun" => crun_onboot_command(&env, &ob, extra),
            _ => env.onboot_command(&ob, extra),
        };
        run_within(c, Duration::from_secs(300), "onboot").0
    };
    let begun = std::time::Instant::now();
    let r = onboot(&["--timeout", "5"]);
    eprintln!("{runtime}: onboot --timeout 5 took {:?}", begun.elapsed());
    assert_eq!(r.code, 1);
    for name in ["1-bound", "2-plain"] {
        let l = r.line(name);
        // Bounded by what is left of the 5 s, and at least 3 s.
        assert!(
            l.starts_with(&format!("{name}: error: exit code 0; cleanup failed: "))
                && l.contains(&format!(
                    "`{runtime} delete` did not end within the timeout"
                )),
            "{l}"
        );
    }
    assert_eq!(r.line("3-next"), "3-next: exit code 0");
    assert_eq!(env.log("onboot.1-bound.out.log"), "ran\n");
    let uts = ns.join("uts");
    env.census(&[&ns])
        .assert_only_kept_since(&before, &[&uts, &ns]);
    // Without a timeout, the delete's own bound.
    let begun = std::time::Instant::now();
    let r = onboot(&[]);
    eprintln!(
        "{runtime}: onboot without a timeout took {:?}",
        begun.elapsed()
    );
    for name in ["1-bound", "2-plain"] {
        let l = r.line(name);
        assert!(
            l.contains(&format!(
                "`{runtime} delete` did not end within the timeout (10s) and was killed"
            )),
            "{l}"
        );
    }
    assert_eq!(r.line("3-next"), "3-next: exit code 0");
    env.census(&[&ns])
        .assert_only_kept_since(&before, &[&uts, &ns]);
    if is_mounted(&uts) {
        env.track_mount(&uts);
    }
}

#[test]
fn a_poststop_hook_that_never_returns_is_bounded_in_onboot() {
    a_poststop_hook_holding_the_delete("runc");
}

#[test]
fn a_poststop_hook_that_never_returns_is_bounded_in_onboot_through_crun() {
    a_poststop_hook_holding_the_delete("crun");
}
