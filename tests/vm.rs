//! The whole life of a system: the example image (Debian's kernel, an initramfs built by
//! scripts/build-image.sh with this build of lkinit as init and the bundles of examples/)
//! boots in QEMU without KVM, and its console is checked from the first lkinit line to the
//! kernel's power-down line.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::qemu::{count, find, in_order, line_with};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const LKINIT: &str = env!("CARGO_BIN_EXE_lkinit");

/// Generous: a TCG boot takes well under a minute here, CI machines may be slower.
const BOOT_LIMIT: Duration = Duration::from_secs(420);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the image build and the boot need.
fn ensure_tools() {
    common::ensure_installed(&[
        "qemu-system-x86_64",
        "cpio",
        "depmod",
        "busybox",
        "crun",
        "strip",
    ]);
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().expect("runs");
    assert!(st.success(), "{cmd:?}: {st}");
}

/// Copies the example bundles of `phases` (all of a phase, or the named ones) into
/// `dir/containers`.
fn example_containers(dir: &std::path::Path, phases: &[(&str, Option<&[&str]>)]) -> PathBuf {
    let containers = dir.join("containers");
    for (phase, names) in phases {
        let to = containers.join(phase);
        std::fs::create_dir_all(&to).unwrap();
        let from = repo().join("examples").join(phase);
        let all: Vec<String> = std::fs::read_dir(&from)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in all {
            if names.is_none_or(|n| n.contains(&name.as_str())) {
                sh(Command::new("cp").arg("-a").arg(from.join(&name)).arg(&to));
            }
        }
    }
    containers
}

/// Builds the image of `containers` (and the `extra` tree) in `out` with the test's lkinit.
fn build_image(
    containers: &std::path::Path,
    extra: Option<&std::path::Path>,
    out: &std::path::Path,
) {
    let mut c = Command::new(repo().join("scripts/build-image.sh"));
    c.arg("--lkinit")
        .arg(LKINIT)
        .arg("--containers")
        .arg(containers)
        .arg("--out")
        .arg(out);
    if let Some(e) = extra {
        c.arg("--extra").arg(e);
    }
    sh(&mut c);
}

/// Boots the image in `image` with `append` as the kernel command line until QEMU exits
/// (the machine powered off); its console. Fails the test if QEMU still runs after
/// BOOT_LIMIT or exits with an error.
fn boot(image: &std::path::Path, append: &str) -> String {
    let boot = common::qemu::boot(
        &image.join("vmlinuz"),
        &image.join("initrd.img"),
        append,
        BOOT_LIMIT,
    );
    boot.assert_ended();
    let console = boot.console;
    // No panic, no fatal error of PID 1.
    assert!(!console.contains("Kernel panic"));
    assert!(!console.contains("fatal:"), "PID 1 reported a fatal error");
    console
}

