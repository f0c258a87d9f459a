//! Test harness: busybox bundles made at test time, a private runtime root, state and log
//! directories per test, and a guard that removes everything a test made (mounts, runtime
//! containers, links, cgroups, files), also when the test fails.
#![allow(dead_code)]

pub mod census;
#[allow(unused_imports)]
pub use census::*;
pub mod links;
#[allow(unused_imports)]
pub use links::*;
pub mod memlogd;
pub mod packages;
pub mod qemu;
pub mod run;
pub mod supervisor;
#[allow(unused_imports)]
pub use run::*;

use serde_json::{Value, json};
use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const LKINIT: &str = env!("CARGO_BIN_EXE_lkinit");

/// Applets linked in every test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "mkdir", "touch", "test", "[", "true", "false", "printf",
    "wc", "grep", "ps", "readlink", "stat", "head", "env", "id", "kill", "hostname", "mount",
    "umount", "ip", "rm", "dd", "seq", "tail", "date", "sync", "df", "nsenter", "find",
];

fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox-static is not installed (apt-get install busybox-static)");
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The pid of a child std started: std hands out the kernel's pid_t (always positive) as
/// a u32, and this is the same bits back.
pub fn pid_of(child: &std::process::Child) -> i32 {
    child.id().cast_signed()
}

/// A name no other test (or test run) uses at the same time.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id())
}

/// Fills `dir` with a busybox root filesystem.
pub fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc", "run", "var"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let bb = bin.join("busybox");
    if std::fs::hard_link(busybox(), &bb).is_err() {
        std::fs::copy(busybox(), &bb).unwrap();
    }
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(a)).unwrap();
    }
}

/// An OCI config.json like `runc spec` writes, without a terminal.
pub fn config(args: &[&str], cgroups_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "lkinit-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// These tests mount, make namespaces and links and run runc for real: as another user
/// each would fail on its first EPERM. One clear message instead.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (it mounts, makes namespaces and runs the OCI runtime): \
             run the tests as root, e.g. `sudo -E cargo test`"
        );
    }
}

/// One test's world. Dropping it removes what the test made.
pub struct TestEnv {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub runtime_root: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub runtime: String,
    /// Parent cgroup of every container of this test (runc makes one per container id).
    pub cgroup_parent: String,
    links: RefCell<Vec<String>>,
    /// Link names this test made up (`lname`): the links its census counts.
    link_names: RefCell<Vec<String>>,
    mounts: RefCell<Vec<PathBuf>>,
    cgroups: RefCell<Vec<String>>,
    paths: RefCell<Vec<PathBuf>>,
    empty_dirs: RefCell<Vec<PathBuf>>,
}

impl TestEnv {
    /// `RUNTIME state NAME` in the test's runtime root, as JSON (Null when it knows no
    /// such container).
    pub fn runtime_state(&self, name: &str) -> serde_json::Value {
        let out = std::process::Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["state", name])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn new() -> TestEnv {
        Self::with_runtime("runc")
    }

