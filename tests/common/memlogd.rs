//! LinuxKit's memlogd (the real binary, from `../shared/tools` or `$LKINIT_TEST_TOOLS`)
//! on the test's own sockets, killed when the guard is dropped, also when the test fails.
//! Every lkinit a test starts looks for memlogd at those paths (see `TestEnv::lkinit`), so
//! no test ever reaches the host's `/var/run` sockets.

use super::TestEnv;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where LinuxKit's memlogd, logread and logwrite are.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("LKINIT_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools")))
}

fn tool(name: &str) -> PathBuf {
    let p = tools_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: LinuxKit's {name} is needed (set LKINIT_TEST_TOOLS to its directory)",
        p.display()
    );
    p
}

impl TestEnv {
    /// memlogd's log socket for this test (nothing listens until `memlogd` starts it).
    pub fn memlogd_socket(&self) -> PathBuf {
        self.dir.join("memlogd/log.sock")
    }

    pub fn memlogd_query_socket(&self) -> PathBuf {
        self.dir.join("memlogd/query.sock")
    }

    /// Starts memlogd on this test's sockets and waits until both are there.
    pub fn memlogd(&self) -> Memlogd {
        let (log, query) = (self.memlogd_socket(), self.memlogd_query_socket());
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        // A killed memlogd leaves its socket files; a new one cannot bind over them.
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&query);
        let child = Command::new(tool("memlogd"))
            .arg("-socket-log")
            .arg(&log)
            .arg("-socket-query")
            .arg(&query)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memlogd starts");
        let m = Memlogd {
            child: Some(child),
            query,
        };
        let end = Instant::now() + Duration::from_secs(20);
        while !(log.exists() && m.query.exists()) {
            assert!(
                Instant::now() < end,
                "memlogd did not create {} and {} within 20 s",
                log.display(),
                m.query.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }
}

pub struct Memlogd {
    child: Option<Child>,
    query: PathBuf,
}

impl Memlogd {
    pub fn pid(&self) -> i32 {
        super::pid_of(self.child.as_ref().expect("running"))
    }

    /// `logread -socket QUERY`: every line memlogd keeps, as `(name, line)`.
    pub fn lines(&self) -> Vec<(String, String)> {
        let o = super::output_within(
            Command::new(tool("logread"))
                .arg("-socket")
                .arg(&self.query),
            super::QUICK_LIMIT,
            "logread",
        );
        assert!(
            o.status.success(),
            "logread: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // TIMESTAMP;NAME;LINE (a `;` in NAME is escaped; test names have none).
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, ';');
                p.next()?;
                Some((p.next()?.to_string(), p.next()?.to_string()))
            })
            .collect()
    }

    /// The lines kept under `name`, in order.
    pub fn of(&self, name: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l)
            .collect()
    }

    /// Polls `of(name)` (memlogd reads its streams on its own time) until `ok` holds, for
    /// at most 30 s; panics naming what it waited for.
    pub fn wait_for(&self, name: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.of(name);
            if ok(&got) {
                return got;
            }
            assert!(
                Instant::now() < end,
                "memlogd's lines of {name} did not come within 30 s; it has: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would: its socket files stay behind, nobody listens.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Memlogd {
    fn drop(&mut self) {
        self.kill();
    }
}