#[test]
fn example_image_boots_runs_and_powers_off() {
    ensure_tools();
    let tmp = tempfile::Builder::new()
        .prefix("lkinit-vm")
        .tempdir()
        .unwrap();
    let containers = example_containers(
        tmp.path(),
        &[("onboot", None), ("services", None), ("onshutdown", None)],
    );
    let onboot_names: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(containers.join("onboot"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().join("config.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let image = tmp.path().join("image");
    build_image(&containers, None, &image);

    // The image's own kernel parameters (it ships crun and says so).
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    assert_eq!(cmdline.trim(), "lkinit.runtime=crun");
    let console = boot(
        &image,
        &format!("console=ttyS0 panic=-1 quiet {}", cmdline.trim()),
    );

    // The root left the initramfs without a copy (or the runtime could not pivot_root),
    // and the early mounts are in the mount table PID 1 read back.
    let mut at = find(
        &console,
        "made the initramfs root a bind mount of itself (no copy)",
        0,
    );
    at = find(&console, "lkinit: early mounts: ", at);
    let mounts = line_with(&console, "lkinit: early mounts: ");
    for m in [
        "/ rootfs shared",
        "/proc proc",
        "/sys sysfs",
        "/dev devtmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys/fs/cgroup cgroup2",
        "/run tmpfs",
        "/tmp tmpfs",
        "/var tmpfs",
    ] {
        assert!(
            mounts.contains(&format!(" {m},")) || mounts.ends_with(&format!(" {m}")),
            "`{m}` not in: {mounts}"
        );
    }
    let modules = line_with(&console, "lkinit: modules: loaded ");
    for m in ["overlay", "veth", "dummy", "bridge"] {
        assert!(modules.contains(m), "{m} not loaded: {modules}");
    }
    assert!(console.contains("lkinit: hostname: lkinit"));
    // The runtime the image ships, named on the kernel command line.
    find(
        &console,
        "lkinit: OCI runtime: crun (lkinit.runtime on the kernel command line)",
        0,
    );

    // Every onboot bundle ran, in name order, and succeeded.
    at = find(&console, "lkinit: onboot: starting", at);
    for name in &onboot_names {
        at = find(&console, &format!("\n{name}: exit code 0"), at);
    }
    at = find(&console, "lkinit: onboot: finished", at);
    at = find(&console, "lkinit: supervisor started", at);
    // The services started after onboot, and one asked PID 1 to power off (what the
    // container and PID 1 print reaches the console in either order).
    find(&console, "greeter: started at uptime", at);
    let asked = find(&console, "poweroff: started at uptime", at);
    find(&console, "poweroff: SIGUSR2 to pid 1", asked);
    at = find(&console, "lkinit: SIGUSR2 from pid ", asked);
    assert!(line_with(&console, "lkinit: SIGUSR2 from pid ").ends_with(": power off"));

    // The ordered shutdown.
    at = in_order(
        &console,
        at,
        &[
            "lkinit: shutting down to power off",
            "lkinit: onshutdown: starting",
            "goodbye from onshutdown",
            "000-goodbye: exit code 0",
            "lkinit: onshutdown: finished",
        ],
    );
    // The supervisor stopped the services (both report their SIGTERM) and exited 0.
    let stop = find(&console, "lkinit: stopping the supervisor", at);
    let greeter = find(&console, "greeter: stopping on SIGTERM", stop);
    let poweroff = find(&console, "poweroff: stopping on SIGTERM", stop);
    at = find(&console, "lkinit: supervisor stopped: exit code 0", stop);
    assert!(
        greeter < at && poweroff < at,
        "the services outlived the supervisor"
    );
    assert!(!console.contains("sending SIGTERM to every process"));
    in_order(
        &console,
        at,
        &[
            "lkinit: unmounted ",
            "lkinit: power off",
            "reboot: Power down",
        ],
    );
}

/// Writes an executable script `body` (after `#!/bin/sh`) at `path`.
fn script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// LinuxKit's boot contract: `/etc/init.d` at boot and `/etc/shutdown.d` at shutdown, in
/// name order, with lkinit's steps where LinuxKit's packages link `/usr/bin/service`
/// (`010-onboot`, `020-containerd`, `010-onshutdown`), each once; a failing and a hanging
/// hook reported and the boot going on; a hook's daemon left running; a volume ready before
/// onboot; the /var layout, limits, resolv.conf of rc.init; and, from the kernel command
/// line, cgroup v1, the runtime's debug messages on the console and the onboot time limit
/// (a bundle that never ends cut at it, one cut sooner by its annotation, the boot going on).
#[test]
fn linuxkit_hooks_steps_and_switches() {
    ensure_tools();
    let tmp = tempfile::Builder::new()
        .prefix("lkinit-vm")
        .tempdir()
        .unwrap();
    let containers = example_containers(
        tmp.path(),
        &[
            ("onboot", Some(&["000-hello"])),
            ("onshutdown", Some(&["000-goodbye"])),
        ],
    );
    // A bundle the runtime cannot start: its message reaches the console.
    let missing = containers.join("onboot/005-missing");
    sh(Command::new("cp")
        .arg("-a")
        .arg(containers.join("onboot/000-hello"))
        .arg(&missing));
    let config = missing.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["process"]["args"] = serde_json::json!(["/no/such/program"]);
    std::fs::write(&config, c.to_string()).unwrap();
    // Bundles that never end: cut at lkinit.onboot_timeout, or sooner by their annotation.
    for (name, annotation) in [("003-forever", None), ("004-annotated", Some("1"))] {
        let b = containers.join("onboot").join(name);
        sh(Command::new("cp")
            .arg("-a")
            .arg(containers.join("onboot/000-hello"))
            .arg(&b));
        let config = b.join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        c["process"]["args"] = serde_json::json!(["sleep", "100000"]);
        if let Some(a) = annotation {
            c["annotations"] = serde_json::json!({ "lkinit.timeout": a });
        }
        std::fs::write(&config, c.to_string()).unwrap();
    }
    let extra = tmp.path().join("extra");
    let initd = extra.join("etc/init.d");
    let shutd = extra.join("etc/shutdown.d");
    let link = |dir: &std::path::Path, name: &str| {
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::symlink("/usr/bin/service", dir.join(name)).unwrap();
    };
    script(
        &initd.join("001-hello"),
        "echo 'hook 001-hello: hello from /etc/init.d'",
    );
    // Starts a daemon and returns, as memlogd's 002-logging does.
    script(
        &initd.join("002-daemon"),
        "sh -c 'echo $$ >/run/hook-daemon.pid; exec sleep 600' &\n\
         echo 'hook 002-daemon: left a daemon running'",
    );
    script(
        &initd.join("003-fail"),
        "echo 'hook 003-fail: failing'; exit 3",
    );
    script(
        &initd.join("004-hang"),
        "sleep 1000 &\necho $! >/run/hang-child.pid\necho 'hook 004-hang: hanging'\nwait",
    );
    link(&initd, "010-onboot");
    script(
        &initd.join("015-between"),
        "echo \"hook 015-between: the volume says $(cat /containers/volumes/vol/merged/hello)\"\n\
         echo written >/containers/volumes/vol/merged/new && echo 'hook 015-between: the volume is writable'\n\
         test -f /run/lkinit/runtime-logs/000-hello.run.json && echo 'hook 015-between: the runtime log of 000-hello is kept'",
    );
    link(&initd, "020-containerd");
    script(
        &initd.join("030-after"),
        "say() { echo \"hook 030-after: $*\"; }\n\
         kill -0 \"$(cat /run/hook-daemon.pid)\" && say 'the daemon of 002 still runs'\n\
         kill -0 \"$(cat /run/hang-child.pid)\" 2>/dev/null || say \"004's child is gone\"\n\
         for d in cache empty lib local lock log opt spool tmp; do say \"/var/$d $(stat -c %a /var/$d)\"; done\n\
         say \"/var/run -> $(readlink /var/run)\"\n\
         say \"nofile $(ulimit -n)\"\n\
         test -f /run/resolvconf/resolv.conf && say 'resolv.conf target exists'\n\
         say \"memory.use_hierarchy $(cat /sys/fs/cgroup/memory/memory.use_hierarchy)\"",
    );
    link(&initd, "040-bogus");
    std::fs::write(initd.join("050-notexec"), "#!/bin/sh\necho never\n").unwrap();
    // Powers the machine off from a process the hook leaves behind.
    script(
        &initd.join("060-poweroff"),
        "(sleep 2; kill -USR2 1) &\necho 'hook 060-poweroff: SIGUSR2 to pid 1 in 2s'",
    );
    script(&shutd.join("001-bye"), "echo 'hook shutdown 001-bye'");
    script(&shutd.join("005-hang"), "exec sleep 1000");
    link(&shutd, "010-onshutdown");
    script(&shutd.join("020-after"), "echo 'hook shutdown 020-after'");
    std::os::unix::fs::symlink("/run/resolvconf/resolv.conf", extra.join("etc/resolv.conf"))
        .unwrap();
    let vol = extra.join("containers/volumes/vol");
    for d in ["lower", "tmp", "merged"] {
        std::fs::create_dir_all(vol.join(d)).unwrap();
    }
    std::fs::write(vol.join("lower/hello"), "hello from the volume\n").unwrap();

    let image = tmp.path().join("image");
    build_image(&containers, Some(&extra), &image);
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    let console = boot(
        &image,
        &format!(
            "console=ttyS0 panic=-1 quiet {} lkinit.hook_timeout=3 lkinit.onboot_timeout=3 \
             linuxkit.unified_cgroup_hierarchy=0 linuxkit.runc_debug=1 linuxkit.runc_console=1",
            cmdline.trim()
        ),
    );

    // cgroup v1, one hierarchy per controller and name=systemd.
    let mounts = line_with(&console, "lkinit: early mounts: ");
    for m in [
        "/sys/fs/cgroup tmpfs",
        "/sys/fs/cgroup/memory cgroup",
        "/sys/fs/cgroup/cpu cgroup",
        "/sys/fs/cgroup/systemd cgroup",
    ] {
        assert!(mounts.contains(&format!(" {m},")), "`{m}` not in: {mounts}");
    }

    // /etc/init.d in name order, lkinit's steps in their places.
    let mut at = in_order(
        &console,
        0,
        &[
            "hook 001-hello: hello from /etc/init.d",
            "lkinit: /etc/init.d/001-hello: exit code 0",
            "hook 002-daemon: left a daemon running",
            "lkinit: /etc/init.d/002-daemon: exit code 0",
            "hook 003-fail: failing",
            "lkinit: error: /etc/init.d/003-fail: exit code 3",
            "hook 004-hang: hanging",
            "lkinit: error: /etc/init.d/004-hang: timed out after 3s, killed: exit code 137 (killed by SIGKILL)",
            // No link names the volumes: they are ready just before onboot.
            "lkinit: volumes step (no link in /etc/init.d names it)",
            "volume vol: read-write",
            "lkinit: /etc/init.d/010-onboot is lkinit: its onboot step",
            "lkinit: onboot: starting",
            "hello from hello",
            "\n000-hello: exit code 0",
            "\n003-forever: timed out after 3s, killed: ",
            "\n004-annotated: timed out after 1s, killed: ",
            "\n005-missing: ",
            "lkinit: onboot: finished",
            "hook 015-between: the volume says hello from the volume",
            "hook 015-between: the volume is writable",
            "lkinit: /etc/init.d/020-containerd is lkinit: its supervisor step",
            "lkinit: supervisor started",
            // rc.init's system: /var, limits, resolv.conf, and what the hooks left.
            "hook 030-after: the daemon of 002 still runs",
            "hook 030-after: 004's child is gone",
        ],
    );
    for (d, mode) in [
        ("cache", 755),
        ("empty", 555),
        ("lib", 755),
        ("local", 755),
        ("lock", 755),
        ("log", 755),
        ("opt", 755),
        ("spool", 755),
        ("tmp", 1777),
    ] {
        at = find(&console, &format!("hook 030-after: /var/{d} {mode}"), at);
    }
    at = in_order(
        &console,
        at,
        &[
            "hook 030-after: /var/run -> /run",
            "hook 030-after: nofile 1048576",
            "hook 030-after: resolv.conf target exists",
            "hook 030-after: memory.use_hierarchy 1",
            "lkinit: warn: /etc/init.d/040-bogus is lkinit, but its name names no step",
            "lkinit: warn: /etc/init.d/050-notexec: not executable; skipped",
            "hook 060-poweroff: SIGUSR2 to pid 1 in 2s",
        ],
    );
    // Each step once.
    assert_eq!(count(&console, "volume vol: "), 1);
    assert_eq!(count(&console, "lkinit: onboot: starting"), 1);
    assert_eq!(count(&console, "lkinit: supervisor started"), 1);
    assert!(!console.contains("never"));

    // The daemon 060-poweroff left behind powers the machine off: /etc/shutdown.d, with
    // onshutdown in its place.
    in_order(
        &console,
        at,
        &[
            "lkinit: SIGUSR2 from pid ",
            "lkinit: shutting down to power off",
            "hook shutdown 001-bye",
            "lkinit: error: /etc/shutdown.d/005-hang: timed out after 3s, killed",
            "lkinit: /etc/shutdown.d/010-onshutdown is lkinit: its onshutdown step",
            "lkinit: onshutdown: starting",
            "goodbye from onshutdown",
            "lkinit: onshutdown: finished",
            "hook shutdown 020-after",
            "lkinit: stopping the supervisor",
            "lkinit: power off",
            "reboot: Power down",
        ],
    );
    assert_eq!(count(&console, "lkinit: onshutdown: starting"), 1);
}
