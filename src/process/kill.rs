//! Killing a process with everything it started, for a runtime or a hook that hangs.

use super::pidfd::PidFd;
use nix::sys::signal::Signal;

/// The children of `pid` (of all its threads).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.filter_map(Result::ok) {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// Kills `pid` and every process below it (for a runtime that hangs: the hooks and helpers
/// it started go with it). Each is stopped first, so none can fork past the walk, then all
/// are killed, each through a pidfd. Processes that left the tree (daemonized into another
/// parent) are not found.
pub fn kill_tree(pid: i32) {
    if let Ok(fd) = PidFd::open(pid) {
        kill_tree_of(&fd);
    }
}

/// [`kill_tree`] from a process pinned by its pidfd (one that is not our child, whose pid
/// alone could name another process by now).
pub fn kill_tree_of(root: &PidFd) {
    let _ = root.signal(Signal::SIGSTOP);
    let mut stopped = Vec::new();
    let mut todo = children_of(root.pid());
    while let Some(p) = todo.pop() {
        let Ok(fd) = PidFd::open(p) else { continue };
        let _ = fd.signal(Signal::SIGSTOP);
        todo.extend(children_of(p));
        stopped.push(fd);
        if stopped.len() > 4096 {
            break;
        }
    }
    let _ = root.signal(Signal::SIGKILL);
    for fd in &stopped {
        let _ = fd.signal(Signal::SIGKILL);
    }
}
