//! Images made by LinuxKit's own builder with lkinit as the init: each YAML of
//! examples/linuxkit is built with the real `linuxkit` CLI, offline, from the images
//! scripts/linuxkit-cache.sh puts in a cache (this build's lkinit among them), and booted in
//! QEMU; the console must show every onboot container succeeding, the services' lines, the
//! checks a container makes from inside the machine, and the ordered power-off. A faster
//! test runs the onboot bundles of a `--format tar` build on this machine.
//!
//! The CLI is `$LINUXKIT`, or `linuxkit` on PATH; without it these tests say they skipped
//! and pass, unless `LKINIT_REQUIRE_LINUXKIT=1`.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::qemu::{Boot, count, find};
use common::{LKINIT, RUN_LIMIT, TestEnv, os};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Generous: these boots take well under a minute here; CI machines may be slower.
const BOOT_LIMIT: Duration = Duration::from_secs(420);

/// Filling the cache the first time downloads Debian's kernel package.
const CACHE_LIMIT: Duration = Duration::from_secs(900);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The linuxkit CLI, or `None` when there is none and it is not required (the test then
/// says why it skipped).
fn linuxkit_cli(test: &str) -> Option<PathBuf> {
    let found = match std::env::var_os("LINUXKIT").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!("LINUXKIT={} is not a file", p.display()))
            }
        }
        None => std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("linuxkit"))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| "LINUXKIT is not set and no linuxkit is on PATH".to_string()),
    };
    match found {
        Ok(p) => Some(p),
        Err(why) if std::env::var("LKINIT_REQUIRE_LINUXKIT").as_deref() == Ok("1") => {
            panic!("{why}, and LKINIT_REQUIRE_LINUXKIT=1 requires the linuxkit CLI")
        }
        Err(why) => {
            eprintln!("{test}: skipped: {why} (set LINUXKIT=/path/to/linuxkit)");
            None
        }
    }
}

/// What the cache images, the builds and the boots need.
fn ensure_tools() {
    common::ensure_installed(&[
        "qemu-system-x86_64",
        "busybox",
        "runc",
        "depmod",
        "strip",
        "unshare",
    ]);
}

/// Runs `cmd` within `limit` (killed past it) and fails unless it exits 0.
fn run(cmd: Command, limit: Duration) {
    let what = format!("{cmd:?}");
    let r = common::Run::within(cmd, limit);
    assert_eq!(r.code, 0, "{what} failed");
}

/// `linuxkit build` of `yml` from `cache`; `args` say the format and the output.
fn build(cli: &Path, cache: &Path, yml: &Path, args: &[&OsStr]) {
    let mut c = Command::new(cli);
    c.arg("build")
        .arg("--cache")
        .arg(cache)
        .arg("--no-sbom")
        .args(args)
        .arg(yml);
    run(c, RUN_LIMIT);
}

/// The linuxkit cache with the local images and this build's lkinit, beside the binary
/// (target/linuxkit/test-cache): only images whose inputs changed are built again.
fn fill_cache(cli: &Path) -> PathBuf {
    let target = Path::new(LKINIT)
        .parent()
        .and_then(Path::parent)
        .expect("the lkinit binary lies in target/PROFILE/");
    let cache = target.join("linuxkit").join("test-cache");
    let mut c = Command::new(repo().join("scripts/linuxkit-cache.sh"));
    c.env("LINUXKIT", cli)
        .arg("--lkinit")
        .arg(LKINIT)
        .arg("--cache")
        .arg(&cache);
    run(c, CACHE_LIMIT);
    cache
}

