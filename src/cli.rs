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
service CLI); as LinuxKit's `service` does, a name that contains `volumes`, `onboot`, \
`onshutdown` or `containerd` (`/etc/init.d/010-onboot`) runs that step (`containerd`: the \
supervisor, `system-init`). Called as `lkinit`, the first word names the command.

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
    /// memlogd's log socket: while it is there, containers' stdout and stderr go to
    /// memlogd instead of log files
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "LKINIT_MEMLOGD_SOCKET",
        default_value = crate::logs::memlogd::DEFAULT_LOG_SOCKET
    )]
    pub memlogd_socket: PathBuf,
    /// memlogd's query socket, where `logs` reads a service's lines back from
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "LKINIT_MEMLOGD_QUERY_SOCKET",
        default_value = crate::logs::memlogd::DEFAULT_QUERY_SOCKET
    )]
    pub memlogd_query_socket: PathBuf,
    /// Run the OCI runtime with --debug and keep its JSON logs in STATE_DIR/runtime-logs
    /// (PID 1 sets it for onboot and onshutdown on `linuxkit.runc_debug=1`)
    #[arg(long, global = true)]
    pub runtime_debug: bool,
    /// Copy the OCI runtime's own log messages onto stderr (PID 1 sets it for onboot and
    /// onshutdown on `linuxkit.runc_console=1`)
    #[arg(long, global = true)]
    pub runtime_log_console: bool,
}

impl Global {
    /// Where memlogd is looked for.
    pub fn memlogd(&self) -> crate::logs::Memlogd {
        crate::logs::Memlogd::new(
            self.memlogd_socket.clone(),
            self.memlogd_query_socket.clone(),
        )
    }
}

/// `onboot` and `onshutdown`.
#[derive(Args, Debug, Clone)]
pub struct RunnerArgs {
    /// Directory of bundles, run in name order [default: /containers/onboot or
    /// /containers/onshutdown, where a missing directory means nothing to run; a given one
    /// must exist]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Where onboot.NAME.out.log (stdout) and onboot.NAME.log (stderr) go when memlogd is
    /// not running; shutdown.NAME... for onshutdown [default: /run/log/onboot or
    /// /run/log/shutdown, linked from /var/log/onboot or /var/log/shutdown]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Kill a bundle that runs longer than SECS, report it as timed out and go on; 0: no
    /// limit. A bundle's config.json annotation `lkinit.timeout` wins for that bundle
    /// [default: no limit]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=crate::bundle::MAX_TIMEOUT_SECS))]
    pub timeout: Option<u64>,
    /// Rotate a log file when it reaches SIZE (bytes, or with k, m or g: 512k, 8m), at a
    /// line boundary
    #[arg(long, value_name = "SIZE", default_value = "4m", value_parser = crate::logs::rotate::parse_size)]
    pub log_max_size: u64,
    /// Rotated log files kept (NAME.log.1 the newest), 0 to 9
    #[arg(long, value_name = "N", default_value_t = crate::logs::rotate::DEFAULT_KEEP, value_parser = clap::value_parser!(u32).range(0..=crate::logs::rotate::MAX_KEEP as i64))]
    pub log_keep: u32,
}

