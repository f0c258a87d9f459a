#!/usr/bin/env bash
# lkinit benchmark: every figure of the performance targets in one run, each against a
# baseline measured in the same run on the same bundles, printed as one table.
#
#   scripts/bench.sh [--rounds N] [--bundles N] [--services N] [--vm] [--only LIST]
#
#   --rounds N     alternating rounds per onboot case (default 11; one warm-up round more)
#   --bundles N    busybox bundles per onboot case (default 20)
#   --services N   services for the supervisor rows (default 50)
#   --vm           also build the example image and boot it under QEMU (TCG, about a
#                  minute): time from power-on to the first service's first line
#   --checks       also the cost of health checks: the supervisor with N services and no
#                  checks, then with an exec health check each every second (2-3 minutes)
#   --only LIST    comma-separated subset of: onboot,net,services,checks,size,vm
#   LKINIT=PATH    measures that binary instead of building target/release/lkinit
#
# Needs root, runc, crun, busybox-static, iproute2, python3, bc (qemu-system-x86 for --vm).
#
# onboot rows: `lkinit onboot` over N busybox `echo` bundles vs a shell loop of bare
# `RUNTIME run` over the same bundles, each container's output appended to a log file.
# veth rows: bundles with a veth pair (peer on the host) and a network namespace bind vs the
# same steps by hand (scripts/byhand_net_loop.py: create, `ip link`, `mount --bind`, start,
# wait, delete). Rounds alternate lkinit and baseline so drifting machine load hits both
# alike; the row shows the medians (ms per container), their ratio, and the spread of the
# per-round ratios. Everything lives on a private tmpfs, as on a booted image (/run and the
# runtimes' state are tmpfs there). crun 1.8 refuses this host's hybrid cgroup layout, so
# its rows run in a private mount namespace without /sys/fs/cgroup/unified (both sides).
#
# Services rows: scripts/bench-services.sh (concurrent vs one-at-a-time start, RSS with N
# services, after churn and after an idle pause).
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=11 n=20 services=50 only=onboot,net,services,size
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --bundles) n=$2; shift 2 ;;
        --services) services=$2; shift 2 ;;
        --vm) only=$only,vm; shift ;;
        --checks) only=$only,checks; shift ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# Everything the parts asked for need, named at once before anything runs. crun and perf
# are optional: without them their rows are left out.
. "$here/scripts/lib/require.sh"
require_root "it mounts a tmpfs and runs containers"
require runc busybox python3 bc
want net && require ip
want onboot || want net && require unshare
[ -n "${LKINIT:-}" ] || require_cargo
want services || want checks && require_also "$here/scripts/bench-services.sh"
want vm && require_also "$here/scripts/build-image.sh" --lkinit "${LKINIT:-$here/target/release/lkinit}" &&
    require qemu-system-x86_64
require_check

work=$(mktemp -d /tmp/lkinit-bench.XXXXXX)
chmod 755 "$work"
mount -t tmpfs -o mode=755 lkinit-bench "$work"
# shellcheck source=lib/cleanup.sh
. "$here/scripts/lib/cleanup.sh"
cleanup() {
    set +e
    net_reset
    cleanup_work "$work" lkinit-bench "$work"/root-*
}
trap cleanup EXIT

if [ -z "${LKINIT:-}" ]; then
    echo "building lkinit (cargo build --release; a few minutes the first time)..." >&2
    cargo build --release --quiet --manifest-path "$here/Cargo.toml"
    LKINIT=$here/target/release/lkinit
fi
lkinit=$LKINIT
busybox=$work/busybox
cp "$(command -v busybox)" "$busybox"

