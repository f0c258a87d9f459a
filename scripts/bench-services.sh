#!/bin/bash
# Measures the service supervisor with N busybox services (default 50) through runc:
#   - the time until all N are running, started concurrently (independent services) and one
#     at a time (each service `after` the previous one), UP_ROUNDS alternating rounds each
#     (default 3), as the supervisor itself reports it ("N of N service(s) running after
#     X ms", from its start to the last service up; no polling disturbs it);
#   - the supervisor's RSS (anonymous and file-backed) with N services up, after R
#     crash-restarts of every service plus CLI restarts and a burst of requests, and after an
#     idle pause (it should stay flat);
#   - the time a SIGTERM shutdown of all N takes.
# Needs root, runc and busybox-static. Usage: scripts/bench-services.sh [N] [RESTART_ROUNDS]
# With --checks (scripts/bench-services.sh --checks [N]) it measures instead what health
# checks cost: the supervisor's RSS and CPU time with N services and no checks, then with
# N services each with an exec health check (`true` in the service's namespaces) every
# second, each after CHECK_SECS (default 60) of running.
# LKINIT=path/to/lkinit uses that binary instead of building target/release/lkinit.
# SUMMARY=FILE also writes the figures as KEY=VALUE lines (scripts/bench.sh reads them).
# IDLE=SECS (default 20) is the idle pause.
set -euo pipefail

MODE=all
if [ "${1:-}" = "--checks" ]; then
    MODE=checks
    shift
