//! Booting an image in QEMU (TCG, no KVM: a KVM guest hung on this machine) with its serial
//! console captured, and reading that console. One guest at a time per test binary: the
//! machine is shared, and a TCG guest keeps a core busy.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serialises the guests of one test binary.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// QEMU, killed when dropped however the test ends.
struct Guest(Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a boot showed.
pub struct Boot {
    /// Everything the guest wrote on its serial console.
    pub console: String,
    pub qemu_stderr: String,
    /// QEMU's exit status; `None` if it still ran at the limit (and was killed).
    pub status: Option<ExitStatus>,
    pub limit: Duration,
}

impl Boot {
    /// Fails unless QEMU ended by itself (the guest powered off) and exited 0.
    pub fn assert_ended(&self) {
        let status = self.status.unwrap_or_else(|| {
            panic!(
                "the guest still ran after {:?} (killed): it never powered off",
                self.limit
            )
        });
        assert!(status.success(), "qemu: {status}: {}", self.qemu_stderr);
    }
}

/// Boots `kernel` and `initrd` with `append` on the kernel command line, 512 MiB, one CPU,
/// no network card, no reboot (a reboot or panic ends QEMU), and waits up to `limit` for
/// QEMU to end. The console is printed to the test's output whatever happens.
pub fn boot(kernel: &Path, initrd: &Path, append: &str, limit: Duration) -> Boot {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512M", "-smp", "1", "-nographic"])
        .args(["-no-reboot", "-nic", "none", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 starts");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let mut guest = Guest(child);
    let console = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let console = console.clone();
        std::thread::spawn(move || {
            let mut out = out;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                console.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let err_reader = std::thread::spawn(move || {
        let mut err = err;
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = guest.0.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // QEMU must be gone before the readers can see the end of their pipes.
    drop(guest);
    let _ = reader.join();
    let qemu_stderr = err_reader.join().unwrap_or_default();
    let console = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    eprintln!(
        "--- console ({:.1}s)\n{console}\n--- qemu stderr\n{qemu_stderr}",
        start.elapsed().as_secs_f64()
    );
    Boot {
        console,
        qemu_stderr,
        status,
        limit,
    }
}

/// Where `needle` first appears in `console` at or after `from`; fails the test otherwise.
pub fn find(console: &str, needle: &str, from: usize) -> usize {
    match console[from..].find(needle) {
        Some(i) => from + i,
        None => panic!("`{needle}` missing (after byte {from}) on the console"),
    }
}

/// Where the last of `needles` appears, each found in turn after the one before it,
/// starting at `from`; fails the test naming the first one missing.
pub fn in_order(console: &str, from: usize, needles: &[&str]) -> usize {
    needles.iter().fold(from, |at, n| find(console, n, at))
}

/// The first console line that contains `needle`.
pub fn line_with<'a>(console: &'a str, needle: &str) -> &'a str {
    console
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}` on the console"))
}

/// How many times `needle` appears on the console.
pub fn count(console: &str, needle: &str) -> usize {
    console.matches(needle).count()
}
