//! `service exec`, `service mount`/`umount` against services started with real runc, and
//! bundles with user namespaces through `lkinit onboot`.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A container started with the runtime directly, as a supervisor would leave it running.
struct Service {
    name: String,
    bundle: PathBuf,
    pid: i32,
}

const USERNS_HOST_ID: u32 = 200000;

fn userns_config(c: &mut Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": USERNS_HOST_ID, "size": 65536}]);
    c["linux"]["uidMappings"] = map.clone();
    c["linux"]["gidMappings"] = map;
}

/// Starts `sleep` in a busybox bundle whose rootfs is bind-mounted onto itself, as lkinit
/// prepares it. Its hostname is its name, its working directory /etc, and its rootfs holds
/// a file the host does not have.
fn start_service(env: &TestEnv, edit: impl FnOnce(&mut Value)) -> Service {
    let name = unique("svc");
    let parent = env.bundles_dir("services");
    let bundle = env.bundle(&parent, &name, &["sleep", "1000"]);
    env.edit_config(&bundle, |c| {
        c["hostname"] = json!(name);
        c["process"]["cwd"] = json!("/etc");
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("SVC_VAR=from-the-service"));
        edit(c);
    });
    let rootfs = bundle.join("rootfs");
    std::fs::write(rootfs.join("only-in-service"), "service file\n").unwrap();
    env.run_detached_by_hand(&bundle, &name);
    let pid = i32::try_from(env.runtime_state(&name)["pid"].as_i64().unwrap()).unwrap();
    Service { name, bundle, pid }
}

fn exec(env: &TestEnv, args: &[&str]) -> Run {
    let mut c = env.lkinit();
    c.arg("exec").args(args);
    Run::of(c)
}

fn lk(env: &TestEnv, args: &[&str]) -> Run {
    let mut c = env.lkinit();
    c.args(args);
    Run::of(c)
}

fn host_readlink(p: &str) -> String {
    std::fs::read_link(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A link only the host has (ifb: this kernel creates it), removed by the guard.
fn host_link(env: &TestEnv) -> String {
    let name = unique("lkx");
    let st = Command::new("ip")
        .args(["link", "add", &name, "type", "ifb"])
        .status()
        .unwrap();
    assert!(st.success());
    env.track_link(&name);
    name
}

/// The host's mount table lines that concern this test's files.
fn host_mounts_of(env: &TestEnv) -> Vec<String> {
    let d = env.dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&d))
        .map(str::to_string)
        .collect()
}

fn service_mounts(svc: &Service) -> String {
    std::fs::read_to_string(format!("/proc/{}/mountinfo", svc.pid)).unwrap()
}

