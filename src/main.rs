use clap::Parser;
use lkinit::bundle::printable_name;
use lkinit::cli::{Cli, Command, Global, normalize_args};
use lkinit::container::Ctx;
use lkinit::nsenter;
use lkinit::onboot::{self, Runner};
use lkinit::pid1;
use lkinit::supervisor;
use std::io::Write;
use std::time::Duration;

fn init_logging(g: &Global, uptime: bool) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Info);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    if g.verbose {
        b.filter_level(log::LevelFilter::Debug);
    }
    if g.quiet {
        b.filter_level(log::LevelFilter::Error);
    }
    // On the console, lines carry the time since boot as the kernel prints it, so a boot
    // reads on one clock.
    // Every message is one line: what it quotes (a runtime's error, a path from a bundle)
    // is escaped, so it can never start a line that looks like lkinit's own.
    b.format(move |f, r| {
        if uptime {
            write!(f, "{}", pid1::uptime_prefix())?;
        }
        let msg = printable_name(&r.args().to_string());
        match r.level() {
            log::Level::Info => writeln!(f, "lkinit: {msg}"),
            l => writeln!(f, "lkinit: {}: {msg}", l.as_str().to_lowercase()),
        }
    });
    b.init();
}

/// The runtime the services run under is the supervisor's: `exec`, `mount` and `umount`
/// ask it on `--sock`, unless `--runtime-root` says where to look.
fn with_supervisor_runtime(ctx: &Ctx, g: &lkinit::cli::Global) -> Ctx {
    if g.runtime_root.is_some() {
        return ctx.clone();
    }
    match supervisor::client::supervisor_runtime(&g.sock) {
        Some(rt) => {
            log::debug!(
                "the supervisor on {} runs {} (root {:?})",
                g.sock.display(),
                rt.bin,
                rt.root
            );
            let mut c = Ctx::new(&rt.bin, rt.root, g.state_dir.clone());
            c.runtime.debug = ctx.runtime.debug;
            c.runtime.log_to_console = ctx.runtime.log_to_console;
            c
        }
        None => ctx.clone(),
    }
}

fn main() {
    // Before any thread exists: see process/inherit.rs.
    lkinit::process::block_sigchld();
    let inherited = lkinit::process::close_inherited_on_exec();
    let is_pid1 = std::process::id() == 1;
    let argv = normalize_args(std::env::args_os().collect(), is_pid1);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        // PID 1 exiting panics the kernel: whatever it was given, it boots.
        Err(e) if is_pid1 => {
            let _ = e.print();
            Cli::parse_from(["lkinit", "init"])
        }
        Err(e) => e.exit(),
    };
    let uptime = matches!(cli.command, Some(Command::Init(_)))
        || std::env::var_os(pid1::UPTIME_ENV).is_some();
    init_logging(&cli.global, uptime);
    if let Err(e) = inherited {
        log::warn!("cannot mark inherited descriptors close-on-exec: {e}");
    }
    if let Some(c) = &cli.command
        && c.needs_root()
        && !nix::unistd::geteuid().is_root()
    {
        // Said once, up front, instead of the first EPERM deep inside.
        log::error!(
            "`{}` needs root: it mounts file systems, makes namespaces and runs the OCI \
             runtime; run it as root (e.g. `sudo lkinit {}`)",
            c.word(),
            c.word()
        );
        std::process::exit(1);
    }
    let g = &cli.global;
    let mut ctx = Ctx::new(&g.runtime, g.runtime_root.clone(), g.state_dir.clone());
    ctx.runtime.debug = g.runtime_debug;
    ctx.runtime.log_to_console = g.runtime_log_console;
    let ctx = ctx;
    let code = match &cli.command {
        Some(Command::Onboot(a)) | Some(Command::Onshutdown(a)) => {
            let runner = match cli.command {
                Some(Command::Onboot(_)) => Runner::Onboot,
                _ => Runner::Onshutdown,
            };
            let opts = onboot::Options::new(
                runner,
                a.path.clone(),
                a.log_dir.clone(),
                a.timeout.filter(|s| *s > 0).map(Duration::from_secs),
                g.quiet,
                g.memlogd(),
                a.log_policy(),
            );
            onboot::run(&ctx, &opts)
        }
        Some(Command::Volumes(a)) => lkinit::volumes::run(&a.path),
        Some(Command::Exec { ns, name, cmd }) => {
            nsenter::exec(&with_supervisor_runtime(&ctx, g), name, ns.as_deref(), cmd)
        }
        Some(Command::Mount { name, src, dst }) => {
            nsenter::mount(&with_supervisor_runtime(&ctx, g), name, src, dst)
        }
        Some(Command::Umount { name, dst }) => {
            nsenter::umount(&with_supervisor_runtime(&ctx, g), name, dst)
        }
        Some(Command::NsenterHelper { request }) => nsenter::helper(request),
        Some(Command::UsernsHold) => lkinit::userns::hold(),
        Some(Command::SystemInit(a)) => supervisor::run(&ctx, a, &g.sock, g.memlogd()),
        Some(
            c @ (Command::List { .. }
            | Command::Status { .. }
            | Command::Start { .. }
            | Command::Stop { .. }
            | Command::Restart { .. }
            | Command::Logs { .. }),
        ) => supervisor::client::run(&g.sock, c),
        Some(Command::Init(_)) => pid1::run(g),
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            2
        }
    };
    std::process::exit(code);
}
