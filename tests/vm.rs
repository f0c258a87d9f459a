//! The whole life of a system: the example image (Debian's kernel, an initramfs built by
//! scripts/build-image.sh with this build of lkinit as init and the bundles of examples/)
//! boots in QEMU without KVM, and its console is checked from the first lkinit line to the
//! kernel's power-down line.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LKINIT: &str = env!("CARGO_BIN_EXE_lkinit");

/// Generous: a TCG boot takes well under a minute here, CI machines may be slower.
const BOOT_LIMIT: Duration = Duration::from_secs(420);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the image build and the boot need.
fn ensure_tools() {
    common::ensure_installed(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("cpio", "cpio"),
        ("depmod", "kmod"),
        ("busybox", "busybox-static"),
        ("crun", "crun"),
        ("strip", "binutils"),
    ]);
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().expect("runs");
    assert!(st.success(), "{cmd:?}: {st}");
}

/// QEMU, killed when the test ends however it ends.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where `needle` first appears in `hay` at or after `from`; fails the test with the console
/// otherwise.
fn find(console: &str, needle: &str, from: usize) -> usize {
    match console[from..].find(needle) {
        Some(i) => from + i,
        None => panic!("`{needle}` missing (after byte {from}) on the console"),
    }
}

fn line_with<'a>(console: &'a str, needle: &str) -> &'a str {
    console
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}` on the console"))
}

#[test]
fn example_image_boots_runs_and_powers_off() {
    ensure_tools();
    let tmp = tempfile::Builder::new()
        .prefix("lkinit-vm")
        .tempdir()
        .unwrap();
    let containers = tmp.path().join("containers");
    std::fs::create_dir_all(&containers).unwrap();
    for phase in ["onboot", "services", "onshutdown"] {
        sh(Command::new("cp")
            .arg("-a")
            .arg(repo().join("examples").join(phase))
            .arg(&containers));
    }
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
    sh(Command::new(repo().join("scripts/build-image.sh"))
        .arg("--lkinit")
        .arg(LKINIT)
        .arg("--containers")
        .arg(&containers)
        .arg("--out")
        .arg(&image));

    // The image's own kernel parameters (it ships crun and says so).
    let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
    assert_eq!(cmdline.trim(), "lkinit.runtime=crun");
    let append = format!("console=ttyS0 panic=-1 quiet {}", cmdline.trim());
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512M", "-smp", "1", "-nographic"])
        .args(["-no-reboot", "-nic", "none", "-kernel"])
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(image.join("initrd.img"))
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 starts");
    let out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut vm = Vm(child);
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
    let start = Instant::now();
    let status = loop {
        if let Some(st) = vm.0.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > BOOT_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = reader.join();
    let mut qemu_err = String::new();
    let _ = err.read_to_string(&mut qemu_err);
    let console = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    eprintln!(
        "--- console ({:.1}s)\n{console}\n--- qemu stderr\n{qemu_err}",
        start.elapsed().as_secs_f64()
    );
    let status = status.unwrap_or_else(|| panic!("the VM still ran after {BOOT_LIMIT:?}"));
    assert!(status.success(), "qemu: {status}");

    // No panic, no fatal error of PID 1.
    assert!(!console.contains("Kernel panic"));
    assert!(!console.contains("fatal:"), "PID 1 reported a fatal error");

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
    at = find(&console, "lkinit: shutting down to power off", at);
    at = find(&console, "lkinit: onshutdown: starting", at);
    at = find(&console, "goodbye from onshutdown", at);
    at = find(&console, "000-goodbye: exit code 0", at);
    at = find(&console, "lkinit: onshutdown: finished", at);
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
    at = find(&console, "lkinit: unmounted ", at);
    at = find(&console, "lkinit: power off", at);
    find(&console, "reboot: Power down", at);
}