#[test]
fn exec_joins_the_service_namespaces_root_and_cwd() {
    let env = TestEnv::new();
    let svc = start_service(&env, |_| {});
    let link = host_link(&env);

    let r = exec(
        &env,
        &[
            &svc.name,
            "--",
            "sh",
            "-c",
            "hostname; pwd; echo $SVC_VAR; cat /only-in-service; ip -o link",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], svc.name, "its uts namespace");
    assert_eq!(lines[1], "/etc", "its working directory");
    assert_eq!(lines[2], "from-the-service", "its environment");
    assert_eq!(lines[3], "service file", "its root");
    let links = &lines[4..];
    assert_eq!(links.len(), 1, "only its links: {links:?}");
    assert!(links[0].contains(": lo:"), "{links:?}");
    assert!(!r.stdout.contains(&link));

    // Every namespace of the command is the service's (pid too: the command is a child of
    // the one that joined), and not the host's.
    let kinds = ["mnt", "uts", "ipc", "net", "pid"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let r = exec(&env, &[&svc.name, "--", "sh", "-c", &script]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inside: Vec<&str> = r.stdout.lines().collect();
    for (k, got) in kinds.iter().zip(&inside) {
        assert_eq!(
            *got,
            host_readlink(&format!("/proc/{}/ns/{k}", svc.pid)),
            "{k}"
        );
        assert_ne!(*got, host_readlink(&format!("/proc/self/ns/{k}")), "{k}");
    }
    assert_eq!(inside.len(), kinds.len());

    // And its cgroups: the command counts against the service.
    let r = exec(&env, &[&svc.name, "--", "cat", "/proc/self/cgroup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let theirs = std::fs::read_to_string(format!("/proc/{}/cgroup", svc.pid)).unwrap();
    assert_eq!(r.stdout, theirs);
    assert!(theirs.contains(&svc.name), "{theirs}");
}

#[test]
fn exec_passes_stdin_and_forwards_the_exit_status() {
    let env = TestEnv::new();
    let svc = start_service(&env, |_| {});

    let mut c = env.lkinit();
    c.args(["exec", &svc.name, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    assert_eq!(out.status.code(), Some(0));

    let r = exec(&env, &[&svc.name, "--", "sh", "-c", "echo out; exit 7"]);
    assert_eq!(r.code, 7);
    assert_eq!(r.stdout, "out\n");
    let r = exec(&env, &[&svc.name, "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(r.code, 128 + 9);
    let r = exec(&env, &[&svc.name, "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(r.code, 128 + 15);
    // Nothing of lkinit's own shows up for a command that merely fails.
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn exec_reports_what_went_wrong() {
    let env = TestEnv::new();
    let svc = start_service(&env, |_| {});

    let r = exec(&env, &[&svc.name, "--", "nosuchcmd", "arg"]);
    assert_eq!(r.code, 127);
    assert!(
        r.stderr.contains(&format!(
            "exec: `nosuchcmd` not found in /bin, /usr/sbin, /usr/bin of service {}",
            svc.name
        )),
        "{}",
        r.stderr
    );

    // Found, but not executable.
    let r = exec(&env, &[&svc.name, "--", "/only-in-service"]);
    assert_eq!(r.code, 126);
    assert!(
        r.stderr.contains("cannot execute `/only-in-service`") && r.stderr.contains("denied"),
        "{}",
        r.stderr
    );

    let unknown = unique("nosvc");
    let r = exec(&env, &[&unknown, "--", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains(&format!(
            "exec: no service `{unknown}`: `runc` knows no container"
        )),
        "{}",
        r.stderr
    );

    let r = exec(&env, &["--ns", "net,time", &svc.name, "--", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("unknown namespace `time`"),
        "{}",
        r.stderr
    );

    // A container that has exited is not a service one can enter.
    let stopped = start_service(&env, |c| c["process"]["args"] = json!(["true"]));
    for _ in 0..100 {
        if env.runtime_state(&stopped.name)["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = exec(&env, &[&stopped.name, "--", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains(&format!(
            "service `{}` is stopped, not running",
            stopped.name
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn exec_joins_only_the_namespaces_asked_for() {
    let env = TestEnv::new();
    let svc = start_service(&env, |_| {});
    let link = host_link(&env);
    let script = "hostname; test -e /only-in-service && echo service-root || echo host-root; \
                  echo $CALLER_VAR; ip -o link";

    // uts alone: its hostname, the host's filesystem, network and environment.
    let mut c = env.lkinit();
    c.env("CALLER_VAR", "from-the-caller")
        .args(["exec", "--ns", "uts", &svc.name, "--", "sh", "-c", script]);
    let r = Run::of(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], svc.name);
    assert_eq!(lines[1], "host-root");
    assert_eq!(lines[2], "from-the-caller");
    assert!(r.stdout.contains(&link), "the host's links: {}", r.stdout);

    // net and mnt: its links and its root, the host's hostname.
    let host_name = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let r = exec(
        &env,
        &["--ns", "net,mnt", &svc.name, "--", "sh", "-c", script],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], host_name);
    assert_eq!(lines[1], "service-root");
    assert_eq!(
        lines[2], "",
        "its environment, without the caller's variable"
    );
    assert_eq!(lines.len(), 4, "lo only: {lines:?}");
}

#[test]
fn mount_plugs_a_host_directory_in_and_umount_takes_it_out() {
    let env = TestEnv::new();
    // A writable root, so the missing destination can be created.
    let svc = start_service(&env, |c| c["root"]["readonly"] = json!(false));
    let src = env.dir.join("host-src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "from the host\n").unwrap();
    let src_file = env.dir.join("host-file");
    std::fs::write(&src_file, "a single file\n").unwrap();
    let host_before = host_mounts_of(&env);

    let r = lk(
        &env,
        &["mount", &svc.name, src.to_str().unwrap(), "/srv/data"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lk(
        &env,
        &[
            "mount",
            &svc.name,
            src_file.to_str().unwrap(),
            "/etc/plugged",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = exec(
        &env,
        &[
            &svc.name,
            "--",
            "sh",
            "-c",
            "cat /srv/data/f /etc/plugged && echo back > /srv/data/written",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "from the host\na single file\n");
    assert_eq!(
        std::fs::read_to_string(src.join("written")).unwrap(),
        "back\n"
    );
    let inside = service_mounts(&svc);
    assert!(inside.contains(" /srv/data "), "{inside}");
    assert!(inside.contains(" /etc/plugged "), "{inside}");
    assert_eq!(
        host_mounts_of(&env),
        host_before,
        "the host's mounts changed"
    );

    let r = lk(&env, &["umount", &svc.name, "/srv/data"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = exec(&env, &[&svc.name, "--", "test", "-e", "/srv/data/f"]);
    assert_eq!(r.code, 1, "still visible after umount");
    assert!(!service_mounts(&svc).contains(" /srv/data "));
    // The mount point it made stays, empty, in the service's root.
    assert!(svc.bundle.join("rootfs/srv/data").is_dir());

    let r = lk(&env, &["umount", &svc.name, "/srv/data"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "umount: /srv/data is not a mount point in service {}",
            svc.name
        )),
        "{}",
        r.stderr
    );
    assert_eq!(host_mounts_of(&env), host_before);
}

#[test]
fn mount_failures_are_reported_and_change_nothing() {
    let env = TestEnv::new();
    let svc = start_service(&env, |_| {});
    let src = env.dir.join("host-src");
    std::fs::create_dir(&src).unwrap();
    let src_file = env.dir.join("host-file");
    std::fs::write(&src_file, "x").unwrap();
    let host_before = host_mounts_of(&env);
    let inside_before = service_mounts(&svc);

    let missing = env.dir.join("no-such-source");
    let r = lk(
        &env,
        &["mount", &svc.name, missing.to_str().unwrap(), "/run"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "mount: cannot take {} from the host: No such file or directory",
            missing.display()
        )),
        "{}",
        r.stderr
    );

    // A read-only root: the missing destination cannot be made.
    let r = lk(
        &env,
        &["mount", &svc.name, src.to_str().unwrap(), "/new/dir"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("/new/dir in service") && r.stderr.contains("Read-only file system"),
        "{}",
        r.stderr
    );
    assert!(!svc.bundle.join("rootfs/new").exists());

    // A file on a directory.
    let r = lk(
        &env,
        &["mount", &svc.name, src_file.to_str().unwrap(), "/run"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("/run in service") && r.stderr.contains("is a directory but"),
        "{}",
        r.stderr
    );

    let r = lk(&env, &["mount", &svc.name, src.to_str().unwrap(), "run"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("must be an absolute path"),
        "{}",
        r.stderr
    );

    let unknown = unique("nosvc");
    let r = lk(&env, &["mount", &unknown, src.to_str().unwrap(), "/run"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("no service `{unknown}`")),
        "{}",
        r.stderr
    );

    assert_eq!(host_mounts_of(&env), host_before);
    assert_eq!(service_mounts(&svc), inside_before);
}

#[test]
fn exec_and_mount_in_a_user_namespaced_service() {
    let env = TestEnv::new();
    let svc = start_service(&env, userns_config);
    let src = env.dir.join("host-src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "plugged\n").unwrap();

    let r = exec(
        &env,
        &[
            &svc.name,
            "--",
            "sh",
            "-c",
            "id -u; id -g; readlink /proc/self/ns/user; cat /proc/self/uid_map",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&lines[..2], ["0", "0"], "root of its user namespace");
    let theirs = host_readlink(&format!("/proc/{}/ns/user", svc.pid));
    assert_eq!(lines[2], theirs);
    assert_ne!(lines[2], host_readlink("/proc/self/ns/user"));
    let map: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(map, ["0", &USERNS_HOST_ID.to_string(), "65536"]);

    let r = lk(&env, &["mount", &svc.name, src.to_str().unwrap(), "/run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = exec(&env, &[&svc.name, "--", "cat", "/run/f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "plugged\n");
    let r = lk(&env, &["umount", &svc.name, "/run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn user_namespaced_rw_bundle_writes_its_rootfs() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let name = unique("userns");
    let script = "touch /newfile && mkdir /newdir && echo data > /etc/written && \
                  touch /bin/added && rm /bin/ls && \
                  stat -c '%u:%g %n' / /newfile /etc /etc/written && cat /etc/secret";
    let b = env.rw_bundle(&ob, &name, &["sh", "-c", script]);
    env.edit_config(&b, userns_config);
    // An image file only host root may read: root inside owns it through the id mapping.
    let secret = b.join("lower/etc/secret");
    std::fs::write(&secret, "secret-content\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let r = env.onboot(&ob, &[]);
    assert_eq!(
        r.line(&name),
        format!("{name}: exit code 0"),
        "{}",
        r.stdout
    );
    for l in [
        "0:0 /\n",
        "0:0 /newfile\n",
        "0:0 /etc\n",
        "0:0 /etc/written\n",
    ] {
        assert!(r.stdout.contains(l), "`{l}` in:\n{}", r.stdout);
    }
    assert!(r.stdout.contains("secret-content\n"));
    // Writes never reach lower/, and nothing stays mounted.
    assert!(!b.join("lower/etc/written").exists());
    assert!(!b.join("lower/bin/added").exists());
    assert!(b.join("lower/bin/ls").exists());
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(!b.join("tmp/lower").exists());
}

#[test]
fn user_namespace_without_mappings_is_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let name = unique("nomap");
    let b = env.rw_bundle(&ob, &name, &["true"]);
    env.edit_config(&b, |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
    });
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line(&name);
    let config = b.join("config.json");
    assert!(
        line.contains(&format!(
            "{}: a user namespace needs linux.uidMappings",
            config.display()
        )),
        "{line}"
    );
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(env.containers().is_empty());
    assert!(!Path::new(&b.join("tmp")).exists());
}

/// `exec`, `mount` and `umount` learn the runtime and its root from the supervisor on
/// `--sock`: a supervisor started with a runtime root of its own is reached without
/// repeating it (before, `exec` answered that runc knew no such container).
#[test]
fn exec_finds_the_runtime_the_supervisor_uses() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let mut c = common::config(
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        &env.cgroups_path("web"),
    );
    c["hostname"] = serde_json::json!("web-host");
    let b = dir.join("web");
    common::make_rootfs(&b.join("rootfs"));
    env.write_config(&b, c);
    let sup = env.system_init(&dir);
    sup.wait_running("web");
    // Neither --runtime nor --runtime-root: only the socket.
    let plain = |args: &[&str]| {
        let mut c = std::process::Command::new(LKINIT);
        c.arg("--sock").arg(env.sock()).args(args);
        Run::of(c)
    };
    let r = plain(&["exec", "web", "--", "hostname"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "web-host");
    let src = env.dir.join("plug");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "plugged\n").unwrap();
    let r = plain(&["mount", "web", src.to_str().unwrap(), "/tmp"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = plain(&["exec", "web", "--", "cat", "/tmp/f"]);
    assert_eq!(r.stdout, "plugged\n", "{}", r.stderr);
    let r = plain(&["umount", "web", "/tmp"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
