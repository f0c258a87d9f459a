//! Processes: starting them with a clean inheritance (`spawn.rs`, `inherit.rs`), the single
//! place that reaps them (`reaper.rs`), pidfds and start times (`pidfd.rs`), exit statuses
//! (`exit.rs`), and killing a process with what it started (`kill.rs`).

mod exit;
mod inherit;
mod kill;
mod pidfd;
mod reaper;
mod spawn;

pub(crate) use exit::{ExitStatus, signal_name};
pub use inherit::{block_sigchld, close_inherited_on_exec};
pub(crate) use kill::{kill_tree, kill_tree_of};
pub(crate) use pidfd::{PidFd, start_time};
pub(crate) use reaper::{Waiter, reaper};
pub(crate) use spawn::{Io, Spawn, Spawned, pid_of};
