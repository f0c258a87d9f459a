#!/bin/bash
# Measures the service supervisor with N busybox services (default 50) through runc:
#   - time until all N are running, started concurrently (independent services) and one
#     at a time (each service `after` the previous one),
#   - the supervisor's RSS with N services up, after R crash-restarts plus a burst of CLI
#     requests, and after an idle pause (it should stay flat),
#   - the time a SIGTERM shutdown of all N takes.
# Needs root, runc and busybox-static. Usage: scripts/bench-services.sh [N] [RESTART_ROUNDS]
# LKINIT=path/to/lkinit uses that binary instead of building target/release/lkinit.
set -euo pipefail

N=${1:-50}
ROUNDS=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${LKINIT:-}" ]; then
    (cd "$here" && cargo build --release --quiet)
    LKINIT=$here/target/release/lkinit
fi
BUSYBOX=$(command -v busybox)

work=$(mktemp -d /tmp/lkinit-bench-services.XXXXXX)
chmod 755 "$work"
cg=lkinit-bench-services-$$
sup_pid=
cleanup() {
    # Best effort, to the end: a failed step must not stop the rest.
    set +e
    if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
        kill -TERM "$sup_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$sup_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$sup_pid" 2>/dev/null || true
    fi
    for c in $(ls "$work/runc" 2>/dev/null); do
        runc --root "$work/runc" delete --force "$c" >/dev/null 2>&1 || true
    done
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        [ -d "$h$cg" ] && find "$h$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# One busybox bundle per service; the init waits for SIGTERM without using any CPU.
mkdir -p "$work/services"
(cd "$work" && runc spec >/dev/null && mv config.json spec.json)
for i in $(seq -w 1 "$N"); do
    b=$work/services/svc$i
    mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
    ln "$BUSYBOX" "$b/rootfs/bin/busybox" 2>/dev/null || cp "$BUSYBOX" "$b/rootfs/bin/busybox"
    for a in sh sleep; do ln -s busybox "$b/rootfs/bin/$a"; done
done
python3 - "$work" "$N" "$cg" <<'EOF'
import json, sys
work, n, cg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spec = json.load(open(f"{work}/spec.json"))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]
for i in range(1, n + 1):
    name = f"svc{i:0{len(str(n))}d}"
    spec["linux"]["cgroupsPath"] = f"/{cg}/{name}"
    json.dump(spec, open(f"{work}/services/{name}/config.json", "w"))
EOF

cli() { "$LKINIT" --sock "$work/run/sock" "$@"; }
now_ms() { date +%s%3N; }
running() { cli list 2>/dev/null | awk '$2 == "running"' | wc -l; }
rss() {
    awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s kB  ", $1, $2}' "/proc/$sup_pid/status"
    awk '/^Pss:/ {printf "Pss: %s kB", $2}' "/proc/$sup_pid/smaps_rollup"
}

start_supervisor() {
    rm -rf "$work/state" "$work/runc" "$work/log"
    "$LKINIT" --state-dir "$work/state" --runtime-root "$work/runc" --sock "$work/run/sock" \
        system-init --path "$work/services" --log-dir "$work/log" 2>"$work/supervisor.log" &
    sup_pid=$!
}

wait_all_up() {
    local t0=$1
    while [ "$(running)" -lt "$N" ]; do
        kill -0 "$sup_pid" || { cat "$work/supervisor.log"; exit 1; }
        sleep 0.01
    done
    echo $(($(now_ms) - t0))
}

# Sets $down to the milliseconds a SIGTERM shutdown took (not in a subshell: `wait`
# only knows the shell's own children).
stop_supervisor() {
    local t0 code
    t0=$(now_ms)
    kill -TERM "$sup_pid"
    code=0
    wait "$sup_pid" || code=$?
    down=$(($(now_ms) - t0))
    sup_pid=
    [ "$code" = 0 ] || { echo "the supervisor exited $code"; cat "$work/supervisor.log"; exit 1; }
}

echo "lkinit: $LKINIT"
echo "runtime: $(runc --version | head -1); $(nproc) CPUs; kernel $(uname -r)"
echo "services: $N busybox bundles; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# 1. Concurrent start: independent services.
t0=$(now_ms)
start_supervisor
up=$(wait_all_up "$t0")
echo "concurrent start:   all $N running after ${up} ms (wall clock, polled with 'list')"
echo "                    supervisor's own figure: $(grep -o 'running after [0-9]* ms' "$work/supervisor.log")"
sleep 1
echo "RSS, $N up:         $(rss)"

# 2. Restarts: kill the init of every service, ROUNDS times, each time waiting until all
# are back; then a burst of CLI requests.
for r in $(seq "$ROUNDS"); do
    for p in $(cli list | awk 'NR > 1 && $2 == "running" {print $3}'); do kill -KILL "$p"; done
    sleep 0.5
    while [ "$(running)" -lt "$N" ]; do sleep 0.05; done
done
restarts=$(cli list | awk 'NR > 1 {s += $4} END {print s}')
for _ in $(seq 200); do cli list >/dev/null; cli status svc$(printf "%0${#N}d" 1) >/dev/null || true; done
cli_restarts=$((N < 10 ? N : 10))
for i in $(seq 1 "$cli_restarts"); do
    s=svc$(printf "%0${#N}d" "$i")
    cli restart "$s" >/dev/null
done
sleep 1
echo "RSS, after $restarts crash-restarts, $cli_restarts CLI restarts, 400 requests: $(rss)"
sleep "${IDLE:-20}"
echo "RSS, after ${IDLE:-20} s idle:  $(rss)"
stop_supervisor
echo "SIGTERM shutdown of $N: ${down} ms"
[ -z "$(ls "$work/runc" 2>/dev/null)" ] || { echo "containers left: $(ls "$work/runc")"; exit 1; }

# 3. One at a time: each service starts after the previous one.
prev=
for b in "$work"/services/*; do
    if [ -n "$prev" ]; then echo "{\"after\": [\"$prev\"]}" >"$b/service.json"; fi
    prev=$(basename "$b")
done
t0=$(now_ms)
start_supervisor
up=$(wait_all_up "$t0")
echo "one at a time:      all $N running after ${up} ms (each 'after' the previous)"
echo "                    supervisor's own figure: $(grep -o 'running after [0-9]* ms' "$work/supervisor.log")"
stop_supervisor
