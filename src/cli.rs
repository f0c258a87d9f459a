//! Command line: the multi-call names and the clap definitions with their help texts.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

const ABOUT: &str =
    "Init and service supervisor for immutable Linux images whose userland is OCI containers";

const LONG_ABOUT: &str = "\
lkinit is one binary that boots a LinuxKit-style image: as PID 1 it mounts the early \
filesystems, runs the onboot bundles one after another, then supervises the services.

It acts on the name it is called by: `onboot`, `onshutdown`, `init`, or `service` (the \
service CLI). Called as `lkinit`, the first word names the command.

A bundle is a directory NAME/ with config.json (OCI runtime spec), rootfs/ (or lower/ for \
a writable overlay root) and an optional runtime.json or runtime.yml (mkdir, mounts, \
cgroups, interfaces, bindNS, namespace).";

#[derive(Parser, Debug)]
#[command(name = "lkinit", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every command takes, before or after the command word.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Print errors only
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print debug messages too (RUST_LOG works as well)
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// OCI runtime binary, looked up in PATH (runc and crun work)
    #[arg(long, global = true, value_name = "BIN", default_value = "runc")]
    pub runtime: String,
    /// Passed to the runtime as --root [default: the runtime's own]
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_root: Option<PathBuf>,
    /// The supervisor's control socket
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/run/lkinit/service.sock"
    )]
    pub sock: PathBuf,
    /// lkinit's own state: pid files, generated configs, runtime logs
    #[arg(long, global = true, value_name = "DIR", default_value = "/run/lkinit")]
    pub state_dir: PathBuf,
}