make_bundles() { # DIR COUNT
    local dir=$1 count=$2 i b
    mkdir -p "$dir"
    for i in $(seq -w 1 "$count"); do
        b="$dir/b$i"
        mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
        ln "$busybox" "$b/rootfs/bin/busybox"
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

# timed CMD ARGS...: runs CMD and prints its wall-clock time and the CPU time of its whole
# process tree (user + system, every descendant that was waited for), in microseconds.
timed() {
    python3 -c '
import os, sys, time
t = time.perf_counter()
# What the containers print goes nowhere (lkinit echoes it, the loop logs it).
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.exit("bench: %s exited %d" % (sys.argv[1:], code))
print(int(wall * 1e6), int((ru.ru_utime + ru.ru_stime) * 1e6))
' "$@"
}

# Prints the median of the numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
calc() { echo "$1" | bc -l; }
fmt() { printf "%.${2:-3}f" "$(calc "$1")"; }

rows=()
row() { # CASE LKINIT BASELINE RATIO SPREAD TARGET
    rows+=("$(printf '| %-44s | %12s | %12s | %6s | %-13s | %-8s |' "$@")")
    printf '  %s: lkinit %s, baseline %s, ratio %s (%s), target %s\n' "$@" >&2
}
verdict() { # VALUE LIMIT: "met" when VALUE <= LIMIT
    if [ "$(calc "$1 <= $2")" = 1 ]; then echo "met"; else echo "MISSED"; fi
}

# run_case LABEL LKINIT_CMD BASE_CMD [RESET_CMD]: times both commands, alternating (which
# goes first alternates too), each run after RESET_CMD (untimed); adds a row with the wall
# clock medians and ratio, the spread of the per-round ratios, and the ratio of the CPU time
# medians (every process of the run: lkinit or the shell, the runtime, the containers).
run_case() {
    local label=$1 lk=$2 base=$3 reset=${4:-true} i side l b lc bc
    : > "$work/l.t"; : > "$work/b.t"; : > "$work/r.t"; : > "$work/lc.t"; : > "$work/bc.t"
    for i in $(seq 0 "$rounds"); do
        for side in $( [ $((i % 2)) = 0 ] && echo "l b" || echo "b l"); do
            eval "$reset"
            if [ "$side" = l ]; then
                read -r l lc <<<"$(eval "timed $lk" </dev/null)"
            else
                read -r b bc <<<"$(eval "timed $base" </dev/null)"
            fi
        done
        [ "$i" -gt 0 ] || continue
        echo "$l" >> "$work/l.t"; echo "$b" >> "$work/b.t"; calc "$l / $b" >> "$work/r.t"
        echo "$lc" >> "$work/lc.t"; echo "$bc" >> "$work/bc.t"
    done
    l=$(median < "$work/l.t"); b=$(median < "$work/b.t")
    lc=$(median < "$work/lc.t"); bc=$(median < "$work/bc.t")
    local ratio lo hi
    ratio=$(calc "$l / $b")
    lo=$(sort -g "$work/r.t" | head -1); hi=$(sort -g "$work/r.t" | tail -1)
    row "$label" "$(fmt "$l / $n / 1000" 2) ms" "$(fmt "$b / $n / 1000" 2) ms" "$(fmt "$ratio")" \
        "$(fmt "$lo" 2)–$(fmt "$hi" 2); CPU $(fmt "$lc / $bc")" "≤ 1.05 $(verdict "$ratio" 1.05)"
}

# own_cpu LABEL LKINIT_CMD BASE_CMD: with perf, the CPU time of lkinit's own processes
# (every thread, and its children until they exec the runtime) vs the loop's shell, per
# container, from 10 kHz samples attributed by command name: what lkinit adds on top of the
# runtime, free of the runtime's own variance.
own_cpu() {
    command -v perf >/dev/null && perf stat -e cpu-clock true >/dev/null 2>&1 || return 0
    local label=$1 lk=$2 base=$3 f l b
    for f in l b; do
        local cmd=$lk; [ "$f" = b ] && cmd=$base
        eval "perf record -q -e cpu-clock -F 10000 -o $work/perf.$f -- $cmd" >/dev/null 2>&1 || return 0
    done
    # Samples of the commands named; 10 kHz: 0.1 ms each.
    per() { perf report -i "$work/perf.$1" --sort comm --stdio -F sample,comm 2>/dev/null |
        awk -v re="$2" -v n="$n" '$2 ~ re {s += $1} END {printf "%.2f", s * 0.1 / n}'; }
    l=$(per l '^(lkinit|reaper|log|blocking)$'); b=$(per b '^sh$')
    row "  $label: own CPU per container (perf)" "$l ms" "$b ms" "-" "lkinit +$(fmt "$l - $b" 2) ms" "-"
}

# Plain bundles: lkinit onboot vs a shell loop of `RUNTIME run`.
onboot_case() { # RUNTIME WRAP
    local rt=$1 wrap=$2 dir="$work/bundles-$1"
    [ -d "$dir" ] || make_bundles "$dir" "$n"
    mkdir -p "$work/log-b"
    local lk base
    lk="$wrap $lkinit -q --runtime $rt --runtime-root $work/root-l-$rt --state-dir $work/state onboot --path $dir --log-dir $work/log-l"
    base="$wrap sh -c 'for b in \"\$1\"/*; do n=\${b##*/}; $rt --root \"\$2\" run --bundle \"\$b\" \"\$n\" >>\"\$3/\$n.out.log\" 2>>\"\$3/\$n.log\" || exit 1; done' sh $dir $work/root-b-$rt $work/log-b"
    run_case "onboot vs bare \`$rt run\` loop" "$lk" "$base"
    own_cpu "$rt" "$lk" "$base"
}

# Bundles with a veth (peer in the root namespace) and a net namespace bind: lkinit onboot
# vs the same steps by hand.
net_reset() {
    local d
    for d in "$work"/ns-l "$work"/ns-b; do
        [ -d "$d" ] || continue
        for f in "$d"/*; do [ -e "$f" ] && { umount "$f" 2>/dev/null || true; }; rm -f "$f"; done
    done
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | { grep -E '^(lkbl|lkbh)b[0-9]+$' || true; } | while read -r l; do ip link del "$l" 2>/dev/null || true; done
    return 0
}
net_case() { # RUNTIME WRAP
    local rt=$1 wrap=$2 dir="$work/netbundles-$1" b
    if [ ! -d "$dir" ]; then
        make_bundles "$dir" "$n"
        for b in "$dir"/*; do
            printf '{"interfaces": [{"name": "eth1", "peer": "lkbl%s"}], "bindNS": {"net": "%s/ns-l/%s"}}\n' \
                "${b##*/}" "$work" "${b##*/}" > "$b/runtime.json"
        done
        mkdir -p "$work/netbundles-plain-$rt"
        for b in "$dir"/*; do cp -a "$b" "$work/netbundles-plain-$rt/"; rm "$work/netbundles-plain-$rt/${b##*/}/runtime.json"; done
    fi
    run_case "veth+bindNS onboot vs by hand ($rt)" \
        "$wrap $lkinit -q --runtime $rt --runtime-root $work/root-l-$rt --state-dir $work/state onboot --path $dir --log-dir $work/log-l" \
        "$wrap python3 $here/scripts/byhand_net_loop.py $rt $work/root-b-$rt $work/netbundles-plain-$rt $work/ns-b $work/log-b lkbh" \
        net_reset
}

