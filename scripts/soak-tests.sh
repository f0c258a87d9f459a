#!/usr/bin/env bash
# The whole test suite N times in a row with every core kept busy: the check that the
# harness cannot hang (each run must end, green or red, within the bounds the tests set
# themselves).
#
#   scripts/soak-tests.sh [N]    (as root; default N=10; LINUXKIT as for cargo test)
#
# A busy loop runs on each core meanwhile. Every run's output goes to
# target/soak/run-I.log; one line a run (exit status, seconds, tests passed and failed)
# goes to stdout and target/soak/summary. Exits 1 if any run failed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-10}
. "$here/scripts/lib/require.sh"
require_root "the tests mount, make namespaces and run containers"
require_cargo
require_check
out=$here/target/soak
mkdir -p "$out"
: >"$out/summary"
busy=()
cleanup() { [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    busy+=($!)
done
say "$n runs, ${#busy[@]} busy loops; logs in $out"
failed=0
for i in $(seq "$n"); do
    start=$(date +%s)
    rc=0
    (cd "$here" && cargo test --no-fail-fast) >"$out/run-$i.log" 2>&1 || rc=$?
    took=$(($(date +%s) - start))
    counts=$(awk '/^test result:/ {p += $4; f += $6} END {print p + 0 " passed, " f + 0 " failed"}' "$out/run-$i.log")
    line="run $i: exit $rc, ${took} s, $counts"
    echo "$line" | tee -a "$out/summary"
    [ "$rc" -eq 0 ] || failed=1
done
exit "$failed"
