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
[ -n "${BENCH_TRACE:-}" ] && set -x
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
    net_reset
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

# run_case LABEL LKINIT_CMD BASE_CMD [RESET_CMD]: times both commands, alternating, each
# round after RESET_CMD (untimed); prints the per-container medians and their ratio.
run_case() {
    local label=$1 lk=$2 base=$3 reset=${4:-true} i t0 t1
    : > "$work/l.t"; : > "$work/b.t"
    for i in $(seq 0 "$rounds"); do
        eval "$reset"
        t0=$(now); eval "$lk" >/dev/null; t1=$(now)
        [ "$i" -gt 0 ] && echo $(( (t1 - t0) / 1000 )) >> "$work/l.t"
        eval "$reset"
        t0=$(now); eval "$base" >/dev/null; t1=$(now)
        [ "$i" -gt 0 ] && echo $(( (t1 - t0) / 1000 )) >> "$work/b.t"
    done
    local l b
    l=$(median < "$work/l.t"); b=$(median < "$work/b.t")
    printf '| %-40s | %9.1f | %9.1f | %6.3f |\n' "$label" \
        "$(echo "$l / $n / 1000" | bc -l)" "$(echo "$b / $n / 1000" | bc -l)" "$(echo "$l / $b" | bc -l)"
}

# Plain bundles: lkinit onboot vs a shell loop of `RUNTIME run`.
onboot_case() { # RUNTIME WRAP
    local rt=$1 wrap=$2 dir="$work/bundles-$1"
    [ -d "$dir" ] || make_bundles "$dir" "$n"
    mkdir -p "$work/log-b"
    run_case "onboot vs $rt run loop" \
        "$wrap $lkinit -q --runtime $rt --runtime-root $work/root-l-$rt --state-dir $work/state onboot --path $dir --log-dir $work/log-l" \
        "$wrap sh -c 'for b in \"\$1\"/*; do n=\${b##*/}; $rt --root \"\$2\" run --bundle \"\$b\" \"\$n\" >>\"\$3/\$n.out.log\" 2>>\"\$3/\$n.log\" || exit 1; done' sh $dir $work/root-b-$rt $work/log-b"
}

# Bundles with a veth (peer in the root namespace) and a net namespace bind: lkinit onboot
# vs the same steps by hand (scripts/byhand_net_loop.py: create, ip link, mount --bind,
# start, wait, delete).
net_reset() {
    local d
    for d in "$work"/ns-l "$work"/ns-b; do
        [ -d "$d" ] || continue
        for f in "$d"/*; do [ -e "$f" ] && { umount "$f" 2>/dev/null || true; }; rm -f "$f"; done
    done
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | { grep -E '^[lh]b[0-9]+$' || true; } | while read -r l; do ip link del "$l" 2>/dev/null || true; done
    return 0
}
net_case() { # RUNTIME WRAP
    local rt=$1 wrap=$2 dir="$work/netbundles-$1" b
    if [ ! -d "$dir" ]; then
        make_bundles "$dir" "$n"
        for b in "$dir"/*; do
            printf '{"interfaces": [{"name": "eth1", "peer": "l%s"}], "bindNS": {"net": "%s/ns-l/%s"}}\n' \
                "${b##*/}" "$work" "${b##*/}" > "$b/runtime.json"
        done
        mkdir -p "$work/netbundles-plain-$rt"
        for b in "$dir"/*; do cp -a "$b" "$work/netbundles-plain-$rt/"; rm "$work/netbundles-plain-$rt/${b##*/}/runtime.json"; done
    fi
    run_case "veth+bindNS onboot vs by hand ($rt)" \
        "$wrap $lkinit -q --runtime $rt --runtime-root $work/root-l-$rt --state-dir $work/state onboot --path $dir --log-dir $work/log-l" \
        "$wrap python3 $here/scripts/byhand_net_loop.py $rt $work/root-b-$rt $work/netbundles-plain-$rt $work/ns-b $work/log-b" \
        net_reset
}

crun_ns() { unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh "$@"; }
plain() { "$@"; }

echo "lkinit benchmark: $n bundles, median of $rounds rounds (after one warm-up), $(nproc) cores"
echo
printf '| %-40s | %9s | %9s | %6s |\n' "case (ms per container)" "lkinit" "baseline" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------" "-----------" "-----------" "--------"
onboot_case runc plain
command -v crun >/dev/null && onboot_case crun crun_ns
net_case runc plain
command -v crun >/dev/null && net_case crun crun_ns
echo
printf 'lkinit release binary: %s bytes\n' "$(stat -c %s "$lkinit")"