/// `onboot` and `onshutdown`.
#[derive(Args, Debug, Clone)]
pub struct RunnerArgs {
    /// Directory of bundles, run in name order [default: /containers/onboot or
    /// /containers/onshutdown]; a missing directory is not an error
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Where PHASE.NAME.out.log (stdout) and PHASE.NAME.log (stderr) go [default:
    /// /run/log/onboot or /run/log/onshutdown, linked from /var/log/PHASE]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Kill a bundle that runs longer than SECS, report it as timed out and go on [default:
    /// no limit]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// What every command of the service CLI takes.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ClientArgs {
    /// Give up when the supervisor has not answered within SECS, 0 to wait for ever
    /// [default: 30 for list, status and logs; 300 for start, stop and restart]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// `init`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Words of the kernel command line that the kernel passed on to init; ignored (init
    /// reads /proc/cmdline)
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub kernel_args: Vec<String>,
}

/// `system-init`.
#[derive(Args, Debug, Clone)]
pub struct SupervisorArgs {
    /// Directory of service bundles
    #[arg(long, value_name = "DIR", default_value = "/containers/services")]
    pub path: PathBuf,
    /// Where NAME.out.log (stdout) and NAME.log (stderr) of each service go
    #[arg(long, value_name = "DIR", default_value = "/var/log")]
    pub log_dir: PathBuf,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run each bundle of /containers/onboot to completion, one at a time, in name order.
    /// Exit status: 0 if every bundle ran and exited 0, 1 otherwise.
    Onboot(RunnerArgs),
    /// Like onboot, for /containers/onshutdown (run at shutdown)
    Onshutdown(RunnerArgs),
    /// Be the system's init (PID 1): early mounts, modules, onboot, the supervisor, ordered
    /// shutdown on SIGUSR2 (poweroff), SIGTERM or SIGINT (reboot), SIGUSR1 (halt)
    Init(InitArgs),
    /// Run the service supervisor in the foreground: start every bundle of --path, restart
    /// the ones that die, answer the service CLI on --sock
    ///
    /// Each bundle may carry a service.json or service.yml with its restart policy, backoff,
    /// crash-loop limit, stop grace period and start order (see the README). SIGTERM or
    /// SIGINT stops every service, last started first, and exits 0. Killed and started
    /// again with the same --state-dir, it adopts the services that still run.
    SystemInit(SupervisorArgs),
    /// One line per service: name, state, pid, restarts
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// State, pid, exit code, restarts and since of a service; exit 0 if running, 3 if not
    Status {
        /// The service (its bundle's directory name)
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prepare and start a service bundle of the supervisor's --path
    Start {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// SIGTERM a service, SIGKILL after the grace period; no process of it remains
    Stop {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop, then start: the service gets a new pid
    Restart {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a service's stdout log (on stdout) and stderr log (on stderr)
    Logs {
        /// Keep printing what the service writes
        #[arg(short, long)]
        follow: bool,
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run CMD inside a service's namespaces; exit status is CMD's (128 + signal if killed)
    Exec {
        /// Namespaces to join, comma separated (mnt,uts,ipc,net,pid,cgroup,user) [default:
        /// all of them]
        #[arg(long, value_delimiter = ',', value_name = "NS")]
        ns: Option<Vec<String>>,
        name: String,
        /// The command and its arguments, after `--`; a bare name is looked up in the
        /// container's /bin, /usr/sbin, /usr/bin
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Mount host path SRC at DST inside a running service; the host's mounts do not change
    Mount {
        name: String,
        src: PathBuf,
        dst: PathBuf,
    },
    /// Unmount DST inside a running service
    Umount { name: String, dst: PathBuf },
    /// Internal: the single-threaded child that enters a service's namespaces for exec,
    /// mount and umount (REQUEST is JSON written by lkinit itself)
    #[command(hide = true)]
    NsenterHelper { request: String },
    /// Internal: holds a fresh user namespace while lkinit writes its id mappings
    #[command(hide = true)]
    UsernsHold,
}

/// Rewrites argv for the multi-call names: `onboot ARGS` is `lkinit onboot ARGS`, `service
/// ARGS` is `lkinit ARGS`, and `init` (or PID 1 with no command) is `lkinit init`.
pub fn normalize_args(mut argv: Vec<OsString>, is_pid1: bool) -> Vec<OsString> {
    if argv.is_empty() {
        argv.push("lkinit".into());
    }
    let base = std::path::Path::new(&argv[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match base.as_str() {
        "onboot" | "onshutdown" | "init" => {
            argv.insert(1, base.into());
            argv[0] = "lkinit".into();
        }
        "service" => argv[0] = "service".into(),
        _ => {
            // The kernel starts init with no arguments (or with ones meant for it).
            if is_pid1 && argv.len() == 1 {
                argv.push("init".into());
            }
        }
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn norm(v: &[&str], pid1: bool) -> Vec<String> {
        normalize_args(v.iter().map(OsString::from).collect(), pid1)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn multi_call_names() {
        assert_eq!(
            norm(&["/usr/bin/onboot", "--timeout", "3"], false),
            ["lkinit", "onboot", "--timeout", "3"]
        );
        assert_eq!(norm(&["onshutdown"], false), ["lkinit", "onshutdown"]);
        assert_eq!(norm(&["/sbin/init"], true), ["lkinit", "init"]);
        assert_eq!(
            norm(&["/usr/bin/service", "list"], false),
            ["service", "list"]
        );
        assert_eq!(norm(&["lkinit"], true), ["lkinit", "init"]);
        assert_eq!(norm(&["lkinit", "list"], true), ["lkinit", "list"]);
        assert_eq!(norm(&["./lkinit"], false), ["./lkinit"]);
    }

    #[test]
    fn global_options_before_or_after() {
        let a =
            Cli::try_parse_from(["lkinit", "--runtime", "crun", "onboot", "--path", "/p"]).unwrap();
        let b =
            Cli::try_parse_from(["lkinit", "onboot", "--path", "/p", "--runtime", "crun"]).unwrap();
        assert_eq!(a.global.runtime, "crun");
        assert_eq!(b.global.runtime, "crun");
        let c = Cli::try_parse_from(["service", "--sock", "/s", "list"]).unwrap();
        assert_eq!(c.global.sock, PathBuf::from("/s"));
        assert!(matches!(c.command, Some(Command::List { .. })));
        let c = Cli::try_parse_from(["service", "stop", "web", "--timeout", "2.5"]).unwrap();
        match c.command {
            Some(Command::Stop { name, client }) => {
                assert_eq!((name.as_str(), client.timeout), ("web", Some(2.5)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let c = Cli::try_parse_from([
            "service", "exec", "--ns", "net,uts", "web", "--", "ip", "-a",
        ])
        .unwrap();
        match c.command {
            Some(Command::Exec { ns, name, cmd }) => {
                assert_eq!(ns.unwrap(), vec!["net", "uts"]);
                assert_eq!(name, "web");
                assert_eq!(cmd, vec!["ip", "-a"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn init_ignores_what_the_kernel_passes_on() {
        // Unknown kernel parameters reach init as arguments; PID 1 must not fail on them.
        let argv = normalize_args(
            ["/init", "quiet", "-b", "foo=bar"]
                .iter()
                .map(OsString::from)
                .collect(),
            true,
        );
        let c = Cli::try_parse_from(argv).unwrap();
        match c.command {
            Some(Command::Init(a)) => assert_eq!(a.kernel_args, ["quiet", "-b", "foo=bar"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
