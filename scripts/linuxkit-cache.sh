#!/bin/sh
# Fills a linuxkit cache with the local images the YAMLs of examples/linuxkit name, built
# offline from this machine's files, so `linuxkit build --cache DIR` never needs a network:
#   local/busybox:1          busybox-static and its applet links (/bin), a container image
#                            and, in `init:`, the /bin/sh of the image's hooks
#   local/lkinit-init:dev    lkinit's init package (scripts/init-layout.sh) and the shared
#                            libraries it needs (none when it is static)
#   local/runc:dev           Debian's runc as /usr/bin/runc and its libraries, with the
#                            /etc/init.d/010-onboot and /etc/shutdown.d/010-onshutdown links
#                            to /usr/bin/service that LinuxKit's linuxkit/runc package has
#   local/memlogd:dev        LinuxKit's memlogd, logread, logwrite in /usr/bin and
#                            /etc/init.d/002-logging, which starts memlogd, as its package does
#   local/kernel:dev         Debian's kernel: `kernel` (bzImage) and `kernel.tar` with the
#                            modules of $MODULES and their dependencies
# Each image is keyed by its inputs (and these scripts): one whose key is unchanged is not
# built again, so a rebuilt lkinit refreshes only local/lkinit-init:dev. Blobs no image of
# the cache refers to any more are removed afterwards.
#
# Usage: scripts/linuxkit-cache.sh [--cache DIR] [--lkinit BIN] [--kernel-cache DIR]
#   --cache         the linuxkit cache (default target/linuxkit/cache)
#   --lkinit        lkinit binary (default: cargo build --release, target/release/lkinit)
#   --kernel-cache  Debian's kernel package, downloaded once (default target/image-cache,
#                   shared with scripts/build-image.sh)
# Environment: LINUXKIT (the linuxkit CLI; default `linuxkit` from PATH), LINUXKIT_TOOLS
# (where memlogd, logread and logwrite are; default the directory of the linuxkit CLI),
# MODULES (space-separated module names for kernel.tar; default overlay veth dummy bridge).
# Needs (Debian): busybox-static, runc, kmod, binutils, and the Rust toolchain unless
# --lkinit; checked first, with the linuxkit CLI and memlogd (scripts/lib/require.sh).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cache=$here/target/linuxkit/cache lkinit= kcache=$here/target/image-cache
while [ $# -gt 0 ]; do
    case $1 in
    --cache) cache=$2; shift 2 ;;
    --lkinit) lkinit=$2; shift 2 ;;
    --kernel-cache) kcache=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
MODULES=${MODULES:-overlay veth dummy bridge}
. "$here/scripts/lib/require.sh"
log() { say "$@"; }

linuxkit=${LINUXKIT:-linuxkit}
command -v "$linuxkit" >/dev/null 2>&1 ||
    require_note "$linuxkit: the linuxkit CLI (set LINUXKIT=/path/to/linuxkit or put it on PATH)"
require busybox runc depmod modprobe flock strip
if [ -n "$lkinit" ]; then
    [ -x "$lkinit" ] || require_note "--lkinit $lkinit: not an executable file"
else
    require_cargo
fi
tools=${LINUXKIT_TOOLS:-}
if [ -z "$tools" ] && command -v "$linuxkit" >/dev/null 2>&1; then
    tools=$(dirname "$(command -v "$linuxkit")")
fi
for t in memlogd logread logwrite; do
    [ -x "$tools/$t" ] ||
        require_note "$t: LinuxKit's pkg/memlogd, looked for in ${tools:-nowhere} (set LINUXKIT_TOOLS)"
done
require_check
linuxkit=$(command -v "$linuxkit")

if [ -z "$lkinit" ]; then
    log "building lkinit (cargo build --release; a few minutes the first time)..."
    (cd "$here" && cargo build --release --quiet)
    lkinit=$here/target/release/lkinit
fi
[ -x "$lkinit" ] || { log "no lkinit binary at $lkinit"; exit 1; }

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# Our keys and lock live beside the OCI layout; linuxkit reads only index.json and blobs/
# (and takes its own .lock).
state=$cache/lkinit
mkdir -p "$state/keys"
exec 9>"$state/lock"
# Tests build in parallel: one fills, the others wait and then find the keys current.
flock 9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts_key=$(cat "$0" "$here/scripts/lib/oci-archive.sh" "$here/scripts/init-layout.sh" \
    "$here/scripts/lib/debian-kernel.sh" | sha256sum | cut -d' ' -f1)
sum() { sha256sum "$1" | cut -d' ' -f1; }

# The shared libraries of binary $1 at the paths ldd names, under root $2.
copy_libs() {
    ldd "$1" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
        [ -e "$2$lib" ] && continue
        mkdir -p "$2$(dirname "$lib")"
        cp -L "$lib" "$2$lib"
    done
}

# fresh NAME KEY: true when image NAME must be (re)built for inputs KEY.
keyfile() { echo "$state/keys/$(echo "$1" | tr '/:' '__')"; }
fresh() {
    [ "$(cat "$(keyfile "$1")" 2>/dev/null)" != "$2" ] ||
        ! "$linuxkit" cache ls --cache "$cache" 2>&1 | grep -q "^docker.io/$1 "
}
# import NAME KEY ROOT [oci-archive options]: the tree ROOT as image NAME in the cache.
import() {
    name=$1 key=$2 root=$3
    shift 3
    log "$name: packing it and importing it into the cache..."
    "$here/scripts/lib/oci-archive.sh" "$@" "$root" "$name" "$work/image.tar" 2>/dev/null
    "$linuxkit" cache import --cache "$cache" "$work/image.tar" >/dev/null
    rm -f "$work/image.tar"
    echo "$key" >"$(keyfile "$name")"
}