impl RunnerArgs {
    /// How the bundles' log files are kept.
    pub fn log_policy(&self) -> crate::logs::Policy {
        crate::logs::Policy {
            max_size: self.log_max_size,
            keep: self.log_keep,
            timestamps: false,
        }
    }
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

/// `volumes`.
#[derive(Args, Debug, Clone)]
pub struct VolumesArgs {
    /// Directory of volumes, each NAME/{lower,merged[,tmp]} as `linuxkit build` writes them
    #[arg(long, value_name = "DIR", default_value = crate::volumes::DEFAULT_DIR)]
    pub path: PathBuf,
}

/// `system-init`.
#[derive(Args, Debug, Clone)]
pub struct SupervisorArgs {
    /// Directory of service bundles
    #[arg(long, value_name = "DIR", default_value = "/containers/services")]
    pub path: PathBuf,
    /// Where NAME.out.log (stdout) and NAME.log (stderr) of each service go when memlogd
    /// is not running
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
    /// Prepare every volume of --path on its merged/: with tmp/, a writable overlay of
    /// lower/ (upper and work on a tmpfs); without, a read-only bind of lower/. Exit status:
    /// 0 if every volume is ready, 1 otherwise
    Volumes(VolumesArgs),
    /// Be the system's init (PID 1): early mounts, modules, onboot, the supervisor, ordered
    /// shutdown on SIGUSR2 (poweroff), SIGTERM or SIGINT (reboot), SIGUSR1 (halt)
    Init(InitArgs),
    /// Run the service supervisor in the foreground: start every bundle of --path, restart
    /// the ones that die, answer the service CLI on --sock
    ///
    /// Each bundle may carry a service.json or service.yml with its restart policy, backoff,
    /// crash-loop limit, stop grace period and start order (see docs/services.md). SIGTERM or
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

/// The command a LinuxKit link name stands for: LinuxKit's `service` acts on a name that
/// contains one of these words (`/etc/init.d/005-volumes`, `010-onboot`, `020-containerd`,
/// `/etc/shutdown.d/010-onshutdown`), tried in this order.
pub fn link_command(base: &str) -> Option<&'static str> {
    [
        ("volumes", "volumes"),
        ("onboot", "onboot"),
        ("onshutdown", "onshutdown"),
        ("containerd", "system-init"),
    ]
    .into_iter()
    .find(|(word, _)| base.contains(word))
    .map(|(_, command)| command)
}

impl Command {
    /// The word that names the command, for messages.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Onboot(_) => "onboot",
            Command::Onshutdown(_) => "onshutdown",
            Command::Init(_) => "init",
            Command::SystemInit(_) => "system-init",
            Command::Volumes(_) => "volumes",
            Command::Exec { .. } => "exec",
            Command::Mount { .. } => "mount",
            Command::Umount { .. } => "umount",
            Command::List { .. } => "list",
            Command::Status { .. } => "status",
            Command::Start { .. } => "start",
            Command::Stop { .. } => "stop",
            Command::Restart { .. } => "restart",
            Command::Logs { .. } => "logs",
            Command::NsenterHelper { .. } => "nsenter-helper",
            Command::UsernsHold => "userns-hold",
        }
    }

    /// Whether the command acts on the system itself (mounts, namespaces, the OCI runtime
    /// as root). The service CLI's commands only talk to the supervisor, whose socket says
    /// who may.
    pub fn needs_root(&self) -> bool {
        matches!(
            self,
            Command::Onboot(_)
                | Command::Onshutdown(_)
                | Command::Init(_)
                | Command::SystemInit(_)
                | Command::Volumes(_)
                | Command::Exec { .. }
                | Command::Mount { .. }
                | Command::Umount { .. }
        )
    }
}

