//! Leak census: what a test could leave behind, counted before and after, and a look at a
//! running lkinit from the outside (its descriptors, threads, children and memory).
//!
//! Host-wide things (mounts, links) are filtered to what this test can own: mounts at or
//! below the test dir and the paths a test names, links of the names the test made up
//! (`TestEnv::lname`). Other tests run on the same host at the same time, so nothing is
//! counted that they could have made.
//!
//! lkinit's own descriptors and zombies are seen through `/proc/PID` while it runs a probe
//! bundle: a container that says it is ready and waits for the test to let it go. A probe
//! first and one last put lkinit in the same state twice (waiting for a running container),
//! so whatever the bundles in between leaked shows as a difference.

use super::{Background, TestEnv};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A snapshot of everything a test could leak.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Census {
    /// Mount points at or below the watched paths (the test dir and the extra ones).
    pub mounts: Vec<String>,
    /// Links of the root network namespace with names the test made up.
    pub links: Vec<String>,
    /// Containers the runtime knows in the test's runtime root.
    pub containers: Vec<String>,
    /// Cgroup directories below the test's cgroup parent, in every hierarchy.
    pub cgroups: Vec<String>,
    /// Files in lkinit's state dir (pid files, runtime logs, generated configs).
    pub state: Vec<String>,
    /// Processes whose root or working directory is below the test dir, or that sit in the
    /// test's cgroups.
    pub processes: Vec<String>,
    /// Entries of the extra watched paths (bindNS targets and their directories).
    pub files: Vec<String>,
}

fn list_tree(root: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        out.push(p.to_string_lossy().into_owned());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            list_tree(&p, out);
        }
    }
}

fn mount_points() -> Vec<String> {
    lkinit::mountinfo::read()
        .into_iter()
        .map(|e| e.mount_point.to_string_lossy().into_owned())
        .collect()
}

