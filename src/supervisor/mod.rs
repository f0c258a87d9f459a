//! `lkinit system-init`: the service supervisor, and the service CLI that talks to it.
//!
//! One tokio runtime on one thread waits for everything (container exits, the control
//! socket, timers, signals, service output); the runtime binary, mounts and other blocking
//! work run on a few blocking threads. Every service is a task (service.rs) that owns its
//! container. What a restarted supervisor needs is kept under the state directory
//! (record.rs), so killing the supervisor never takes a service down, and the next one
//! adopts what still runs.

pub mod checks;
pub mod client;
pub mod memory;
pub mod notify;
pub mod output;
pub mod policy;
pub mod probe;
pub mod protocol;
pub mod ready;
pub mod record;
pub mod server;
pub mod service;
pub mod settings;
pub mod throttle;
pub mod types;

use crate::cli::SupervisorArgs;
use crate::container::Ctx;
use crate::logs::Memlogd;
use crate::process;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{oneshot, watch};
use types::{Boot, Status, Sup};

/// Threads for blocking work at once: enough to overlap the runtime's process start-ups,
/// few enough to stay small.
const BLOCKING_THREADS: usize = 8;

/// `lkinit system-init`: runs until SIGTERM or SIGINT, then stops every service and exits 0.
pub fn run(ctx: &Ctx, args: &SupervisorArgs, sock: &Path, memlogd: Memlogd) -> i32 {
    // One malloc arena: the threads here are few and mostly idle, and every arena keeps
    // its own memory.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; it is called before any other thread
    // allocates (the reaper thread starts below).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // A subreaper from the start: a container's init becomes our child when the runtime
    // that made it exits.
    let _ = process::reaper();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(Duration::from_secs(2))
        .thread_stack_size(512 * 1024)
        .thread_name("blocking")
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the supervisor's runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(supervise(
        ctx.clone(),
        args.clone(),
        sock.to_path_buf(),
        memlogd,
    ));
    // Blocking threads still running (none, normally) must not hold up the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Where the runtime commands in flight are noted.
fn calls_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runtime-calls")
}

/// Why the state directory cannot be this supervisor's.
#[derive(Debug, thiserror::Error)]
enum LockError {
    #[error("cannot create {}: {source}", dir.display())]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {}: {source}", file.display())]
    Open {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("another supervisor uses {} ({source})", dir.display())]
    Taken {
        dir: PathBuf,
        source: nix::errno::Errno,
    },
}

/// Holds the state directory for this supervisor alone (released when it dies, however).
fn lock_state_dir(state_dir: &Path) -> Result<nix::fcntl::Flock<File>, LockError> {
    std::fs::create_dir_all(state_dir).map_err(|source| LockError::Create {
        dir: state_dir.to_path_buf(),
        source,
    })?;
    let p = state_dir.join("supervisor.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|source| LockError::Open {
            file: p.clone(),
            source,
        })?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, source)| LockError::Taken {
            dir: state_dir.to_path_buf(),
            source,
        },
    )
}

/// Why `name` cannot be a service, beyond being a valid bundle name: its logs are
/// LinuxKit's `NAME.out.log` (stdout) and `NAME.log` (stderr), so the stderr log of a name
/// ending in `.out` is the stdout log of the name without it. Such names are refused,
/// whether that other service exists or not (it may be added later); every other name
/// keeps LinuxKit's file names, and no two of them share a file.
pub fn name_error(name: &str, log_dir: &Path) -> Option<crate::logs::NameCollision> {
    crate::logs::name_collision("a service", log_dir, "", name)
}

/// The bundle directories of `path`, by name (a missing directory has none).
fn bundles(path: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(path) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if !crate::bundle::valid_name(&name) {
            log::warn!("skipping {}: not a valid service name", p.display());
            continue;
        }
        out.insert(name, p);
    }
    out
}

async fn supervise(mut ctx: Ctx, args: SupervisorArgs, sock: PathBuf, memlogd: Memlogd) -> i32 {
    let _lock = match lock_state_dir(&ctx.state_dir) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    // Before any container is touched: what a killed predecessor was still doing to one
    // would race with what this supervisor does next.
    ctx.runtime.note_calls_in(calls_dir(&ctx.state_dir));
    ctx.runtime.end_leftover_calls();
    let listener = match server::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{}", crate::error_chain(&e));
            return 1;
        }
    };
    let reserve = server::Reserve::take();
    if let Err(e) = crate::safefile::ensure_private_dir(&args.log_dir) {
        log::error!("log directory: {}", crate::error_chain(&e));
        return 1;
    }
    // A terminal hanging up must not take the supervisor down; a handler (not SIG_IGN)
    // keeps the default for the containers, which exec from here.
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (mut term, mut int, mut hup) = match signals {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            log::error!("cannot handle signals: {e}");
            return 1;
        }
    };
    let sup = Arc::new(Sup::new(
        ctx.clone(),
        args.path.clone(),
        args.log_dir.clone(),
        memlogd,
    ));
    let begun = Instant::now();
    let statuses = start_all(&sup);
    log::info!(
        "supervising {} service(s) from {}; control socket {}",
        statuses.len(),
        args.path.display(),
        sock.display()
    );
    tokio::spawn(report_started(statuses, begun));
    tokio::spawn(memory::trimmer());
    let server = tokio::spawn(server::serve(listener, sup.clone(), reserve));

    loop {
        tokio::select! {
            _ = term.recv() => break log::info!("SIGTERM: stopping every service"),
            _ = int.recv() => break log::info!("SIGINT: stopping every service"),
            _ = hup.recv() => log::info!("SIGHUP ignored"),
        }
    }
    server.abort();
    let _ = std::fs::remove_file(&sock);
    shutdown(&sup).await;
    let _ = std::fs::remove_dir(record::dir(&ctx.state_dir));
    let _ = std::fs::remove_dir(output::io_dir(&ctx.state_dir));
    let _ = std::fs::remove_dir(notify::root_dir(&ctx.state_dir));
    let _ = std::fs::remove_dir(ready::fifo_dir(&ctx.state_dir));
    let _ = std::fs::remove_dir(calls_dir(&ctx.state_dir));
    log::info!("all services stopped");
    0
}

