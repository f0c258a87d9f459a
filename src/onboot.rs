//! The sequential runner behind `onboot` and `onshutdown`: every bundle of a directory, in
//! name order, each to completion before the next. One bad bundle is reported and skipped;
//! it never stops the boot.

use crate::bundle::Bundle;
use crate::container::{self, ContainerError, Ctx, Mode, Running, StepError};
use crate::logs::{self, Memlogd, Pumped};
use crate::oci_runtime::{Deadline, RuntimeError};
use crate::process::ExitStatus;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which of the two runners this is; it names the default paths and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    Onboot,
    Onshutdown,
}

impl Runner {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Runner::Onboot => "onboot",
            Runner::Onshutdown => "onshutdown",
        }
    }

    pub(crate) fn default_path(self) -> PathBuf {
        PathBuf::from(format!("/containers/{}", self.name()))
    }

    /// What LinuxKit calls the logs of this runner: `onboot.NAME`, `shutdown.NAME`, in
    /// `/run/log/onboot` and `/run/log/shutdown`.
    pub(crate) fn log_prefix(self) -> &'static str {
        match self {
            Runner::Onboot => "onboot",
            Runner::Onshutdown => "shutdown",
        }
    }

    pub(crate) fn default_log_dir(self) -> PathBuf {
        PathBuf::from(format!("/run/log/{}", self.log_prefix()))
    }

    /// Where LinuxKit users look for these logs.
    fn var_log_link(self) -> PathBuf {
        PathBuf::from(format!("/var/log/{}", self.log_prefix()))
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) runner: Runner,
    pub(crate) path: PathBuf,
    pub(crate) log_dir: PathBuf,
    /// Link `/var/log/onboot` or `/var/log/shutdown` to the log directory (done when the default is used).
    pub(crate) link_var_log: bool,
    /// The path was given (a missing one is then a mistake, not an image without onboot).
    pub(crate) path_given: bool,
    /// The limit of a bundle without a `lkinit.timeout` annotation.
    pub(crate) timeout: Option<Duration>,
    /// Report failures only.
    pub(crate) quiet: bool,
    /// Output goes there when it is running (looked at for each bundle), else to log files.
    pub(crate) memlogd: Memlogd,
    /// How the log files are kept.
    pub(crate) log_policy: logs::Policy,
}

impl Options {
    pub fn new(
        runner: Runner,
        path: Option<PathBuf>,
        log_dir: Option<PathBuf>,
        timeout: Option<Duration>,
        quiet: bool,
        memlogd: Memlogd,
        log_policy: logs::Policy,
    ) -> Options {
        Options {
            runner,
            path_given: path.is_some(),
            path: path.unwrap_or_else(|| runner.default_path()),
            link_var_log: log_dir.is_none(),
            log_dir: log_dir.unwrap_or_else(|| runner.default_log_dir()),
            timeout,
            quiet,
            memlogd,
            log_policy,
        }
    }
}

/// How one bundle ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration, ExitStatus),
    /// Timed out, and the runtime did not end when its container was killed: it was killed
    /// too (the message says which).
    TimedOutRuntime(Duration, String),
    Failed(String),
}

impl Outcome {
    pub(crate) fn ok(&self) -> bool {
        matches!(self, Outcome::Exited(s) if s.success())
    }

    fn line(&self) -> String {
        match self {
            Outcome::Exited(s) => s.to_string(),
            Outcome::TimedOut(d, s) => format!("timed out after {}s, killed: {s}", d.as_secs()),
            Outcome::TimedOutRuntime(d, what) => {
                format!("timed out after {}s, killed: {what}", d.as_secs())
            }
            Outcome::Failed(reason) => format!("error: {reason}"),
        }
    }
}

/// One line per bundle on stdout, beginning `NAME: `.
fn report(opts: &Options, name: &str, outcome: &Outcome) {
    if opts.quiet && outcome.ok() {
        return;
    }
    let mut out = std::io::stdout().lock();
    // One line, whatever the reason carries: a runtime quotes a hook's output in its error,
    // and a newline there would start a line of its own, forged as another bundle's.
    let line = crate::bundle::printable_name(&outcome.line());
    let _ = writeln!(out, "{name}: {line}");
    let _ = out.flush();
}

/// The bundles of `dir` in name order (byte order, as LinuxKit sorts them).
fn entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    v.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(v)
}

fn link_var_log(opts: &Options) {
    let link = opts.runner.var_log_link();
    match std::fs::read_link(&link) {
        Ok(t) if t == opts.log_dir => return,
        Ok(_) => {}
        Err(_) if link.exists() => {
            log::warn!(
                "{} exists and is not a link; logs are in {}",
                link.display(),
                opts.log_dir.display()
            );
            return;
        }
        Err(_) => {}
    }
    let _ = std::fs::remove_file(&link);
    if let Some(parent) = link.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::os::unix::fs::symlink(&opts.log_dir, &link) {
        log::warn!(
            "cannot link {} to {}: {e}",
            link.display(),
            opts.log_dir.display()
        );
    }
}