fn under(p: &str, dir: &Path) -> bool {
    let d = dir.to_string_lossy();
    p == d || p.starts_with(&format!("{d}/"))
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.push(PathBuf::from("/sys/fs/cgroup"));
    v
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

impl TestEnv {
    /// Asserts that nothing but what is at or below `kept` was added since `before`,
    /// giving the host up to 20 s to settle: processes whose parent is not ours are reaped
    /// when that parent gets to it, and the kernel tears namespaces down asynchronously.
    pub fn assert_census_settles(&self, before: &Census, watch: &[&Path], kept: &[&Path]) {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.census(watch);
            let left = now.unkept_since(before, kept);
            if left.is_empty() {
                return;
            }
            if std::time::Instant::now() > end {
                panic!("{}", left.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Counts what this test could leak; `watch` adds host paths it touches outside the
    /// test dir (bindNS targets, host mount destinations).
    pub fn census(&self, watch: &[&Path]) -> Census {
        let mut c = Census::default();
        let mut dirs: Vec<&Path> = vec![&self.dir];
        dirs.extend(watch.iter().copied());
        c.mounts = mount_points()
            .into_iter()
            .filter(|m| dirs.iter().any(|d| under(m, d)))
            .collect();
        let names = self.link_names();
        c.links = super::links(None)
            .into_iter()
            .map(|l| l.name)
            .filter(|n| names.contains(n))
            .collect();
        c.containers = self.containers();
        for h in cgroup_hierarchies() {
            let g = h.join(&self.cgroup_parent);
            // The parent itself is the runtime's (runc leaves it): what counts is below it.
            list_tree(&g, &mut c.cgroups);
        }
        c.cgroups.retain(|p| Path::new(p).is_dir());
        list_tree(&self.state_dir, &mut c.state);
        c.state.retain(|p| !Path::new(p).is_dir());
        for pid in self.processes_of() {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            {
                let cmd = std::fs::read(proc.join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                let state = stat_of(pid).map(|(s, _)| s).unwrap_or('?');
                // The container it belongs to: a running service's processes come and go.
                let container = std::fs::read_to_string(proc.join("cgroup"))
                    .ok()
                    .and_then(|s| {
                        let tail = s.split(&format!("/{}/", self.cgroup_parent)).nth(1)?;
                        Some(tail.split(['/', '\n']).next()?.to_string())
                    })
                    .unwrap_or_default();
                c.processes
                    .push(format!("{pid} {state} {} [in {container}]", cmd.trim()));
            }
        }
        for w in watch {
            if w.exists() || w.is_symlink() {
                c.files.push(w.to_string_lossy().into_owned());
            }
            list_tree(w, &mut c.files);
        }
        for v in [
            &mut c.mounts,
            &mut c.links,
            &mut c.containers,
            &mut c.cgroups,
            &mut c.state,
            &mut c.files,
        ] {
            v.sort();
        }
        c
    }
}

impl TestEnv {
    /// The processes this test made: rooted in its dir (their root or working directory
    /// is below it) or in its cgroups.
    pub fn processes_of(&self) -> Vec<i32> {
        pids()
            .into_iter()
            .filter(|pid| {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let rooted = ["root", "cwd"].iter().any(|l| {
                    std::fs::read_link(proc.join(l))
                        .is_ok_and(|t| under(&t.to_string_lossy(), &self.dir))
                });
                rooted
                    || std::fs::read_to_string(proc.join("cgroup"))
                        .is_ok_and(|s| s.contains(&format!("/{}/", self.cgroup_parent)))
            })
            .collect()
    }
}

impl Census {
    /// What is in `self` and was not in `before`, by kind; empty when nothing leaked.
    pub fn added_since(&self, before: &Census) -> String {
        let mut s = String::new();
        let kinds: [(&str, &Vec<String>, &Vec<String>); 7] = [
            ("mount", &self.mounts, &before.mounts),
            ("link", &self.links, &before.links),
            ("container", &self.containers, &before.containers),
            ("cgroup", &self.cgroups, &before.cgroups),
            ("state file", &self.state, &before.state),
            ("process", &self.processes, &before.processes),
            ("file", &self.files, &before.files),
        ];
        for (kind, now, then) in kinds {
            for x in now {
                if then.contains(x) {
                    continue;
                }
                // A process of a container that ran then and runs now is its business.
                if kind == "process"
                    && let Some(c) = x.rsplit_once("[in ").and_then(|(_, c)| c.strip_suffix(']'))
                    && !c.is_empty()
                    && self.containers.iter().any(|n| n == c)
                    && before.containers.iter().any(|n| n == c)
                {
                    continue;
                }
                let _ = writeln!(s, "leaked {kind}: {x}");
            }
        }
        s
    }

    /// Panics, listing them, if anything was added since `before`.
    pub fn assert_nothing_added_since(&self, before: &Census) {
        let added = self.added_since(before);
        assert!(added.is_empty(), "{added}");
    }

    /// Like `assert_nothing_added_since`, allowing what is meant to outlive a container
    /// (namespace binds, absolute mounts): paths at or below `kept`.
    pub fn assert_only_kept_since(&self, before: &Census, kept: &[&Path]) {
        let left = self.unkept_since(before, kept);
        assert!(left.is_empty(), "{}", left.join("\n"));
    }

    /// What `added_since` reports, but what is at or below `kept`.
    pub fn unkept_since(&self, before: &Census, kept: &[&Path]) -> Vec<String> {
        self.added_since(before)
            .lines()
            .filter(|l| {
                let p = l.split_once(": ").map(|x| x.1).unwrap_or("");
                !kept.iter().any(|k| under(p, k))
            })
            .map(str::to_string)
            .collect()
    }
}

/// lkinit seen from the outside while it runs.
#[derive(Debug, Clone)]
pub struct ProcView {
    pub pid: i32,
    /// Descriptor number -> what it points at, numbers and probe names taken out
    /// (`pipe`, `socket`, `anon_inode:[pidfd]`, `/path/log/onboot.PROBE.log`).
    pub fds: BTreeMap<i32, String>,
    /// Descriptors above 2 without close-on-exec.
    pub inheritable: Vec<String>,
    pub threads: usize,
    /// Children: (pid, state letter, command).
    pub children: Vec<(i32, char, String)>,
    pub vm_rss_kb: u64,
    pub vm_hwm_kb: u64,
    /// The main thread's blocked signals, as /proc shows them (hex).
    pub sig_blk: String,
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

fn kb(v: Option<String>) -> u64 {
    v.and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `(state, ppid)` from `/proc/PID/stat` (the command may hold spaces and parens).
fn stat_of(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

fn normalize_target(t: &str, probe: &str) -> String {
    let t = t.replace(probe, "PROBE");
    for kind in ["pipe:", "socket:", "net:", "mnt:", "user:", "pid:"] {
        if t.starts_with(kind) {
            return kind.trim_end_matches(':').to_string();
        }
    }
    t
}

impl ProcView {
    /// Looks at process `pid`; `probe` (the running probe's name) is normalized away in
    /// descriptor targets so two probes compare equal.
    pub fn of(pid: i32, probe: &str) -> ProcView {
        let mut fds = BTreeMap::new();
        let mut inheritable = Vec::new();
        let dir = format!("/proc/{pid}/fd");
        for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(target) = std::fs::read_link(e.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).unwrap_or_default();
            let flags = status_field(&info, "flags")
                .and_then(|f| u32::from_str_radix(&f, 8).ok())
                .unwrap_or(0);
            if n > 2 && flags & libc::O_CLOEXEC as u32 == 0 {
                inheritable.push(format!("{n} -> {target}"));
            }
            fds.insert(n, normalize_target(&target, probe));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let threads = status_field(&status, "Threads")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let children = pids()
            .into_iter()
            .filter_map(|p| {
                let (state, ppid) = stat_of(p)?;
                (ppid == pid).then(|| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    (p, state, String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
            })
            .collect();
        ProcView {
            pid,
            fds,
            inheritable,
            threads,
            children,
            vm_rss_kb: kb(status_field(&status, "VmRSS")),
            vm_hwm_kb: kb(status_field(&status, "VmHWM")),
            sig_blk: status_field(&status, "SigBlk").unwrap_or_default(),
        }
    }

    pub fn zombies(&self) -> Vec<String> {
        self.children
            .iter()
            .filter(|(_, s, _)| *s == 'Z')
            .map(|(p, _, c)| format!("{p} {c}"))
            .collect()
    }

    /// The descriptor targets, numbers aside, as a sorted list.
    pub fn fd_kinds(&self) -> Vec<String> {
        let mut v: Vec<String> = self.fds.values().cloned().collect();
        v.sort();
        v
    }
}

/// A bundle that tells the test it runs and waits until the test lets it go.
pub struct Probe {
    pub name: String,
    gate: PathBuf,
}

/// How long a probe (or anything a test waits for) may take to show up on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

impl Probe {
    pub fn ready(&self) -> PathBuf {
        self.gate.join(format!("{}.ready", self.name))
    }

    pub fn go(&self) -> PathBuf {
        self.gate.join(format!("{}.go", self.name))
    }

    /// Waits until the probe runs, looks at lkinit, runs `during` (lkinit is still busy
    /// with the probe) and lets the probe go. None if the probe never ran (lkinit ended
    /// first); a probe that has not started within [`PATIENCE`] fails the test (lkinit,
    /// dropped, is killed, and the guard removes the probe).
    pub fn view(&self, lk: &mut Background, during: impl FnOnce()) -> Option<ProcView> {
        let deadline = Instant::now() + PATIENCE;
        while !self.ready().exists() {
            if lk.has_ended() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "the probe {} did not start within {PATIENCE:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A child that just exited may not be reaped yet: give the reaper its moment.
        let mut v = ProcView::of(lk.pid(), &self.name);
        let until = Instant::now() + Duration::from_secs(10);
        while !v.zombies().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            v = ProcView::of(lk.pid(), &self.name);
        }
        during();
        std::fs::write(self.go(), b"").unwrap();
        Some(v)
    }
}

impl TestEnv {
    /// The directory probes signal through (bind-mounted into each probe at `/gate`).
    pub fn gate_dir(&self) -> PathBuf {
        let g = self.dir.join("gate");
        std::fs::create_dir_all(&g).unwrap();
        g
    }

    /// A probe bundle called `name` in `parent`.
    pub fn probe(&self, parent: &Path, name: &str) -> Probe {
        let gate = self.gate_dir();
        let script = format!(
            "touch /gate/{name}.ready; while [ ! -e /gate/{name}.go ]; do sleep 0.02; done"
        );
        let b = self.bundle(parent, name, &["sh", "-c", &script]);
        std::fs::create_dir_all(b.join("rootfs/gate")).unwrap();
        self.edit_config(&b, |c| {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/gate", "type": "bind", "source": gate, "options": ["rbind", "rw"]
            }));
        });
        let p = Probe {
            name: name.to_string(),
            gate,
        };
        // A probe of the same name in an earlier run must not count for this one.
        let _ = std::fs::remove_file(p.ready());
        let _ = std::fs::remove_file(p.go());
        p
    }

    /// `lkinit onboot` over `path` in the background.
    pub fn onboot_bg(&self, path: &Path, extra: &[&str]) -> Background {
        Background::spawn(self.onboot_command(path, extra))
    }
}

/// What a run with a probe first and a probe last (and any in between) shows.
pub struct Probed {
    pub run: super::Run,
    pub first: ProcView,
    /// The probes between, in name order.
    pub middle: Vec<ProcView>,
    pub last: ProcView,
}

impl Probed {
    /// lkinit ended in the state it began: the same descriptors (all close-on-exec above
    /// stdio), the same threads, no zombie, no child other than the probe's runtime.
    pub fn assert_lkinit_clean(&self) {
        for v in [&self.first, &self.last] {
            assert!(v.zombies().is_empty(), "zombies: {:?}", v.zombies());
            assert!(
                v.inheritable.is_empty(),
                "descriptors without close-on-exec: {:?}",
                v.inheritable
            );
        }
        assert_eq!(
            self.first.fd_kinds(),
            self.last.fd_kinds(),
            "lkinit's descriptors changed between the first and the last probe:\n{:?}\n{:?}",
            self.first,
            self.last
        );
        assert_eq!(self.first.threads, self.last.threads, "threads");
        assert_eq!(
            self.first.children.len(),
            self.last.children.len(),
            "children: {:?} vs {:?}",
            self.first.children,
            self.last.children
        );
    }
}

impl TestEnv {
    /// Runs `lkinit onboot` over `path` with probes `000-probe` and `zzz-probe` added
    /// around the bundles already there, and looks at lkinit at each.
    pub fn onboot_probed(&self, path: &Path, extra: &[&str]) -> Probed {
        self.onboot_probed_during(path, extra, || {})
    }

    /// Like `onboot_probed`, running `at_last` while lkinit runs the last probe (after every
    /// other bundle, before lkinit exits).
    ///
    /// Before the first probe, a warm-up bundle creates and drops a link: lkinit's first
    /// netlink use makes process-wide things once (tokio's signal socket pair), which are
    /// not leaks; after it, the first probe sees them already.
    pub fn onboot_probed_during(
        &self,
        path: &Path,
        extra: &[&str],
        at_last: impl FnOnce(),
    ) -> Probed {
        self.onboot_probed_with(path, extra, &[], at_last)
    }

    /// Like `onboot_probed_during`, with more probes of the names `middle` (in name order,
    /// between the first and the last).
    pub fn onboot_probed_with(
        &self,
        path: &Path,
        extra: &[&str],
        middle: &[String],
        at_last: impl FnOnce(),
    ) -> Probed {
        let warm = self.bundle(path, "00-warmup", &["true"]);
        std::fs::write(
            warm.join("runtime.json"),
            json!({"interfaces": [{"name": self.lname(), "add": "ifb"}]}).to_string(),
        )
        .unwrap();
        let first = self.probe(path, "000-probe");
        let between: Vec<Probe> = middle.iter().map(|n| self.probe(path, n)).collect();
        let last = self.probe(path, "zzz-probe");
        let mut bg = self.onboot_bg(path, extra);
        let v1 = first.view(&mut bg, || {});
        let vm: Vec<Option<ProcView>> = between.iter().map(|p| p.view(&mut bg, || {})).collect();
        let v2 = last.view(&mut bg, at_last);
        let run = bg.finish();
        Probed {
            first: v1.expect("the first probe ran"),
            middle: vm
                .into_iter()
                .map(|v| v.expect("a middle probe ran"))
                .collect(),
            last: v2.expect("the last probe ran"),
            run,
        }
    }
}
