//! What the kernel command line asks of PID 1: lkinit's own `lkinit.*` words and the
//! `linuxkit.*` switches LinuxKit's packages read (docs/cmdline.md in LinuxKit).

use std::time::Duration;

/// The words PID 1 acts on. For each key the last word wins, as for the kernel's own
/// parameters; a value PID 1 cannot read says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// `lkinit.runtime=BIN`: the OCI runtime of onboot, the supervisor and onshutdown.
    pub runtime: Option<String>,
    /// `linuxkit.unified_cgroup_hierarchy=0` (or `systemd.unified_cgroup_hierarchy=0`):
    /// cgroup v1 hierarchies instead of cgroup2.
    pub cgroup_v1: bool,
    /// `linuxkit.runc_debug=1`: the runtime runs onboot and onshutdown with `--debug`.
    pub runtime_debug: bool,
    /// `linuxkit.runc_console=1`: the runtime's own messages of onboot and onshutdown go to
    /// the console.
    pub runtime_console: bool,
    /// `lkinit.hook_timeout=SECS`: the bound of each `/etc/init.d` and `/etc/shutdown.d`
    /// entry, instead of the defaults.
    pub hook_timeout: Option<Duration>,
    /// `lkinit.onboot_timeout=SECS`: the limit of each onboot bundle (0: none), instead of
    /// [`DEFAULT_ONBOOT_TIMEOUT`].
    pub onboot_timeout: Option<u64>,
}

/// The limit of each onboot bundle under PID 1. A bundle that hangs (a DHCP client that
/// never gets a lease, a script waiting on a device that is not there) would otherwise stop
/// the boot for good, with no service and no way in. Five minutes leaves room for slow
/// work an onboot bundle does (formatting a disk, waiting for a network, all of it under
/// emulation), and a bundle that needs longer says so in its `lkinit.timeout` annotation.
pub const DEFAULT_ONBOOT_TIMEOUT: u64 = 300;

/// The most an onshutdown bundle gets: half of what onshutdown gets in all, so one that
/// hangs leaves time for the ones after it.
pub const ONSHUTDOWN_BUNDLE_MAX: u64 = 30;

