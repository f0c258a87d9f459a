#!/usr/bin/env bash
# lkinit benchmark: ratios against a baseline measured in the same run, on the same bundles.
#
#   scripts/bench.sh [ROUNDS]        (as root; default 7 rounds)
#
# onboot: `lkinit onboot` over N busybox `echo` bundles vs a bare shell loop of
# `RUNTIME run` over the same bundles (each container's output into a log file, as lkinit
# does). Rounds alternate the two so machine noise hits both alike; the median is reported.
# crun refuses this host's hybrid cgroup layout, so its rows run in a private mount
# namespace without the unified hierarchy (both sides alike).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-7}
n=${BUNDLES:-20}
work=$(mktemp -d /tmp/lkinit-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
    for r in "$work"/root-*; do
        [ -d "$r" ] || continue
        for c in "$r"/*; do [ -d "$c" ] && runc --root "$r" delete --force "$(basename "$c")" >/dev/null 2>&1; done
    done
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$work"
    for h in /sys/fs/cgroup/*/lkinit-bench /sys/fs/cgroup/lkinit-bench; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$here/Cargo.toml"
lkinit="$here/target/release/lkinit"
busybox=$(command -v busybox)

make_bundles() { # DIR COUNT
    local dir=$1 count=$2 i b
    mkdir -p "$dir"
    for i in $(seq -w 1 "$count"); do
        b="$dir/b$i"
        mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
        ln "$busybox" "$b/rootfs/bin/busybox" 2>/dev/null || cp "$busybox" "$b/rootfs/bin/busybox"
        ln -s busybox "$b/rootfs/bin/echo"
        python3 - "$b" "b$i" <<'PY'
import json, sys
b, name = sys.argv[1], sys.argv[2]
json.dump({
  "ociVersion": "1.0.2-dev",
  "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["echo", "hello from " + name],
              "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": True},
  "root": {"path": "rootfs", "readonly": True},
  "hostname": name,
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
  "linux": {"cgroupsPath": "/lkinit-bench/" + name,
            "namespaces": [{"type": t} for t in ["pid", "network", "ipc", "uts", "mount"]]}
}, open(b + "/config.json", "w"))
PY
    done
}

now() { date +%s%N; }

# Prints the median of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run_pair LABEL RUNTIME WRAP: times lkinit onboot and the bare loop, alternating.
run_pair() {
    local label=$1 rt=$2 wrap=$3 i t0 t1
    local dir="$work/bundles-$rt" root_l="$work/root-l-$rt" root_b="$work/root-b-$rt"
    [ -d "$dir" ] || make_bundles "$dir" "$n"
    : > "$work/l.$rt"; : > "$work/b.$rt"
    for i in $(seq 0 "$rounds"); do
        t0=$(now)
        $wrap "$lkinit" -q --runtime "$rt" --runtime-root "$root_l" --state-dir "$work/state" \
            onboot --path "$dir" --log-dir "$work/log-l" >/dev/null
        t1=$(now)
        [ "$i" -gt 0 ] && echo $(( (t1 - t0) / 1000 )) >> "$work/l.$rt"
        mkdir -p "$work/log-b"
        t0=$(now)
        $wrap sh -c 'for b in "$1"/*; do n=${b##*/}; '"$rt"' --root "$2" run --bundle "$b" "$n" >>"$3/$n.out.log" 2>>"$3/$n.log" || exit 1; done' \
            sh "$dir" "$root_b" "$work/log-b"
        t1=$(now)
        [ "$i" -gt 0 ] && echo $(( (t1 - t0) / 1000 )) >> "$work/b.$rt"
    done
    local l b
    l=$(median < "$work/l.$rt"); b=$(median < "$work/b.$rt")
    printf '| %-34s | %9.1f | %9.1f | %6.3f |\n' "$label" \
        "$(echo "$l / $n / 1000" | bc -l)" "$(echo "$b / $n / 1000" | bc -l)" "$(echo "$l / $b" | bc -l)"
}

crun_ns() { unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh "$@"; }
plain() { "$@"; }

echo "lkinit benchmark: $n bundles, median of $rounds rounds (after one warm-up), $(nproc) cores"
echo
printf '| %-34s | %9s | %9s | %6s |\n' "case" "lkinit ms" "base ms" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------" "-----------" "-----------" "--------"
run_pair "onboot vs runc run loop (per ctr)" runc plain
if command -v crun >/dev/null; then
    run_pair "onboot vs crun run loop (per ctr)" crun crun_ns
fi
echo
printf 'lkinit release binary: %s bytes\n' "$(stat -c %s "$lkinit")"