# Prefixes of the commands run_case evaluates.
crun_ns="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec \"\$@\"' sh"
plain=

services_rows() {
    local s="$work/services.summary"
    echo "services: scripts/bench-services.sh $services 3 (this takes a minute or two)" >&2
    SUMMARY=$s LKINIT=$lkinit IDLE=${IDLE:-20} "$here/scripts/bench-services.sh" "$services" 3 >"$work/services.out" 2>&1 \
        || { cat "$work/services.out" >&2; exit 1; }
    sed 's/^/  /' "$work/services.out" >&2
    get() { sed -n "s/^$1=//p" "$s"; }
    local c q ratio mib
    c=$(get up_concurrent_ms); q=$(get up_sequential_ms); ratio=$(calc "$c / $q")
    row "$services services up: concurrently vs one at a time" "$(fmt "$c / 1000" 2) s" "$(fmt "$q / 1000" 2) s" \
        "$(fmt "$ratio")" "$(get up_concurrent_all) / $(get up_sequential_all) ms" "≤ 0.6 $(verdict "$ratio" 0.6)"
    mib() { fmt "$(get "$1_$2") / 1024" 2; }
    for phase in up churn idle; do
        local label
        case $phase in
            up) label="supervisor RSS, $services services up" ;;
            churn) label="  after churn ($(get churn | cut -d' ' -f1) crash-restarts, ...)" ;;
            idle) label="  after $(get idle_s) s idle" ;;
        esac
        row "$label" "$(mib rss "$phase") MiB" "-" "-" "anon $(mib anon "$phase"), file $(mib file "$phase")" \
            "≤ 4 $(verdict "$(get rss_$phase) / 1024" 4)"
    done
}

checks_rows() {
    local s="$work/checks.summary"
    echo "checks: scripts/bench-services.sh --checks $services (this takes two to three minutes)" >&2
    SUMMARY=$s LKINIT=$lkinit "$here/scripts/bench-services.sh" --checks "$services" >"$work/checks.out" 2>&1 \
        || { cat "$work/checks.out" >&2; exit 1; }
    sed 's/^/  /' "$work/checks.out" >&2
    get() { sed -n "s/^$1=//p" "$s"; }
    local with without
    with=$(get rss_checks); without=$(get rss_plain)
    row "supervisor RSS, $services services, a check/s each" "$(fmt "$with / 1024" 2) MiB" \
        "$(fmt "$without / 1024" 2) MiB" "$(fmt "$with / $without")" "no checks = baseline" "≤ 4 $(verdict "$with / 1024" 4)"
    row "  supervisor CPU over $(get check_secs) s" "$(get cpu_checks) s" "$(get cpu_plain) s" "-" \
        "$(get not_running) not running at the end" "-"
}