fi
N=${1:-50}
ROUNDS=${2:-5}
UP_ROUNDS=${UP_ROUNDS:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib/require.sh"
require_root "it runs containers and a supervisor"
require runc busybox python3 bc
[ -n "${LKINIT:-}" ] || require_cargo
require_check
if [ -z "${LKINIT:-}" ]; then
    say "building lkinit (cargo build --release; a few minutes the first time)..."
    (cd "$here" && cargo build --release --quiet)
    LKINIT=$here/target/release/lkinit
fi
BUSYBOX=$(command -v busybox)
summary=${SUMMARY:-/dev/null}
: >"$summary"

work=$(mktemp -d /tmp/lkinit-bench-services.XXXXXX)
chmod 755 "$work"
cg=lkinit-bench-services-$$
sup_pid=
# shellcheck source=lib/cleanup.sh
. "$here/scripts/lib/cleanup.sh"
cleanup() {
    # Best effort, to the end: a failed step must not stop the rest.
    set +e
    if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
        kill -TERM "$sup_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$sup_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$sup_pid" 2>/dev/null || true
    fi
    cleanup_work "$work" "$cg" "$work/runc"
}
trap cleanup EXIT

# One busybox bundle per service; the init waits for SIGTERM without using any CPU.
mkdir -p "$work/services"
(cd "$work" && runc spec >/dev/null && mv config.json spec.json)
for i in $(seq -w 1 "$N"); do
    b=$work/services/svc$i
    mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
    ln "$BUSYBOX" "$b/rootfs/bin/busybox" 2>/dev/null || cp "$BUSYBOX" "$b/rootfs/bin/busybox"
    for a in sh sleep true; do ln -s busybox "$b/rootfs/bin/$a"; done
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
# KEY=VALUE lines: rss, anon and file in KiB, pss in KiB.
rss_kib() {
    awk '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {printf "%d %d %d", r, a, f}' "/proc/$sup_pid/status"
    awk '/^Pss:/ {printf " %d", $2}' "/proc/$sup_pid/smaps_rollup"
}
show_rss() { # LABEL: prints and records RSS figures under LABEL
    local r a f p
    read -r r a f p <<<"$(rss_kib)"
    printf '%-44s RSS %5.2f MiB (anonymous %4.2f, file-backed %4.2f), PSS %4.2f MiB, %s threads\n' \
        "$1:" "$(echo "$r/1024" | bc -l)" "$(echo "$a/1024" | bc -l)" "$(echo "$f/1024" | bc -l)" \
        "$(echo "$p/1024" | bc -l)" "$(awk '/^Threads:/ {print $2}' "/proc/$sup_pid/status")"
    printf 'rss_%s=%s\nanon_%s=%s\nfile_%s=%s\n' "$1" "$r" "$1" "$a" "$1" "$f" >>"$summary"
}

start_supervisor() {
    rm -rf "$work/state" "$work/runc" "$work/log"
    "$LKINIT" --state-dir "$work/state" --runtime-root "$work/runc" --sock "$work/run/sock" \
        system-init --path "$work/services" --log-dir "$work/log" 2>"$work/supervisor.log" &
    sup_pid=$!
}

# Prints the supervisor's own figure once every service has started.
wait_all_up() {
    local line
    while :; do
        line=$(grep -o "[0-9]* of [0-9]* service(s) running after [0-9]* ms" "$work/supervisor.log" || true)
        [ -n "$line" ] && break
        kill -0 "$sup_pid" || { cat "$work/supervisor.log"; exit 1; }
        sleep 0.05
    done
    set -- $line
    [ "$1" = "$N" ] || { echo "only $1 of $N services came up"; cat "$work/supervisor.log"; exit 1; }
    echo "$7"
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
    [ -z "$(ls "$work/runc" 2>/dev/null)" ] || { echo "containers left: $(ls "$work/runc")"; exit 1; }
}

set_order() { # concurrent|sequential
    local prev= b
    for b in "$work"/services/*; do
        rm -f "$b/service.json"
        if [ "$1" = sequential ] && [ -n "$prev" ]; then
            echo "{\"after\": [\"$prev\"]}" >"$b/service.json"
        fi
        prev=$(basename "$b")
    done
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# The supervisor's CPU time (user + system) in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$sup_pid/stat"; }

# --checks: N services without checks, then with a health check each every second.
if [ "$MODE" = checks ]; then
    secs=${CHECK_SECS:-60}
    echo "check_secs=$secs" >>"$summary"
    hz=$(getconf CLK_TCK)
    echo "lkinit: $LKINIT"
    echo "runtime: $(runc --version | head -1); $(nproc) CPUs; kernel $(uname -r)"
    echo "services: $N busybox bundles; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    for variant in plain checks; do
        for b in "$work"/services/*; do
            if [ "$variant" = checks ]; then
                printf 'health:\n  exec: [true]\n  interval: 1\n  timeout: 5\n' >"$b/service.yml"
            else
                rm -f "$b/service.yml"
            fi
        done
        start_supervisor
        wait_all_up >/dev/null
        sleep 3
        c0=$(cpu_ticks)
        sleep "$secs"
        c1=$(cpu_ticks)
        if [ "$variant" = checks ]; then
            label="$N services, a health check each every 1 s, after ${secs} s"
        else
            label="$N services, no checks, after ${secs} s"
        fi
        show_rss "$variant"
        cpu=$(echo "($c1 - $c0) / $hz" | bc -l | cut -c1-5)
        printf '  (%s) supervisor CPU over the %s s: %s s\n' "$label" "$secs" "$cpu"
        printf 'cpu_%s=%s\n' "$variant" "$cpu" >>"$summary"
        if [ "$variant" = checks ]; then
            bad=$(cli list | awk 'NR > 1 && $2 != "running"' | wc -l)
            echo "  services not running at the end: $bad; one's last check: $(cli status svc$(printf "%0${#N}d" 1) | grep '^check:')"
            echo "not_running=$bad" >>"$summary"
        fi
        stop_supervisor
        echo "  SIGTERM shutdown: ${down} ms"
    done
    exit 0
fi

echo "lkinit: $LKINIT"
echo "runtime: $(runc --version | head -1); $(nproc) CPUs; kernel $(uname -r)"
echo "services: $N busybox bundles; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# 1. Start-up: concurrent (independent services) and one at a time (each `after` the
# previous one), alternating.
: >"$work/conc"; : >"$work/seq"; : >"$work/down"
for r in $(seq "$UP_ROUNDS"); do
    for mode in concurrent sequential; do
        set_order "$mode"
        start_supervisor
        up=$(wait_all_up)
        stop_supervisor
        [ "$mode" = concurrent ] && { echo "$up" >>"$work/conc"; echo "$down" >>"$work/down"; }
        [ "$mode" = sequential ] && echo "$up" >>"$work/seq"
        printf 'round %s: %-10s all %s running after %5s ms; SIGTERM shutdown %s ms\n' "$r" "$mode" "$N" "$up" "$down"
    done
done
conc=$(median <"$work/conc"); seq_=$(median <"$work/seq"); down=$(median <"$work/down")
echo "median: concurrent ${conc} ms, one at a time ${seq_} ms, ratio $(echo "$conc/$seq_" | bc -l | cut -c1-5); shutdown ${down} ms"
{
    echo "up_concurrent_ms=$conc"
    echo "up_sequential_ms=$seq_"
    echo "up_concurrent_all=$(paste -sd, "$work/conc")"
    echo "up_sequential_all=$(paste -sd, "$work/seq")"
    echo "shutdown_ms=$down"
} >>"$summary"
echo

# 2. Memory: N up; then ROUNDS rounds of killing the init of every service, each time
# waiting until all are back, CLI restarts and a burst of requests; then an idle pause.
set_order concurrent
start_supervisor
wait_all_up >/dev/null
# Steady state: the blocking threads of the start-up burst have ended (2 s idle).
sleep 3
show_rss up
for r in $(seq "$ROUNDS"); do
    for p in $(cli list | awk 'NR > 1 && $2 == "running" {print $3}'); do kill -KILL "$p"; done
    sleep 0.5
    while [ "$(running)" -lt "$N" ]; do sleep 0.05; done
    # After the trim that follows the burst (1 s quiet) and the blocking threads' exit.
    sleep 3
    read -r rr ra _ <<<"$(rss_kib)"
    printf 'after crash round %s: RSS %s kB, anonymous %s kB\n' "$r" "$rr" "$ra"
    echo "rss_round$r=$rr" >>"$summary"
done
restarts=$(cli list | awk 'NR > 1 {s += $4} END {print s}')
for _ in $(seq 200); do cli list >/dev/null; cli status svc$(printf "%0${#N}d" 1) >/dev/null || true; done
cli_restarts=$((N < 10 ? N : 10))
for i in $(seq 1 "$cli_restarts"); do
    s=svc$(printf "%0${#N}d" "$i")
    cli restart "$s" >/dev/null
done
sleep 3
echo "churn: $restarts crash-restarts, $cli_restarts CLI restarts, 400 requests"
show_rss churn
sleep "${IDLE:-20}"
show_rss idle
echo "churn=$restarts crash-restarts + $cli_restarts CLI restarts + 400 requests" >>"$summary"
echo "idle_s=${IDLE:-20}" >>"$summary"
stop_supervisor
echo "SIGTERM shutdown of $N: ${down} ms"
