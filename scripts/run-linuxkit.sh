#!/bin/sh
# Builds a LinuxKit YAML with the real `linuxkit` CLI, offline, with lkinit as the init,
# and boots it under QEMU without KVM (TCG), the serial console on this terminal. The
# images the YAML names come from scripts/linuxkit-cache.sh (filled first; only what
# changed is rebuilt). The examples power the machine off when they are done; Ctrl-A X
# quits QEMU at any time.
#
# Usage: scripts/run-linuxkit.sh [--lkinit BIN] [--cache DIR] [--out DIR] FILE.yml
#   --lkinit  lkinit binary for local/lkinit-init:dev (default: cargo build --release)
#   --cache   the linuxkit cache (default target/linuxkit/cache)
#   --out     where NAME-kernel, NAME-initrd.img and NAME-cmdline go
#             (default target/linuxkit/NAME, NAME being the YAML's name without .yml)
# Environment: LINUXKIT (the CLI; default `linuxkit` from PATH), NO_BUILD=1 boots the last
# build, MEM (default 512M), APPEND (more kernel parameters, after the image's own).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
lkinit= cache=$here/target/linuxkit/cache out=
while [ $# -gt 0 ]; do
    case $1 in
    --lkinit) lkinit=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--lkinit BIN] [--cache DIR] [--out DIR] FILE.yml" >&2; exit 2; }
yml=$1
. "$here/scripts/lib/require.sh"
log() { say "$@"; }
name=$(basename "$yml" .yml)
out=${out:-$here/target/linuxkit/$name}

# Everything the cache, the build and the boot need, named at once.
require qemu-system-x86_64
[ -f "$yml" ] || require_note "$yml: no such file"
if [ -z "${NO_BUILD:-}" ]; then
    # The cache script checks the linuxkit CLI too.
    require_also "$here/scripts/linuxkit-cache.sh" --cache "$cache" ${lkinit:+--lkinit "$lkinit"}
fi
require_check
linuxkit=${LINUXKIT:-linuxkit}

if [ -z "${NO_BUILD:-}" ]; then
    log "filling the linuxkit cache $cache (only what changed is rebuilt)..."
    "$here/scripts/linuxkit-cache.sh" --cache "$cache" ${lkinit:+--lkinit "$lkinit"}
    mkdir -p "$out"
    log "linuxkit build $yml into $out..."
    "$linuxkit" build --cache "$cache" --no-sbom --format kernel+initrd --dir "$out" \
        --name "$name" "$yml"
fi
for f in kernel initrd.img cmdline; do
    [ -f "$out/$name-$f" ] || { log "no $out/$name-$f (build first)"; exit 1; }
done

# The YAML's own command line first, as LinuxKit boots it; the serial console if it names
# none. panic=-1: a kernel panic reboots at once, and -no-reboot turns that (and any reboot)
# into QEMU's exit, so a failed boot never hangs.
cmdline=$(cat "$out/$name-cmdline")
case " $cmdline " in
*" console=ttyS0"*) ;;
*) cmdline="$cmdline console=ttyS0" ;;
esac
log "booting $name under QEMU (TCG, no KVM); Ctrl-A X quits"
exec qemu-system-x86_64 -accel tcg -m "${MEM:-512M}" -smp 1 -nographic -no-reboot -nic none \
    -kernel "$out/$name-kernel" -initrd "$out/$name-initrd.img" \
    -append "$cmdline panic=-1 ${APPEND:-}"