/// The last value of `key=VALUE` words that `read` can read.
fn last<T>(cmdline: &str, key: &str, read: impl Fn(&str) -> Option<T>) -> Option<T> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == key)
        .filter_map(|(_, v)| read(v))
        .next_back()
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl KernelOptions {
    pub fn parse(cmdline: &str) -> KernelOptions {
        let flag = |key: &str| last(cmdline, key, boolean).unwrap_or(false);
        let cgroup_v1 = [
            "linuxkit.unified_cgroup_hierarchy",
            "systemd.unified_cgroup_hierarchy",
        ]
        .iter()
        .find_map(|k| last(cmdline, k, boolean))
        .is_some_and(|unified| !unified);
        KernelOptions {
            runtime: last(cmdline, "lkinit.runtime", |v| {
                (!v.is_empty()).then(|| v.to_string())
            }),
            cgroup_v1,
            runtime_debug: flag("linuxkit.runc_debug"),
            runtime_console: flag("linuxkit.runc_console"),
            hook_timeout: last(cmdline, "lkinit.hook_timeout", |v| {
                v.parse::<u64>().ok().filter(|s| *s > 0)
            })
            .map(Duration::from_secs),
            onboot_timeout: last(cmdline, "lkinit.onboot_timeout", |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|s| *s <= crate::bundle::MAX_TIMEOUT_SECS)
            }),
        }
    }

    /// The `--timeout` PID 1 gives onboot (`onboot`) or onshutdown; None: no limit.
    pub fn bundle_timeout(&self, onboot: bool) -> Option<u64> {
        let t = self.onboot_timeout.unwrap_or(DEFAULT_ONBOOT_TIMEOUT);
        match t {
            0 => None,
            t if onboot => Some(t),
            t => Some(t.min(ONSHUTDOWN_BUNDLE_MAX)),
        }
    }

    /// What onboot and onshutdown are given besides PID 1's own options.
    pub fn runner_flags(&self, quiet: bool) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.runtime_debug {
            v.push("--runtime-debug");
            // LinuxKit logs every stage of each container then; lkinit's debug lines do.
            if !quiet {
                v.push("-v");
            }
        }
        if self.runtime_console {
            v.push("--runtime-log-console");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_from_the_kernel_command_line() {
        let rt = |c: &str| KernelOptions::parse(c).runtime;
        assert_eq!(rt("console=ttyS0 quiet"), None);
        assert_eq!(
            rt("console=ttyS0 lkinit.runtime=crun quiet").as_deref(),
            Some("crun")
        );
        // The last one wins, as the kernel's own parameters do; an empty value says nothing.
        assert_eq!(
            rt("lkinit.runtime=crun lkinit.runtime=/usr/bin/runc").as_deref(),
            Some("/usr/bin/runc")
        );
        assert_eq!(rt("lkinit.runtime="), None);
        assert_eq!(
            rt("lkinit.runtime=crun lkinit.runtime=").as_deref(),
            Some("crun")
        );
        assert_eq!(rt("xlkinit.runtime=crun"), None);
    }

    #[test]
    fn cgroup_version_from_the_command_line() {
        let v1 = |c: &str| KernelOptions::parse(c).cgroup_v1;
        assert!(!v1("console=ttyS0 quiet"));
        assert!(v1("console=ttyS0 linuxkit.unified_cgroup_hierarchy=0"));
        assert!(v1("systemd.unified_cgroup_hierarchy=false"));
        assert!(!v1("linuxkit.unified_cgroup_hierarchy=1"));
        // The last word wins, as the kernel's own parameters do.
        assert!(!v1(
            "linuxkit.unified_cgroup_hierarchy=0 linuxkit.unified_cgroup_hierarchy=1"
        ));
        assert!(!v1("xlinuxkit.unified_cgroup_hierarchy=0"));
        // LinuxKit's own switch is read first.
        assert!(!v1(
            "linuxkit.unified_cgroup_hierarchy=1 systemd.unified_cgroup_hierarchy=0"
        ));
    }

    #[test]
    fn runc_switches() {
        let o = KernelOptions::parse("console=ttyS0 linuxkit.runc_debug=1 linuxkit.runc_console=1");
        assert!(o.runtime_debug && o.runtime_console);
        assert_eq!(
            o.runner_flags(false),
            ["--runtime-debug", "-v", "--runtime-log-console"]
        );
        // -v and -q cannot go together.
        assert_eq!(
            o.runner_flags(true),
            ["--runtime-debug", "--runtime-log-console"]
        );
        let o = KernelOptions::parse("linuxkit.runc_debug=0 linuxkit.runc_console=x");
        assert!(!o.runtime_debug && !o.runtime_console);
        assert!(o.runner_flags(false).is_empty());
        let o = KernelOptions::parse("linuxkit.runc_debug=1 linuxkit.runc_debug=0");
        assert!(!o.runtime_debug);
        // The flags are options every lkinit command takes.
        let argv = [
            "lkinit",
            "onboot",
            "--runtime-debug",
            "-v",
            "--runtime-log-console",
        ];
        let c = <crate::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        assert!(c.global.runtime_debug && c.global.runtime_log_console && c.global.verbose);
    }

    #[test]
    fn onboot_timeout() {
        let t = |c: &str, onboot| KernelOptions::parse(c).bundle_timeout(onboot);
        assert_eq!(t("quiet", true), Some(DEFAULT_ONBOOT_TIMEOUT));
        assert_eq!(t("quiet", false), Some(ONSHUTDOWN_BUNDLE_MAX));
        assert_eq!(t("lkinit.onboot_timeout=3", true), Some(3));
        assert_eq!(t("lkinit.onboot_timeout=3", false), Some(3));
        assert_eq!(t("lkinit.onboot_timeout=600", false), Some(30));
        assert_eq!(t("lkinit.onboot_timeout=0", true), None);
        assert_eq!(t("lkinit.onboot_timeout=0", false), None);
        // Unreadable: the default.
        assert_eq!(t("lkinit.onboot_timeout=soon", true), Some(300));
        assert_eq!(t("lkinit.onboot_timeout=-1", true), Some(300));
        assert_eq!(t("lkinit.onboot_timeout=99999999999", true), Some(300));
        assert_eq!(
            t("lkinit.onboot_timeout=0 lkinit.onboot_timeout=7", true),
            Some(7)
        );
    }

    #[test]
    fn hook_timeout() {
        let t = |c: &str| KernelOptions::parse(c).hook_timeout;
        assert_eq!(t("quiet"), None);
        assert_eq!(t("lkinit.hook_timeout=3"), Some(Duration::from_secs(3)));
        assert_eq!(t("lkinit.hook_timeout=0"), None);
        assert_eq!(t("lkinit.hook_timeout=soon"), None);
        assert_eq!(
            t("lkinit.hook_timeout=3 lkinit.hook_timeout=7"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            t("lkinit.hook_timeout=3 lkinit.hook_timeout=soon"),
            Some(Duration::from_secs(3))
        );
    }
}