/// Sets up every service: the bundles of the directory and whatever an earlier supervisor
/// recorded. Returns their status channels.
fn start_all(sup: &Arc<Sup>) -> Vec<watch::Receiver<Status>> {
    let found = bundles(&sup.path);
    let (records, errors) = record::load_all(sup.state_dir());
    for e in errors {
        log::warn!("ignoring a record: {}", crate::error_chain(&e));
    }
    let mut records: BTreeMap<String, record::Record> =
        records.into_iter().map(|r| (r.name.clone(), r)).collect();

    // The start order: each service's `after`, checked across all of them.
    let mut after: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut within: BTreeMap<String, Duration> = BTreeMap::new();
    let mut broken: BTreeMap<String, String> = BTreeMap::new();
    for (name, dir) in &found {
        match settings::load(dir, name) {
            Ok(s) => {
                after.insert(name.clone(), s.after);
                within.insert(name.clone(), s.after_timeout);
            }
            Err(e) => {
                after.insert(name.clone(), Vec::new());
                broken.insert(name.clone(), crate::error_chain(&e));
            }
        }
    }
    for (name, e) in policy::check_order(&after) {
        broken.entry(name).or_insert_with(|| e.to_string());
    }

    let mut statuses: BTreeMap<String, watch::Receiver<Status>> = BTreeMap::new();
    let spawn = |statuses: &mut BTreeMap<_, _>, name: &str, dir: PathBuf, boot: Boot| {
        let h = service::spawn(sup, name, dir, boot);
        statuses.insert(name.to_string(), h.status);
    };
    // Recorded services first: adopting what runs comes before starting anything new.
    for (name, r) in std::mem::take(&mut records) {
        let dir = found
            .get(&name)
            .cloned()
            .unwrap_or_else(|| r.bundle.clone());
        spawn(&mut statuses, &name, dir, Boot::Record(Box::new(r)));
    }
    // Then the rest, dependencies before their dependents so their channels exist.
    let mut pending: Vec<String> = found
        .keys()
        .filter(|n| !statuses.contains_key(*n))
        .cloned()
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut left = Vec::new();
        for name in pending {
            let dir = found[&name].clone();
            if let Some(reason) = broken.get(&name) {
                spawn(&mut statuses, &name, dir, Boot::Failed(reason.clone()));
                continue;
            }
            let deps = &after[&name];
            if deps.iter().any(|d| !statuses.contains_key(d)) {
                left.push(name);
                continue;
            }
            let wait = deps.iter().map(|d| statuses[d].clone()).collect();
            let within = within.get(&name).copied().unwrap_or(Duration::ZERO);
            let boot = Boot::Start {
                after: wait,
                within,
            };
            spawn(&mut statuses, &name, dir, boot);
        }
        if left.len() == before {
            // Only services whose dependencies could not be set up are left.
            for name in left.drain(..) {
                let dir = found[&name].clone();
                let boot = Boot::Start {
                    after: Vec::new(),
                    within: Duration::ZERO,
                };
                spawn(&mut statuses, &name, dir, boot);
            }
        }
        pending = left;
    }
    statuses.into_values().collect()
}

/// Logs once every service has started (or settled otherwise): the boot's figure.
async fn report_started(mut statuses: Vec<watch::Receiver<Status>>, begun: Instant) {
    for s in &mut statuses {
        let _ = s.wait_for(|s| s.settled).await;
    }
    let running = statuses
        .iter()
        .filter(|s| s.borrow().state == protocol::State::Running)
        .count();
    log::info!(
        "{running} of {} service(s) running after {} ms",
        statuses.len(),
        begun.elapsed().as_millis()
    );
}

/// Stops every service: SIGTERM to the last started first, one after the other, while
/// their grace periods run side by side.
async fn shutdown(sup: &Arc<Sup>) {
    let mut handles: Vec<types::Handle> = sup.services().values().cloned().collect();
    // Running ones by start, newest first; those with nothing running last.
    handles.sort_by_key(|h| std::cmp::Reverse(h.status.borrow().started));
    let mut done = Vec::new();
    for h in handles {
        let (s_tx, s_rx) = oneshot::channel();
        let (d_tx, d_rx) = oneshot::channel();
        let cmd = types::Cmd::Shutdown {
            signalled: s_tx,
            done: d_tx,
        };
        if h.tx.send(cmd).is_ok() {
            let _ = s_rx.await;
            done.push(d_rx);
        }
    }
    for d in done {
        let _ = d.await;
    }
}
