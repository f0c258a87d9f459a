#!/bin/bash
# Measures what capped, rotated log files cost a service that writes fast: one busybox
# service writes SIZE MiB (default 1024) of 100-byte lines (`yes | head -c`) to its stdout,
# which the supervisor drains into its log file, as fast as that goes. Variants, run
# alternately for ROUNDS rounds (default 3), each on a fresh supervisor and log directory:
#   nocap   logs: {maxSize: 64g}     (no rotation happens: the write path alone)
#   default no logs setting          (4m, keep 2: a rotation every 4 MiB)
#   small   logs: {maxSize: 512k}    (a rotation every 512 KiB)
#   stamps  logs: {timestamps: true} (4m, keep 2, every line stamped)
#   base    BASE=path/to/lkinit, a build without capped logs, if given
# Each figure is the writer's own (the bytes over the time `yes | head` took to put them
# into its FIFO, read from /proc/uptime inside the container: 10 ms steps; at most 256 KiB
# may still be in the pipe when it ends) and the supervisor's CPU time for the whole run.
# Needs root, runc and busybox-static. Usage: scripts/bench-logs.sh [SIZE_MIB] [ROUNDS]
# LKINIT=path/to/lkinit uses that binary instead of building target/release/lkinit.
set -euo pipefail

SIZE=${1:-1024}
ROUNDS=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${LKINIT:-}" ]; then
    (cd "$here" && cargo build --release --quiet)
    LKINIT=$here/target/release/lkinit
fi
BASE=${BASE:-}
BUSYBOX=$(command -v busybox)

work=$(mktemp -d /tmp/lkinit-bench-logs.XXXXXX)
chmod 755 "$work"
cg=lkinit-bench-logs-$$
sup_pid=
# shellcheck source=lib/cleanup.sh
. "$here/scripts/lib/cleanup.sh"
cleanup() {
    set +e
    if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
        kill -TERM "$sup_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$sup_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$sup_pid" 2>/dev/null
    fi
    cleanup_work "$work" "$cg" "$work/runc"
}
trap cleanup EXIT

b=$work/services/flood
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
ln "$BUSYBOX" "$b/rootfs/bin/busybox" 2>/dev/null || cp "$BUSYBOX" "$b/rootfs/bin/busybox"
for a in sh yes head cat; do ln -s busybox "$b/rootfs/bin/$a"; done
(cd "$work" && runc spec >/dev/null && mv config.json spec.json)
line=$(printf '%099d' 0 | tr 0 x)
python3 - "$work" "$cg" "$SIZE" "$line" <<'EOF'
import json, sys
work, cg, size, line = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
spec = json.load(open(f"{work}/spec.json"))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c",
    f"read a _ </proc/uptime; yes {line} | head -c {size << 20}; "
    "read b _ </proc/uptime; echo \"$a $b\" >&2"]
spec["linux"]["cgroupsPath"] = f"/{cg}/flood"
json.dump(spec, open(f"{work}/services/flood/config.json", "w"))
EOF

settings() { # VARIANT
    case $1 in
    nocap) echo '{"restart": "never", "logs": {"maxSize": "64g"}}' ;;
    small) echo '{"restart": "never", "logs": {"maxSize": "512k"}}' ;;
    stamps) echo '{"restart": "never", "logs": {"timestamps": true}}' ;;
    *) echo '{"restart": "never"}' ;;
    esac >"$b/service.json"
}

cpu_s() { # utime + stime of $sup_pid, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$sup_pid/stat"
}

run() { # VARIANT: prints MB/s, seconds, supervisor CPU seconds, files kept
    local bin=$LKINIT t cpu
    [ "$1" = base ] && bin=$BASE
    settings "$1"
    rm -rf "$work/state" "$work/runc" "$work/log"
    "$bin" --state-dir "$work/state" --runtime-root "$work/runc" --sock "$work/run/sock" \
        system-init --path "$work/services" --log-dir "$work/log" 2>"$work/supervisor.log" &
    sup_pid=$!
    # `status` exits 3 for a service that is not running: read its output, not its code.
    until { "$bin" --sock "$work/run/sock" status flood 2>/dev/null || true; } | grep -q 'state: *exited'; do
        kill -0 "$sup_pid" || { cat "$work/supervisor.log"; exit 1; }
        sleep 0.1
    done
    cpu=$(cpu_s)
    kill -TERM "$sup_pid"
    wait "$sup_pid" || true
    sup_pid=
    # The last two words: with timestamps the line begins with one.
    read -r a z <<<"$(awk '{print $(NF - 1), $NF}' "$work/log/flood.log")"
    t=$(echo "$z - $a" | bc -l)
    printf '%8.0f MB/s  %6.2f s  supervisor CPU %5.2f s  files %s (%s MiB kept)\n' \
        "$(echo "$SIZE * 1048576 / 1000000 / $t" | bc -l)" "$t" "$cpu" \
        "$(ls "$work/log" | grep -c '^flood\.out\.log')" "$(du -sm "$work/log" | cut -f1)"
}

variants="nocap default small stamps"
[ -n "$BASE" ] && variants="base $variants"
echo "lkinit: $LKINIT${BASE:+; base: $BASE}"
echo "runtime: $(runc --version | head -1); $(nproc) CPUs; kernel $(uname -r)"
echo "$SIZE MiB of 100-byte lines per run; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for v in $variants; do
        printf 'round %s %-8s' "$r" "$v"
        run "$v"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
