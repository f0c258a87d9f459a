#!/usr/bin/env bash
# lkinit stress run, bigger than the one in the test suite (tests/stress.rs, 200 bundles).
#
#   scripts/stress.sh [N] [CYCLES]    (as root; defaults N=1000, CYCLES=1000)
#
# 1. tests/stress.rs with N bundles of every kind (read-only, writable, runtime mounts,
#    the create/start path with a link, bad configs, runtime refusals): it fails on any
#    leaked mount, link, runtime state, cgroup, state file, process, descriptor, thread or
#    zombie, or on memory growth over the second half, and prints lkinit's VmRSS.
# 2. Peak RSS of `lkinit onboot` (GNU time's "Maximum resident set size") over 200 and over
#    N `echo` bundles: flat memory means the same peak for both. Then a census of what is
#    left: mounts under the work dir, containers in the runtime root, cgroups.
# 3. tests/supervisor_faults.rs' start/stop cycles with CYCLES cycles of one service (a
#    writable root, a runtime mount and mkdir, a link, a namespace bind): it fails on any
#    leak or on the supervisor's memory growing over the second half, and prints its VmRSS.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-1000}
cycles=${2:-1000}
# What the two test files and the peak-RSS part need, named at once before anything runs.
. "$here/scripts/lib/require.sh"
require_root "the tests it runs mount, make links and run containers"
require runc busybox ip unshare nsenter bc /usr/bin/time
require_cargo
require_check
work=$(mktemp -d /tmp/lkinit-stress.XXXXXX)
chmod 755 "$work"
# shellcheck source=lib/cleanup.sh
. "$here/scripts/lib/cleanup.sh"
cleanup() { cleanup_work "$work" lkinit-stress "$work/root"; }
trap cleanup EXIT

echo "== tests/stress.rs with $n bundles"
LKINIT_STRESS_BUNDLES=$n cargo test --quiet --manifest-path "$here/Cargo.toml" --test stress \
    -- --nocapture 2>&1 | grep -E '^stress:|^test result|panicked|leaked|grew'

cargo build --quiet --manifest-path "$here/Cargo.toml"
lkinit=${LKINIT:-$here/target/debug/lkinit}
busybox=$(command -v busybox)

make_bundles() { # DIR COUNT
    local dir=$1 count=$2 i b
    mkdir -p "$dir"
    for i in $(seq -w 1 "$count"); do
        b="$dir/b$i"
        mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
        ln "$busybox" "$b/rootfs/bin/busybox" 2>/dev/null || cp "$busybox" "$b/rootfs/bin/busybox"
        ln -s busybox "$b/rootfs/bin/echo"
        cat >"$b/config.json" <<EOF
{"ociVersion": "1.0.2-dev",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["echo", "b$i"],
             "env": ["PATH=/bin"], "cwd": "/"},
 "root": {"path": "rootfs", "readonly": true},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
 "linux": {"cgroupsPath": "/lkinit-stress/b$i",
           "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                          {"type": "uts"}, {"type": "mount"}]}}
EOF
    done
}

peak() { # COUNT
    local dir="$work/b$1"
    make_bundles "$dir" "$1"
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v "$lkinit" -q --runtime-root "$work/root" --state-dir "$work/state" \
        onboot --path "$dir" --log-dir "$work/log" >/dev/null 2>"$work/time.$1"
    t1=$(date +%s.%N)
    printf '%5d bundles: peak RSS %6d kB, %.1f s\n' "$1" \
        "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.$1")" \
        "$(echo "$t1 - $t0" | bc)"
}

echo "== peak RSS of lkinit onboot ($lkinit)"
peak 200
peak "$n"

echo "== left behind"
echo "mounts under $work: $(grep -c " $work" /proc/self/mountinfo || true)"
echo "containers in the runtime root: $(find "$work/root" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)"
echo "cgroups below lkinit-stress: $(find /sys/fs/cgroup/*/lkinit-stress /sys/fs/cgroup/lkinit-stress -mindepth 1 -type d 2>/dev/null | wc -l)"
echo "state files: $(find "$work/state" -type f 2>/dev/null | wc -l)"

echo "== tests/supervisor_faults.rs: $cycles start/stop cycles"
LKINIT_CYCLES=$cycles cargo test --quiet --manifest-path "$here/Cargo.toml" \
    --test supervisor_faults start_stop_cycles -- --nocapture 2>&1 \
    | grep -E '^cycles:|^test result|panicked|leaked|grew'