size_row() {
    local bytes
    bytes=$(stat -c %s "$lkinit")
    row "release binary (stripped)" "$(fmt "$bytes / 1000000" 2) MB" "-" "-" "$bytes bytes" "≤ 4 $(verdict "$bytes / 1000000" 4)"
}

vm_rows() {
    echo "vm: building the example image and booting it under QEMU (TCG)" >&2
    "$here/scripts/build-image.sh" --lkinit "$lkinit" --out "$work/image" >"$work/image.log" 2>&1 \
        || { cat "$work/image.log" >&2; exit 1; }
    local t0 console=$work/console.log
    t0=$(now)
    timeout 300 qemu-system-x86_64 -accel tcg -m 512M -smp 1 -nographic -no-reboot -nic none \
        -kernel "$work/image/vmlinuz" -initrd "$work/image/initrd.img" \
        -append "console=ttyS0 panic=-1 quiet $(cat "$work/image/cmdline")" </dev/null >"$console" 2>&1 || true
    local wall
    wall=$(fmt "($(now) - $t0) / 1000000000" 1)
    tr -d '\r' <"$console" >"$here/target/bench-vm-console.log"
    console=$here/target/bench-vm-console.log
    # The kernel's clock on lkinit's lines; the first service prints its own uptime.
    at() { grep -m1 "$1" "$console" | grep -o '\[ *[0-9]*\.[0-9]*\] lkinit' | tr -d '[] a-z'; }
    local init moved onboot sup first
    init=$(at "lkinit: started on the initramfs")
    moved=$(grep -m1 -E "moved the root|made the initramfs root" "$console" | sed -n 's/.* in \([0-9]*\) ms.*/\1/p')
    onboot=$(grep -m1 "onboot: finished in" "$console" | sed -n 's/.*finished in \([0-9]*\) ms.*/\1/p')
    sup=$(at "lkinit: supervisor started")
    first=$(grep -m1 "started at uptime" "$console" | sed -n 's/.*started at uptime \([0-9.]*\)s.*/\1/p')
    [ -n "$first" ] || { echo "vm: no service started; console:" >&2; cat "$console" >&2; exit 1; }
    local rt
    rt=$(sed -n 's/.*lkinit\.runtime=\([^ ]*\).*/\1/p' "$work/image/cmdline"); rt=${rt:-runc}
    row "VM boot to first service (TCG, $rt)" "${first} s" "-" "-" "/init at $(fmt "${init:-0}" 1) s" "-"
    row "  leaving the initramfs / onboot (5 bundles)" "${moved:-?} ms" "-" "-" "$(fmt "${onboot:-0} / 1000" 1) s onboot" "-"
    row "  supervisor started" "$(fmt "${sup:-0}" 1) s" "-" "-" "qemu wall ${wall} s" "-"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "lkinit benchmark ($started): $lkinit" >&2
want onboot && { echo "onboot: $n bundles, $rounds rounds" >&2; onboot_case runc "$plain"; command -v crun >/dev/null && onboot_case crun "$crun_ns"; }
want net && { echo "veth+bindNS: $n bundles, $rounds rounds" >&2; net_case runc "$plain"; command -v crun >/dev/null && net_case crun "$crun_ns"; }
want services && services_rows
want checks && checks_rows
want size && size_row
want vm && vm_rows
load1=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "lkinit benchmark, $started; $(nproc) cores, kernel $(uname -r); $(runc --version | head -1)$(command -v crun >/dev/null && echo ", $(crun --version | head -1)")"
echo "load average (1, 5, 15 min) at the start: $load0; at the end: $load1"
echo "onboot rows: $n bundles, median of $rounds alternating rounds, ms per container; spread = lowest–highest per-round ratio"
echo
printf '| %-44s | %12s | %12s | %6s | %-13s | %-8s |\n' "case" "lkinit" "baseline" "ratio" "spread / note" "target"
printf '|%s|%s|%s|%s|%s|%s|\n' "----------------------------------------------" "--------------" "--------------" "--------" "---------------" "----------"
printf '%s\n' "${rows[@]}"
