//! The end of the system: which signal asks for what, and the last steps every shutdown
//! takes once onshutdown has run and the supervisor has stopped its services: SIGTERM to
//! every process left, a grace period, SIGKILL, sync, unmount, reboot(2).

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the machine does at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Reboot,
    Halt,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PowerOff => "power off",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
        }
    }

    fn mode(self) -> RebootMode {
        match self {
            Action::PowerOff => RebootMode::RB_POWER_OFF,
            Action::Reboot => RebootMode::RB_AUTOBOOT,
            Action::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }
}

/// The signals busybox's `poweroff`, `reboot` and `halt` send to PID 1 (and SIGINT, which the
/// kernel sends on Ctrl-Alt-Del once PID 1 has asked for it).
pub const SIGNALS: [(Signal, Action); 4] = [
    (Signal::SIGUSR2, Action::PowerOff),
    (Signal::SIGTERM, Action::Reboot),
    (Signal::SIGUSR1, Action::Halt),
    (Signal::SIGINT, Action::Reboot),
];

pub fn action_for(sig: Signal) -> Option<Action> {
    SIGNALS.iter().find(|(s, _)| *s == sig).map(|(_, a)| *a)
}

const PF_KTHREAD: u64 = 0x0020_0000;

/// From `/proc/PID/stat`: (state, flags). The command name may hold spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let flags = f.get(6)?.parse().ok()?;
    Some((state, flags))
}

/// Live user-space processes other than PID 1 (kernel threads and zombies left out: the
/// reaper collects the zombies).
pub fn user_processes() -> Vec<(i32, String)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        match parse_stat(&stat) {
            Some((state, flags)) if state != 'Z' && state != 'X' && flags & PF_KTHREAD == 0 => {
                let comm = stat
                    .split_once('(')
                    .and_then(|(_, r)| r.rsplit_once(')'))
                    .map(|(c, _)| c.to_string())
                    .unwrap_or_default();
                v.push((pid, comm));
            }
            _ => {}
        }
    }
    v
}

fn wait_until_none_left(limit: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = user_processes();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(procs: &[(i32, String)]) -> String {
    let mut s: Vec<String> = procs
        .iter()
        .take(8)
        .map(|(p, c)| format!("{c}[{p}]"))
        .collect();
    if procs.len() > 8 {
        s.push("...".into());
    }
    s.join(" ")
}

/// SIGTERM to every process, `grace` for them to go, then SIGKILL.
pub fn kill_all(grace: Duration) {
    if user_processes().is_empty() {
        return;
    }
    log::info!("sending SIGTERM to every process");
    match kill(Pid::from_raw(-1), Signal::SIGTERM) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::error!("kill(-1, SIGTERM): {e}"),
    }
    let left = wait_until_none_left(grace);
    if left.is_empty() {
        return;
    }
    log::warn!(
        "{} process(es) still running after {}s, sending SIGKILL: {}",
        left.len(),
        grace.as_secs(),
        names(&left)
    );
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let left = wait_until_none_left(Duration::from_secs(2));
    if !left.is_empty() {
        log::error!("processes survived SIGKILL: {}", names(&left));
    }
}

/// Unmounts everything but `/`, children before parents, then makes `/` read-only.
pub fn unmount_all() {
    let table = super::early::read_mountinfo();
    let (mut done, mut detached) = (0, 0);
    for e in table.iter().rev() {
        if e.mount_point == Path::new("/") {
            continue;
        }
        match umount2(&e.mount_point, MntFlags::empty()) {
            Ok(()) => done += 1,
            Err(Errno::EBUSY) => {
                if umount2(&e.mount_point, MntFlags::MNT_DETACH).is_ok() {
                    detached += 1;
                }
            }
            // Already gone with its parent, or never reachable.
            Err(err) => log::debug!("umount {}: {err}", e.mount_point.display()),
        }
    }
    let _ = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    log::info!("unmounted {done} file system(s), {detached} busy one(s) detached");
}

/// The last steps: every process ended, data synced, file systems unmounted, then the
/// machine stops the way `action` says. Never returns.
pub fn finish(action: Action, grace: Duration) -> ! {
    kill_all(grace);
    nix::unistd::sync();
    unmount_all();
    nix::unistd::sync();
    log::info!("{}", action.as_str());
    halt_now(action)
}

/// reboot(2); if even that fails there is nothing left to do but stay.
pub fn halt_now(action: Action) -> ! {
    let e = reboot(action.mode()).unwrap_err();
    log::error!("reboot(2) for {}: {e}; stopping here", action.as_str());
    loop {
        nix::unistd::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_ask_for_what_busybox_means() {
        assert_eq!(action_for(Signal::SIGUSR2), Some(Action::PowerOff));
        assert_eq!(action_for(Signal::SIGTERM), Some(Action::Reboot));
        assert_eq!(action_for(Signal::SIGUSR1), Some(Action::Halt));
        assert_eq!(action_for(Signal::SIGINT), Some(Action::Reboot));
        assert_eq!(action_for(Signal::SIGHUP), None);
        assert_eq!(action_for(Signal::SIGCHLD), None);
        assert_eq!(
            Action::PowerOff.mode() as i32,
            RebootMode::RB_POWER_OFF as i32
        );
        assert_eq!(
            Action::Halt.mode() as i32,
            RebootMode::RB_HALT_SYSTEM as i32
        );
    }

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0";
        assert_eq!(parse_stat(kthread), Some(('S', 2129984)));
        assert!(parse_stat(kthread).unwrap().1 & PF_KTHREAD != 0);
        let odd = "77 (a) b (c) Z 1 77 77 0 -1 4194560 0";
        assert_eq!(parse_stat(odd), Some(('Z', 4194560)));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn this_test_process_is_a_user_process() {
        let me = nix::unistd::getpid().as_raw();
        let all = user_processes();
        assert!(all.iter().any(|(p, _)| *p == me), "{all:?}");
    }
}