/// The entry names of a section of a YAML, as the builder names their bundles
/// (`000-name`, `001-name`, ...).
fn bundle_names(yml: &Path, section: &str) -> Vec<String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(yml).unwrap()).unwrap();
    doc.get(section)
        .and_then(|s| s.as_sequence())
        .map(|entries| {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{i:03}-{}", e["name"].as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Console lines without the serial line's carriage returns.
fn lines(console: &str) -> impl Iterator<Item = &str> {
    console.lines().map(|l| l.trim_matches('\r'))
}

/// Fails unless the console has a line containing `needle`; the message quotes the lines
/// that start as the needle does (e.g. every `web: ` line), which tell what happened instead.
fn expect(console: &str, needle: &str) -> usize {
    if let Some(i) = console.find(needle) {
        return i;
    }
    let prefix = needle.split_once(": ").map_or(needle, |(p, _)| p);
    let related: Vec<&str> = lines(console).filter(|l| l.contains(prefix)).collect();
    panic!(
        "no `{needle}` on the console; the lines with `{prefix}`:\n{}",
        related.join("\n")
    );
}

/// The report line of bundle `name` (`NAME: ...`).
fn report_line<'a>(console: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    lines(console).find(|l| l.starts_with(&prefix))
}

/// Fails unless every bundle reported `exit code 0`, quoting the line it reported instead
/// and what its container printed (the examples' containers start their lines with their
/// entry's name).
fn expect_exit_0(console: &str, names: &[String], phase: &str) {
    for name in names {
        let entry = name.split_once('-').map_or(name.as_str(), |(_, e)| e);
        let said = || {
            lines(console)
                .filter(|l| l.starts_with(&format!("{entry}: ")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        match report_line(console, name) {
            Some(l) if l == format!("{name}: exit code 0") => {}
            Some(l) => panic!(
                "{phase} bundle {name} failed: `{l}`; it printed:\n{}",
                said()
            ),
            None => panic!("no report line of {phase} bundle {name} on the console"),
        }
    }
}

/// A booted example and its YAML.
struct Example {
    boot: Boot,
    yml: PathBuf,
}

/// Builds `examples/linuxkit/NAME.yml` as kernel+initrd and boots it; `None` if the test
/// is skipped (no CLI).
fn boot_example(name: &str) -> Option<Example> {
    let cli = linuxkit_cli(name)?;
    ensure_tools();
    let cache = fill_cache(&cli);
    let tmp = tempfile::Builder::new()
        .prefix("lkinit-linuxkit")
        .tempdir()
        .unwrap();
    let yml = repo().join("examples/linuxkit").join(format!("{name}.yml"));
    let args = ["--format", "kernel+initrd", "--name", name, "--dir"].map(os);
    build(
        &cli,
        &cache,
        &yml,
        &[&args[..], &[tmp.path().as_os_str()]].concat(),
    );
    let file = |suffix: &str| tmp.path().join(format!("{name}-{suffix}"));
    let cmdline = std::fs::read_to_string(file("cmdline")).unwrap();
    // The YAML's command line names the serial console; panic=-1 with QEMU's -no-reboot
    // ends a guest whose kernel panics.
    let append = format!("{} panic=-1", cmdline.trim());
    let boot = common::qemu::boot(&file("kernel"), &file("initrd.img"), &append, BOOT_LIMIT);
    let ex = Example { boot, yml };
    ex.expect_onboot();
    Some(ex)
}

impl Example {
    fn console(&self) -> &str {
        &self.boot.console
    }

    /// No panic, no fatal error of PID 1; onboot ran once and every bundle exited 0.
    fn expect_onboot(&self) {
        let c = self.console();
        if let Some(l) = lines(c).find(|l| l.contains("Kernel panic")) {
            panic!("the kernel panicked: `{l}`");
        }
        if let Some(l) = lines(c).find(|l| l.starts_with("lkinit: fatal")) {
            panic!("PID 1 failed: `{l}`");
        }
        // The runc image's /etc/init.d/010-onboot links to lkinit: onboot still runs once.
        assert_eq!(count(c, "lkinit: onboot: starting"), 1, "onboot runs once");
        expect_exit_0(c, &bundle_names(&self.yml, "onboot"), "onboot");
    }

    /// The check service asked PID 1 to power off; the ordered shutdown followed: onshutdown
    /// (once, every bundle exiting 0), the power-off, and QEMU's own end.
    fn expect_power_off(&self) {
        let c = self.console();
        let mut at = expect(c, "check: powering off (SIGUSR2 to pid 1)");
        at = find(c, "lkinit: SIGUSR2 from pid ", at);
        let asked = lines(&c[at..]).next().unwrap();
        assert!(asked.ends_with(": power off"), "`{asked}`");
        at = find(c, "lkinit: shutting down to power off", at);
        assert_eq!(
            count(c, "lkinit: onshutdown: starting"),
            1,
            "onshutdown runs once"
        );
        expect_exit_0(c, &bundle_names(&self.yml, "onshutdown"), "onshutdown");
        expect(c, "goodbye: from onshutdown");
        at = find(c, "lkinit: power off", at);
        find(c, "reboot: Power down", at);
        self.boot.assert_ended();
    }
}

#[test]
fn basic_image_runs_onboot_services_and_a_shared_network_namespace() {
    let Some(ex) = boot_example("basic") else {
        return;
    };
    let c = ex.console();
    // Read-only and read-write roots from one unpacked image; a veth pair, one end in the
    // namespace bound on /run/netns/basic, the other in the root namespace.
    expect(
        c,
        "netns: eth1 is 10.99.0.2/24, the namespace is bound on /run/netns/basic",
    );
    expect(c, "hostside: basic-host is 10.99.0.1/24");
    expect(c, "writable: /etc/motd says written");
    expect(c, "readonly: the root is read-only and the image unchanged");
    // A service in that namespace reaches the root namespace over the pair.
    expect(c, "web: in the namespace of netns: 10.99.0.2/24");
    expect(c, "web: 10.99.0.1 answers");
    // Seen from inside the machine: nothing of onboot is left mounted, the namespace bind
    // and the peer outlive their container.
    expect(c, "check: onboot mounts left: none");
    expect(c, "check: /run/netns/basic is bound");
    expect(c, "check: basic-host is in the root namespace");
    ex.expect_power_off();
}

#[test]
fn volumes_image_prepares_and_binds_volumes() {
    let Some(ex) = boot_example("volumes") else {
        return;
    };
    let c = ex.console();
    // fill wrote into the blank volume and could not write the read-only one.
    expect(
        c,
        "fill: wrote /data/greeting; /tools is read-only and holds bin/busybox",
    );
    // What onboot wrote is in the volume for a service.
    expect(c, "reader: /data/greeting says: written by fill");
    expect(c, "check: onboot mounts left: none");
    expect(c, "check: volume scratch: mounted rw");
    // The builder writes the same lower/, tmp/ and merged/ for a read-only volume: what
    // keeps it read-only is the `:ro` of every bind (the builder refuses any other).
    expect(c, "check: volume tools: mounted ");
    ex.expect_power_off();
}

#[test]
fn overlay_image_makes_relative_runtime_mounts_inside_the_root() {
    let Some(ex) = boot_example("overlay") else {
        return;
    };
    let c = ex.console();
    expect(
        c,
        "peek: the host's /etc shows through /host-etc, and it is writable",
    );
    expect(
        c,
        "hostetc: /writeable-host-etc/modules is the host's /etc/modules",
    );
    expect(c, "hostetc: wrote /writeable-host-etc/written-by-hostetc");
    // peek's overlay went with peek's root; the writes stayed in the upper directories.
    expect(c, "check: onboot mounts left: none");
    expect(c, "check: the host's /etc is unchanged");
    expect(c, "check: /run/hostetc/upper holds written-by-hostetc");
    ex.expect_power_off();
}

#[test]
fn memlogd_image_sends_container_output_to_memlogd() {
    let Some(ex) = boot_example("memlogd") else {
        return;
    };
    let c = ex.console();
    // onboot output reaches the console as well.
    expect(c, "hello: to stdout");
    // logread inside the machine has every stream under LinuxKit's names.
    for line in [
        ";onboot.000-hello.out;hello: to stdout",
        ";onboot.000-hello;hello: to stderr",
        ";talker.out;talker: line 1",
        ";talker.out;talker: line 3",
        ";talker;talker: to stderr",
    ] {
        if !lines(c).any(|l| l.starts_with("check: logread: ") && l.ends_with(line)) {
            let seen: Vec<&str> = lines(c)
                .filter(|l| l.starts_with("check: logread: ") || l.starts_with("check: no "))
                .collect();
            panic!(
                "logread in the machine has no line ending `{line}`; it printed:\n{}",
                seen.join("\n")
            );
        }
    }
    ex.expect_power_off();
}

#[test]
fn hooks_image_runs_init_and_shutdown_hooks_once_in_order() {
    let Some(ex) = boot_example("hooks") else {
        return;
    };
    let c = ex.console();
    expect(c, "hello: from onboot");
    let early = expect(c, "hook: 001-early ran");
    let late = expect(c, "hook: 050-late ran");
    assert!(early < late, "the init.d hooks ran out of name order");
    assert_eq!(count(c, "hook: 001-early ran"), 1, "001-early runs once");
    assert_eq!(count(c, "hook: 050-late ran"), 1, "050-late runs once");
    // What the hooks left in /run is there for the services.
    expect(c, "check: 001-early left /run/hooks/001-early");
    expect(c, "check: 050-late left /run/hooks/050-late");
    ex.expect_power_off();
    let shutdown = find(c, "lkinit: shutting down to power off", 0);
    let bye = find(c, "hook: shutdown.d/050-bye ran", shutdown);
    find(c, "lkinit: power off", bye);
    assert_eq!(
        count(c, "hook: shutdown.d/050-bye ran"),
        1,
        "050-bye runs once"
    );
}

/// The onboot bundles of a `--format tar` build, run by this build's `lkinit onboot` on this
/// machine: the tree is bound on /containers in a private mount namespace (the builder's
/// runtime.json paths are absolute), with a private network namespace for the links and a
/// private /run for the namespace bind and runtime directories. Every kind of builder entry:
/// read-only (the image unpacked here), interfaces and bindNS, read-write and read-only
/// entries pointing into the first, a relative runtime mount, a container joining the bound
/// namespace.
#[test]
fn builder_onboot_bundles_run_on_the_host() {
    let Some(cli) = linuxkit_cli("builder_onboot_bundles_run_on_the_host") else {
        return;
    };
    ensure_tools();
    let cache = fill_cache(&cli);
    let env = TestEnv::new();
    // Unique names: runc's container ids and the cgroups below lkinit-test-* must not
    // meet those of another test run.
    let u = common::unique("lk");
    let peer = env.lname();
    let cg = &env.cgroup_parent;
    let yml = env.dir.join("host.yml");
    std::fs::write(
        &yml,
        format!(
            r#"onboot:
  - name: netns-{u}
    image: local/busybox:1
    readonly: true
    net: new
    cgroupsPath: /{cg}/netns
    capabilities: [CAP_NET_ADMIN]
    command: [sh, -c, "ip link set eth1 up && ip addr add 10.98.0.2/24 dev eth1 && echo netns: eth1 up"]
    runtime:
      interfaces:
        - {{name: eth1, peer: {peer}}}
      bindNS:
        net: /run/netns/{u}
  - name: rw-{u}
    image: local/busybox:1
    readonly: false
    cgroupsPath: /{cg}/rw
    command: [sh, -c, "echo written >/etc/motd && echo rw: $(cat /etc/motd)"]
  - name: ro-{u}
    image: local/busybox:1
    readonly: true
    cgroupsPath: /{cg}/ro
    command: [sh, -c, "if touch /etc/motd 2>/dev/null || [ -e /etc/motd ]; then exit 1; fi; echo ro: unchanged"]
  - name: mnt-{u}
    image: local/busybox:1
    readonly: true
    cgroupsPath: /{cg}/mnt
    runtime:
      mounts:
        - {{type: tmpfs, source: tmpfs, destination: scratch, options: [size=1m]}}
    command: [sh, -c, "grep -q ' /scratch tmpfs ' /proc/mounts && echo mnt: scratch is a tmpfs"]
  - name: join-{u}
    image: local/busybox:1
    readonly: true
    net: /run/netns/{u}
    cgroupsPath: /{cg}/join
    command: [sh, -c, "ip -o -4 addr show dev eth1 | grep -q 10.98.0.2/24 && echo join: eth1 is 10.98.0.2/24"]
"#
        ),
    )
    .unwrap();
    let tar = env.dir.join("image.tar");
    build(
        &cli,
        &cache,
        &yml,
        &[os("--format"), os("tar"), os("--o"), tar.as_os_str()],
    );
    let tree = env.dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut c = Command::new("tar");
    c.args(["--warning=no-unknown-keyword", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&tree);
    run(c, RUN_LIMIT);

    // The mount point; made here only if this machine has none, and removed if empty.
    let containers = Path::new("/containers");
    if !containers.exists() {
        std::fs::create_dir(containers).unwrap();
        env.track_empty_dir(containers);
    }
    let script = r#"
set -eu
mount -t tmpfs tmpfs /run
mount --bind "$1/containers" /containers
shift
rc=0
"$@" || rc=$?
echo "onboot exit: $rc"
left=$(awk '$5 ~ "^/containers/" {printf " %s", $5}' /proc/self/mountinfo)
echo "mounts left:${left:- none}"
if awk -v p="$NETNS" '$5 == p {f=1} END {exit !f}' /proc/self/mountinfo; then echo "netns bound"; fi
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "-n",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&tree)
    .env("NETNS", format!("/run/netns/{u}"))
    .arg(LKINIT)
    .arg("--runtime")
    .arg(&env.runtime)
    .arg("--runtime-root")
    .arg(&env.runtime_root)
    .arg("--state-dir")
    .arg(&env.state_dir)
    .args(common::runner_args(
        "onboot",
        Path::new("/containers/onboot"),
        &env.log_dir,
        &[],
    ));
    let r = common::Run::of(cmd);
    let names = bundle_names(&yml, "onboot");
    expect_exit_0(&r.stdout, &names, "onboot");
    for line in [
        "netns: eth1 up",
        "rw: written",
        "ro: unchanged",
        "mnt: scratch is a tmpfs",
        "join: eth1 is 10.98.0.2/24",
    ] {
        expect(&r.stdout, line);
    }
    assert!(r.stdout.contains("onboot exit: 0"), "lkinit onboot failed");
    // Every mount of the bundles was undone; the namespace bind outlives its container.
    expect(&r.stdout, "mounts left: none");
    expect(&r.stdout, "netns bound");
    assert!(
        env.containers().is_empty(),
        "containers left: {:?}",
        env.containers()
    );
    // The image tree itself is as the builder wrote it: writes went to tmpfs upper dirs.
    let unpacked = tree.join(format!("containers/onboot/000-netns-{u}/rootfs"));
    assert!(
        !unpacked.join("etc/motd").exists(),
        "rw-{u} wrote into the image"
    );
}