    pub fn with_runtime(runtime: &str) -> TestEnv {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("lkinit-test")
            .tempdir()
            .unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        // Containers with a user namespace must be able to reach their rootfs.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = TestEnv {
            runtime_root: dir.join("runtime-root"),
            state_dir: dir.join("state"),
            log_dir: dir.join("log"),
            runtime: runtime.to_string(),
            cgroup_parent: unique("lkinit-test-"),
            dir,
            _tmp: tmp,
            links: RefCell::new(Vec::new()),
            link_names: RefCell::new(Vec::new()),
            mounts: RefCell::new(Vec::new()),
            cgroups: RefCell::new(Vec::new()),
            paths: RefCell::new(Vec::new()),
            empty_dirs: RefCell::new(Vec::new()),
        };
        std::fs::create_dir_all(&env.runtime_root).unwrap();
        env
    }

    /// A directory of bundles inside the test dir.
    pub fn bundles_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A read-only-root busybox bundle running `args`.
    pub fn bundle(&self, parent: &Path, name: &str, args: &[&str]) -> PathBuf {
        let b = parent.join(name);
        make_rootfs(&b.join("rootfs"));
        self.write_config(&b, config(args, &self.cgroups_path(name)));
        b
    }

    /// A bundle with a writable root: busybox in `lower/`, an overlay on `rootfs`.
    pub fn rw_bundle(&self, parent: &Path, name: &str, args: &[&str]) -> PathBuf {
        let b = parent.join(name);
        make_rootfs(&b.join("lower"));
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        let mut c = config(args, &self.cgroups_path(name));
        c["root"]["readonly"] = json!(false);
        self.write_config(&b, c);
        b
    }

    pub fn cgroups_path(&self, name: &str) -> String {
        format!("/{}/{}", self.cgroup_parent, name)
    }

    pub fn write_config(&self, bundle: &Path, c: Value) {
        std::fs::create_dir_all(bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
    }

    /// Edits a bundle's config.json.
    pub fn edit_config(&self, bundle: &Path, f: impl FnOnce(&mut Value)) {
        let mut c: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        f(&mut c);
        self.write_config(bundle, c);
    }

    /// lkinit with this test's runtime, runtime root, state dir and memlogd sockets.
    pub fn lkinit(&self) -> Command {
        let mut c = Command::new(LKINIT);
        self.memlogd_env(&mut c);
        c.arg("--runtime")
            .arg(&self.runtime)
            .arg("--runtime-root")
            .arg(&self.runtime_root)
            .arg("--state-dir")
            .arg(&self.state_dir);
        c
    }

    /// Points lkinit (and what it starts) at this test's memlogd sockets, never the host's.
    pub fn memlogd_env(&self, c: &mut Command) {
        c.env("LKINIT_MEMLOGD_SOCKET", self.memlogd_socket())
            .env("LKINIT_MEMLOGD_QUERY_SOCKET", self.memlogd_query_socket());
    }

    /// `lkinit onboot` over `path`, logs in this test's log dir.
    pub fn onboot(&self, path: &Path, extra: &[&str]) -> Run {
        Run::of(self.onboot_command(path, extra))
    }

    /// The command `onboot` runs (and `onboot_bg` starts).
    pub fn onboot_command(&self, path: &Path, extra: &[&str]) -> Command {
        self.runner_command("onboot", path, extra)
    }

    /// `lkinit onboot` or `lkinit onshutdown` (`word`) over `path`, logs in this test's log
    /// dir: see [`runner_args`].
    pub fn runner_command(&self, word: &str, path: &Path, extra: &[&str]) -> Command {
        let mut c = self.lkinit();
        c.args(runner_args(word, path, &self.log_dir, extra));
        c
    }

    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(file)).unwrap_or_default()
    }

    /// A link name of at most 15 bytes that nothing else uses; the census counts links of
    /// these names, and the guard deletes any left.
    pub fn lname(&self) -> String {
        let n = unique("lk");
        assert!(n.len() <= 15, "{n}");
        self.link_names.borrow_mut().push(n.clone());
        self.links.borrow_mut().push(n.clone());
        n
    }

    pub fn link_names(&self) -> Vec<String> {
        self.link_names.borrow().clone()
    }

    /// A read-only tmpfs inside the test dir: nothing can be created below it.
    pub fn read_only_dir(&self) -> PathBuf {
        let ro = self.dir.join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &ro,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_RDONLY,
            Some("size=64k"),
        )
        .unwrap();
        self.track_mount(&ro);
        ro
    }

    /// Starts `bundle` as `name` with the runtime directly (`run --detach`), its rootfs bound
    /// onto itself as lkinit prepares it: a running service that no supervisor of the test
    /// started.
    pub fn run_detached_by_hand(&self, bundle: &Path, name: &str) {
        let rootfs = bundle.join("rootfs");
        nix::mount::mount(
            Some(&rootfs),
            &rootfs,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        self.track_mount(&rootfs);
        let log = self.dir.join(format!("{name}.runtime.log"));
        let mut c = Command::new(&self.runtime);
        c.arg("--root")
            .arg(&self.runtime_root)
            .arg("--log")
            .arg(&log)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let st = status_within(&mut c, RUN_LIMIT, &format!("{} run --detach", self.runtime));
        assert!(
            st.success(),
            "{} run: {}",
            self.runtime,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Registers things made outside the test dir, removed by the guard.
    pub fn track_link(&self, name: &str) {
        self.links.borrow_mut().push(name.to_string());
    }
    pub fn track_mount(&self, path: &Path) {
        self.mounts.borrow_mut().push(path.to_path_buf());
    }
    pub fn track_cgroup(&self, name: &str) {
        self.cgroups.borrow_mut().push(name.to_string());
    }
    pub fn track_path(&self, path: &Path) {
        self.paths.borrow_mut().push(path.to_path_buf());
    }
    /// A shared directory (e.g. /run/netns) removed only if nothing else is left in it.
    pub fn track_empty_dir(&self, path: &Path) {
        self.empty_dirs.borrow_mut().push(path.to_path_buf());
    }

    /// Mount points at or below `dir`.
    pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
        lkinit::mountinfo::read()
            .into_iter()
            .map(|e| e.mount_point)
            .filter(|m| m.starts_with(dir))
            .collect()
    }

    pub fn my_mounts(&self) -> Vec<PathBuf> {
        Self::mounts_under(&self.dir)
    }

    /// Containers the runtime still knows in this test's root.
    pub fn containers(&self) -> Vec<String> {
        std::fs::read_dir(&self.runtime_root)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

fn unmount_all(paths: &mut [PathBuf]) {
    paths.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in paths.iter() {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // What a failed test left running (a hook that never returns, a container): never
        // anything but this test's, which run in its dir or its cgroups.
        for pid in self.processes_of() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for c in self.containers() {
            // Bounded, with whatever it starts (a poststop hook that never returns), and
            // the state it leaves then (crun's) goes too.
            let mut cmd = Command::new(&self.runtime);
            cmd.arg("--root")
                .arg(&self.runtime_root)
                .args(["delete", "--force", &c])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if status_or_kill(&mut cmd, std::time::Duration::from_secs(15)).is_none() {
                let _ = std::fs::remove_dir_all(self.runtime_root.join(&c));
            }
        }
        let mut m = self.mounts.borrow().clone();
        for extra in self.mounts.borrow().iter() {
            m.extend(Self::mounts_under(extra));
        }
        unmount_all(&mut m);
        let mut m = self.my_mounts();
        unmount_all(&mut m);
        for l in self.links.borrow().iter() {
            let _ = output_or_kill(Command::new("ip").args(["link", "del", l]), QUICK_LIMIT);
        }
        let mut cgroups = self.cgroups.borrow().clone();
        cgroups.push(self.cgroup_parent.clone());
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            let hier: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            for g in &cgroups {
                for h in hier
                    .iter()
                    .chain(std::iter::once(&PathBuf::from("/sys/fs/cgroup")))
                {
                    remove_cgroup_tree(&h.join(g));
                }
            }
        }
        for p in self.paths.borrow().iter() {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
        for p in self.empty_dirs.borrow().iter() {
            let _ = std::fs::remove_dir(p);
        }
    }
}

fn remove_cgroup_tree(p: &Path) {
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

/// How long each bundle of a test's onboot or onshutdown may take (`--timeout`) unless the
/// test says: far beyond what any takes here, and below [`RUN_LIMIT`], so a bundle that
/// hangs is ended by lkinit and reported on its line before the harness has to kill lkinit.
pub const BUNDLE_TIMEOUT: &str = "240";

/// The arguments of `onboot` or `onshutdown` (`word`) over `path` with logs in `log_dir`:
/// `extra`, and `--timeout` [`BUNDLE_TIMEOUT`] unless `extra` gives one. The one place the
/// tests make a runner's command line.
pub fn runner_args(word: &str, path: &Path, log_dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![word.into(), "--path".into(), path.into()];
    a.extend(["--log-dir".into(), log_dir.into()]);
    a.extend(extra.iter().map(OsString::from));
    if !extra.contains(&"--timeout") {
        a.extend(["--timeout".into(), BUNDLE_TIMEOUT.into()]);
    }
    a
}

/// True if `p` is a mount point now.
pub fn is_mounted(p: &Path) -> bool {
    lkinit::mountinfo::is_mount_point(p)
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Polls `f` for up to 10 s: the kernel tears network namespaces down asynchronously.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How many mounts sit exactly on `p`.
pub fn mount_count(p: &Path) -> usize {
    lkinit::mountinfo::read()
        .iter()
        .filter(|e| e.mount_point == p)
        .count()
}

/// Writes a bundle's runtime.json.
pub fn write_runtime(bundle: &Path, v: Value) {
    std::fs::write(bundle.join("runtime.json"), v.to_string()).unwrap();
}

/// Makes a config.json join the namespace of `typ` bound at `path`.
pub fn join_namespace(c: &mut Value, typ: &str, path: &Path) {
    let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != typ);
    nss.push(json!({"type": typ, "path": path}));
}

/// Removes the namespace of `typ` from a config.json: the container shares the host's.
pub fn share_namespace(c: &mut Value, typ: &str) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

/// Whether `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    let mut c = Command::new("sh");
    c.args(["-c", &format!("command -v {cmd}")])
        .stdout(std::process::Stdio::null());
    status_or_kill(&mut c, QUICK_LIMIT).is_some_and(|s| s.success())
}

/// How long installing packages may take (a slow mirror).
const INSTALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(1800);

/// Installs the Debian package of each command missing from PATH, as CI starts from a
/// bare machine: first from the package lists there are, then after `apt-get update`. The
/// packages come from `scripts/debian-packages.txt`, which must list every command asked
/// for here (tests/setup.rs checks the calls).
pub fn ensure_installed(commands: &[&str]) {
    let list = packages::packages();
    let mut missing: Vec<String> = Vec::new();
    for cmd in commands.iter().filter(|c| !have(c)) {
        let pkg = packages::package_of(&list, cmd)
            .unwrap_or_else(|| panic!("`{cmd}` is not in {}", packages::list_path().display()));
        if !missing.contains(&pkg) {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return;
    }
    let install = format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {}",
        missing.join(" ")
    );
    let ok = |cmd: &str| {
        status_within(Command::new("sh").args(["-c", cmd]), INSTALL_LIMIT, cmd).success()
    };
    assert!(
        ok(&install) || ok(&format!("apt-get update -qq && {install}")),
        "cannot install {missing:?}"
    );
}

/// `lkinit onboot` through crun, in a private mount namespace without the cgroup2 part of
/// this host's hybrid layout (crun 1.8 refuses hybrid hosts). Mounts lkinit makes there,
/// namespace binds included, go away with it.
pub fn crun_onboot(env: &TestEnv, path: &Path) -> Run {
    Run::of(crun_onboot_command(env, path, &[]))
}

/// The command `crun_onboot` runs, with `extra` arguments for onboot.
pub fn crun_onboot_command(env: &TestEnv, path: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    env.memlogd_env(&mut c);
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(LKINIT)
        .args(["--runtime", "crun", "--runtime-root"])
        .arg(&env.runtime_root)
        .arg("--state-dir")
        .arg(&env.state_dir)
        .args(runner_args("onboot", path, &env.log_dir, extra));
    c
}