/// Rewrites argv for the multi-call names: `onboot ARGS` is `lkinit onboot ARGS`, `service
/// ARGS` is `lkinit ARGS`, `init` (or PID 1 with no command) is `lkinit init`, and a LinuxKit
/// link name (see [`link_command`]) is its command.
pub fn normalize_args(mut argv: Vec<OsString>, is_pid1: bool) -> Vec<OsString> {
    if argv.is_empty() {
        argv.push("lkinit".into());
    }
    let base = std::path::Path::new(&argv[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match base.as_str() {
        "service" => argv[0] = "service".into(),
        "init" => {
            argv.insert(1, "init".into());
            argv[0] = "lkinit".into();
        }
        "lkinit" => {
            // The kernel starts init with no arguments (or with ones meant for it).
            if is_pid1 && argv.len() == 1 {
                argv.push("init".into());
            }
            // `lkinit service ARGS` is `service ARGS`, as the help says, also after global
            // options (`lkinit --sock S service list`).
            // (clap's command is built only when the word is there at all.)
            if argv.iter().skip(1).any(|w| w == "service")
                && let Some(i) = command_word(&argv)
                && argv[i] == "service"
            {
                argv.remove(i);
            }
        }
        _ => match link_command(&base) {
            Some(command) => {
                argv.insert(1, command.into());
                argv[0] = "lkinit".into();
            }
            None if is_pid1 && argv.len() == 1 => argv.push("init".into()),
            None => {}
        },
    }
    argv
}

/// Where the command word of `argv` is: the first word after the global options (and the
/// values of those that take one), as clap will read it.
fn command_word(argv: &[OsString]) -> Option<usize> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let takes_value = |word: &str| {
        cli.get_arguments().any(|a| {
            let named = word.strip_prefix("--").map_or(
                word.strip_prefix('-').and_then(|c| c.chars().next()) == a.get_short(),
                |l| a.get_long() == Some(l),
            );
            named && a.get_action().takes_values()
        })
    };
    let mut i = 1;
    while let Some(w) = argv.get(i) {
        let w = w.to_string_lossy();
        if w == "--" || !w.starts_with('-') {
            return (w != "--").then_some(i);
        }
        // `--opt=value` and flags are one word; `--opt value` two.
        i += if !w.contains('=') && takes_value(&w) {
            2
        } else {
            1
        };
    }
    None
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
        assert_eq!(
            norm(&["/usr/bin/lkinit", "service", "list"], false),
            ["/usr/bin/lkinit", "list"]
        );
        assert_eq!(norm(&["lkinit", "service"], false), ["lkinit"]);
        assert_eq!(
            norm(&["lkinit", "--sock", "/s", "-v", "service", "list"], false),
            ["lkinit", "--sock", "/s", "-v", "list"]
        );
        assert_eq!(
            norm(
                &["lkinit", "--sock=/s", "service", "stop", "service"],
                false
            ),
            ["lkinit", "--sock=/s", "stop", "service"]
        );
        // A value that happens to be `service` is a value.
        assert_eq!(
            norm(&["lkinit", "--sock", "service", "list"], false),
            ["lkinit", "--sock", "service", "list"]
        );
        assert_eq!(norm(&["lkinit", "list"], true), ["lkinit", "list"]);
        assert_eq!(norm(&["./lkinit"], false), ["./lkinit"]);
        assert_eq!(
            norm(&["/usr/bin/lkinit", "list"], false),
            ["/usr/bin/lkinit", "list"]
        );
    }

    /// LinuxKit's packages link `/usr/bin/service` into /etc/init.d and /etc/shutdown.d
    /// under names that contain the step.
    #[test]
    fn linuxkit_link_names() {
        assert_eq!(
            norm(&["/etc/init.d/005-volumes"], false),
            ["lkinit", "volumes"]
        );
        assert_eq!(
            norm(&["/etc/init.d/010-onboot"], false),
            ["lkinit", "onboot"]
        );
        assert_eq!(
            norm(&["/etc/shutdown.d/010-onshutdown"], false),
            ["lkinit", "onshutdown"]
        );
        assert_eq!(
            norm(&["/etc/init.d/020-containerd"], false),
            ["lkinit", "system-init"]
        );
        // Options still follow the name.
        assert_eq!(
            norm(&["010-onboot", "--timeout", "3"], false),
            ["lkinit", "onboot", "--timeout", "3"]
        );
        assert_eq!(
            norm(&["volumes", "--path", "/v"], false),
            ["lkinit", "volumes", "--path", "/v"]
        );
        // LinuxKit's order when a name holds two words.
        assert_eq!(link_command("volumes-onboot"), Some("volumes"));
        assert_eq!(link_command("onboot-containerd"), Some("onboot"));
        assert_eq!(link_command("runc"), None);
        assert_eq!(link_command("lkinit"), None);
        // Every command a link names parses, with the options PID 1 or a user adds.
        for name in [
            "005-volumes",
            "010-onboot",
            "010-onshutdown",
            "020-containerd",
        ] {
            let argv = normalize_args(vec![OsString::from(name)], false);
            let c = Cli::try_parse_from(argv).unwrap();
            assert!(
                matches!(
                    c.command,
                    Some(
                        Command::Volumes(_)
                            | Command::Onboot(_)
                            | Command::Onshutdown(_)
                            | Command::SystemInit(_)
                    )
                ),
                "{name}: {:?}",
                c.command
            );
        }
        // An unrelated name at PID 1 still boots.
        assert_eq!(norm(&["/sbin/myinit"], true), ["/sbin/myinit", "init"]);
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