# --- local/busybox:1 -------------------------------------------------------------------------
bb=$(command -v busybox)
key="$scripts_key $(sum "$bb")"
if fresh local/busybox:1 "$key"; then
    r=$work/busybox && mkdir -p "$r/bin"
    for d in dev proc sys tmp etc run var root usr/bin usr/sbin sbin; do mkdir -p "$r/$d"; done
    chmod 1777 "$r/tmp"
    cp "$bb" "$r/bin/busybox"
    for a in $("$bb" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$r/etc/passwd"
    printf 'root:x:0:\ntty:x:5:\n' >"$r/etc/group"
    import local/busybox:1 "$key" "$r" --cmd '["/bin/sh"]'
fi

# --- local/lkinit-init:dev -------------------------------------------------------------------
key="$scripts_key $(sum "$lkinit")"
if fresh local/lkinit-init:dev "$key"; then
    r=$work/lkinit && mkdir -p "$r"
    # A test binary carries its debug information; the image needs none of it.
    strip -o "$work/lkinit.bin" "$lkinit"
    "$here/scripts/init-layout.sh" "$work/lkinit.bin" "$r"
    copy_libs "$r/usr/bin/service" "$r"
    import local/lkinit-init:dev "$key" "$r"
fi

# --- local/runc:dev --------------------------------------------------------------------------
runc=$(command -v runc)
key="$scripts_key $(sum "$runc")"
if fresh local/runc:dev "$key"; then
    r=$work/runc && mkdir -p "$r/usr/bin" "$r/etc/init.d" "$r/etc/shutdown.d"
    cp -L "$runc" "$r/usr/bin/runc"
    copy_libs "$r/usr/bin/runc" "$r"
    # What LinuxKit's runc package adds: its init runs onboot and onshutdown through these.
    ln -s /usr/bin/service "$r/etc/init.d/010-onboot"
    ln -s /usr/bin/service "$r/etc/shutdown.d/010-onshutdown"
    import local/runc:dev "$key" "$r"
fi

# --- local/memlogd:dev -----------------------------------------------------------------------
key="$scripts_key $(sum "$tools/memlogd") $(sum "$tools/logread") $(sum "$tools/logwrite")"
if fresh local/memlogd:dev "$key"; then
    r=$work/memlogd && mkdir -p "$r/usr/bin" "$r/etc/init.d"
    for t in memlogd logread logwrite; do cp "$tools/$t" "$r/usr/bin/$t"; done
    printf '#!/bin/sh\n\n/usr/bin/memlogd -daemonize\n' >"$r/etc/init.d/002-logging"
    chmod 0755 "$r/etc/init.d/002-logging"
    import local/memlogd:dev "$key" "$r"
fi

# --- local/kernel:dev ------------------------------------------------------------------------
. "$here/scripts/lib/debian-kernel.sh"
debian_kernel "$kcache"
key="$scripts_key $KERNEL_RELEASE $(sum "$KERNEL_DIR/vmlinuz") $MODULES"
if fresh local/kernel:dev "$key"; then
    log "kernel $KERNEL_RELEASE with modules $MODULES"
    r=$work/kernel && m=$work/modules && mkdir -p "$r" "$m"
    cp "$KERNEL_DIR/vmlinuz" "$r/kernel"
    # shellcheck disable=SC2086 # one word per module
    kernel_modules "$KERNEL_DIR" "$KERNEL_RELEASE" "$m" $MODULES
    (cd "$m" && find lib -printf '%p\0' | LC_ALL=C sort -z |
        tar --null --no-recursion -T - --format=gnu --numeric-owner --owner=0 --group=0 \
            --mtime=@0 -cf -) >"$r/kernel.tar"
    import local/kernel:dev "$key" "$r"
fi

# --- blobs nothing refers to any more (an earlier lkinit image, ...) --------------------------
# Every digest named in index.json, then in the (small, JSON) blobs those name, and so on.
: >"$work/keep"
grep -o 'sha256:[0-9a-f]\{64\}' "$cache/index.json" | cut -d: -f2 | sort -u >"$work/queue"
while [ -s "$work/queue" ]; do
    cat "$work/queue" >>"$work/keep"
    while read -r d; do
        f=$cache/blobs/sha256/$d
        [ -f "$f" ] && [ "$(wc -c <"$f")" -lt 1048576 ] || continue
        grep -ao 'sha256:[0-9a-f]\{64\}' "$f" | cut -d: -f2
    done <"$work/queue" | sort -u >"$work/next"
    sort -u "$work/keep" -o "$work/keep"
    comm -23 "$work/next" "$work/keep" >"$work/queue"
done
for f in "$cache"/blobs/sha256/*; do
    [ -e "$f" ] || continue
    grep -qx "${f##*/}" "$work/keep" || { rm -f "$f"; log "removed unused blob ${f##*/}"; }
done