/// Runs every bundle; the exit status is 0 when each ran and exited 0, else 1.
pub fn run(ctx: &Ctx, opts: &Options) -> i32 {
    let list = match entries(&opts.path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.path_given => {
            log::error!(
                "{}: --path {} does not exist",
                opts.runner.name(),
                opts.path.display()
            );
            return 1;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "{}: {} does not exist, nothing to run",
                opts.runner.name(),
                opts.path.display()
            );
            return 0;
        }
        Err(e) => {
            log::error!(
                "{}: cannot read {}: {e}",
                opts.runner.name(),
                opts.path.display()
            );
            return 1;
        }
    };
    if opts.path.join("config.json").exists() {
        log::error!(
            "{}: {} is a bundle, not a directory of bundles: give its parent (--path {})",
            opts.runner.name(),
            opts.path.display(),
            opts.path
                .parent()
                .map_or_else(|| "/".into(), |p| p.display().to_string())
        );
        return 1;
    }
    if let Err(e) = crate::safefile::ensure_private_dir(&opts.log_dir) {
        log::error!("log directory: {}", crate::error_chain(&e));
        return 1;
    }
    if opts.link_var_log {
        link_var_log(opts);
    }

    let (mut ran, mut failed) = (0, 0);
    for dir in list {
        let name = dir
            .file_name()
            .map(|n| crate::bundle::printable_name(&n.to_string_lossy()))
            .unwrap_or_default();
        if !dir.is_dir() {
            log::warn!(
                "{}: skipping {}: not a directory",
                opts.runner.name(),
                crate::bundle::printable_name(&dir.to_string_lossy())
            );
            continue;
        }
        let outcome = run_one(ctx, opts, &dir);
        report(opts, &name, &outcome);
        ran += 1;
        if !outcome.ok() {
            failed += 1;
        }
    }
    log::info!(
        "{}: {ran} bundle(s), {} ok, {failed} failed",
        opts.runner.name(),
        ran - failed
    );
    i32::from(failed > 0)
}

/// How long a killed container's runtime gets to end before it is killed itself.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Output still in flight when the container has ended is given this long to arrive.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// One bundle from its directory to its outcome, cleanup included.
pub(crate) fn run_one(ctx: &Ctx, opts: &Options, dir: &Path) -> Outcome {
    let bundle = match Bundle::open(dir) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(crate::error_chain(&e)),
    };
    let prefix = format!("{}.", opts.runner.log_prefix());
    if let Some(e) = logs::name_collision("a bundle", &opts.log_dir, &prefix, &bundle.name) {
        return Outcome::Failed(e.to_string());
    }
    let base = format!("{prefix}{}", bundle.name);
    let tee = logs::tee(
        &opts.memlogd,
        &opts.log_dir,
        &bundle.name,
        &base,
        true,
        opts.log_policy,
    );
    let (stdio, mut tee) = match tee {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Failed(format!("logs: {}", crate::error_chain(&e)));
        }
    };
    let deadline = bundle
        .timeout()
        .unwrap_or(opts.timeout)
        .map(Deadline::after);
    // The timeout covers every runtime command of the bundle, its cleanup included.
    let rt = &ctx.runtime.within(deadline);
    let launched = container::launch_within(&bundle, ctx, &stdio, Mode::Foreground, deadline);
    // Our copies of the write ends: the output ends only when every copy is closed.
    drop(stdio);
    let mut running = match launched {
        Ok(r) => r,
        Err(e) => {
            tee.finish(OUTPUT_GRACE);
            return Outcome::Failed(e.report());
        }
    };
    // This thread copies the output while it waits: woken by the pipes and by the end of
    // the process the container's end is (the runtime, or its init). None: `until` passed.
    let mut wait_for_end = |running: &Running, until: Option<Instant>| {
        if tee.pump(running.exit_fd(), until) == Pumped::Exited {
            // Its pidfd said it has ended.
            return Some(running.ended());
        }
        match until {
            None => Some(running.wait()),
            Some(u) => running.wait_timeout(u.saturating_duration_since(Instant::now())),
        }
    };
    let result = match (wait_for_end(&running, deadline.map(|d| d.at)), deadline) {
        (Some(r), _) => r.map(Outcome::Exited),
        (None, None) => unreachable!("a wait without a deadline ends only with the container"),
        (None, Some(d)) => {
            running.kill(rt);
            match wait_for_end(&running, Some(Instant::now() + KILL_GRACE)) {
                Some(r) => r.map(|s| Outcome::TimedOut(d.limit, s)),
                None => {
                    // The container is gone or never was: the runtime hangs (a hook).
                    running.kill_runtime();
                    let _ = running.wait();
                    Ok(Outcome::TimedOutRuntime(
                        d.limit,
                        format!(
                            "`{} run` did not end with its container and was killed",
                            ctx.runtime.bin
                        ),
                    ))
                }
            }
        }
    };
    tee.finish(OUTPUT_GRACE);
    let undo = match &result {
        Err(ContainerError {
            failed: StepError::Run(RuntimeError::Failed { .. }),
            ..
        }) => running.finish_failed(rt),
        _ => running.finish(rt),
    };
    let mut outcome = match result {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.report()),
    };
    if !undo.is_empty() {
        let note = format!("cleanup failed: {undo}");
        outcome = match outcome {
            Outcome::Failed(r) => Outcome::Failed(format!("{r}; {note}")),
            other => Outcome::Failed(format!("{}; {note}", other.line())),
        };
    }
    outcome
}
