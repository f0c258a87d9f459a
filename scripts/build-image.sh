#!/bin/sh
# Builds a bootable image from the bundles of examples/ (or --containers DIR): Debian's
# kernel and an initramfs holding busybox, the OCI runtime (crun, or runc) and the libraries
# it needs, lkinit as /sbin/init (and /init, /usr/bin/service, onboot, onshutdown), the
# kernel modules of $MODULES with /etc/modules, and the bundles under
# /containers/{onboot,services,onshutdown}. Next to vmlinuz and initrd.img it writes
# `cmdline`, the kernel parameters the image needs (`lkinit.runtime=crun` with crun), as
# LinuxKit writes NAME-cmdline: boot with `-append "... $(cat OUT/cmdline)"`.
#
# Usage: scripts/build-image.sh [--lkinit BIN] [--containers DIR] [--extra DIR] [--out DIR]
#                               [--cache DIR]
#   --lkinit      lkinit binary (default: cargo build --release, target/release/lkinit)
#   --containers  directory with onboot/ services/ onshutdown/ (default: examples)
#   --extra       a tree copied over the image's root last (e.g. etc/init.d hooks,
#                 containers/volumes); symlinks are copied as they are
#   --out         where vmlinuz and initrd.img go (default: target/image)
#   --cache       downloaded kernel package, unpacked (default: target/image-cache)
# Environment: RUNTIME (crun or runc; default crun when it is installed: a C program, it
# starts containers several times faster than runc, most of all under emulation), MODULES
# (one /etc/modules line each, `;`-separated), COMPRESS (none, gzip, zstd: the initramfs;
# default none, fastest to unpack under emulation), HOSTNAME_IN_IMAGE.
# Needs (Debian): apt, dpkg, kmod, cpio, busybox-static, crun or runc, and the Rust
# toolchain unless --lkinit; xz-utils/zstd when the kernel's modules are compressed. All of
# it is checked first (scripts/lib/require.sh).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
lkinit= containers=$here/examples extra= out=$here/target/image cache=$here/target/image-cache
while [ $# -gt 0 ]; do
    case $1 in
    --lkinit) lkinit=$2; shift 2 ;;
    --containers) containers=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
MODULES=${MODULES:-"overlay;veth;dummy numdummies=0;bridge"}
COMPRESS=${COMPRESS:-none}
. "$here/scripts/lib/require.sh"
log() { say "$@"; }
if [ -z "${RUNTIME:-}" ]; then
    if command -v crun >/dev/null 2>&1; then RUNTIME=crun; else RUNTIME=runc; fi
fi
case $RUNTIME in
crun|runc) ;;
*) log "RUNTIME must be crun or runc"; exit 2 ;;
esac
case $COMPRESS in
none) filter=cat ;;
gzip) filter="gzip -1" ;;
zstd) filter="zstd -q -3"; require zstd ;;
*) log "COMPRESS must be none, gzip or zstd"; exit 2 ;;
esac
require depmod modprobe cpio busybox flock "$RUNTIME"
[ -n "$lkinit" ] || require_cargo
[ -z "$extra" ] || [ -d "$extra" ] || require_note "--extra $extra: not a directory"
require_check

if [ -z "$lkinit" ]; then
    log "building lkinit (cargo build --release; a few minutes the first time)..."
    (cd "$here" && cargo build --release --quiet)
    lkinit=$here/target/release/lkinit
fi
[ -x "$lkinit" ] || { log "no lkinit binary at $lkinit"; exit 1; }

# --- the kernel: Debian's linux-image-amd64, downloaded once into the cache ---------------
. "$here/scripts/lib/debian-kernel.sh"
debian_kernel "$cache"
kdir=$KERNEL_DIR release=$KERNEL_RELEASE

# --- the root file system ------------------------------------------------------------------
log "building the initramfs (busybox, $RUNTIME, lkinit, kernel modules, the bundles of $containers)..."
mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"
for d in bin sbin usr/bin usr/sbin etc proc sys dev run tmp var root lib/modules \
    containers/onboot containers/services containers/onshutdown; do
    mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp"

# The shared libraries a binary needs, at the paths ldd names.
copy_libs() {
    ldd "$1" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

bb=$(command -v busybox)
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
done
cp -L "$(command -v "$RUNTIME")" "$root/usr/bin/$RUNTIME"
copy_libs "$root/usr/bin/$RUNTIME"
# Stripped: the test binary carries its debug information otherwise.
tmpbin=$out/lkinit.stripped
if command -v strip >/dev/null 2>&1; then strip -o "$tmpbin" "$lkinit"; else cp "$lkinit" "$tmpbin"; fi
"$here/scripts/init-layout.sh" "$tmpbin" "$root"
rm -f "$tmpbin"
copy_libs "$root/usr/bin/service"

echo "${HOSTNAME_IN_IMAGE:-lkinit}" >"$root/etc/hostname"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' >"$root/etc/group"
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || log "cannot make dev/console (not root?)"

# --- kernel modules: those of $MODULES and their dependencies ------------------------------
: >"$root/etc/modules"
names=$(echo "$MODULES" | tr ';' '\n' | while read -r name params; do
    [ -n "$name" ] || continue
    echo "$name${params:+ $params}" >>"$root/etc/modules"
    echo "$name"
done)
# shellcheck disable=SC2086 # one word per module name
kernel_modules "$kdir" "$release" "$root" $names

# --- the bundles ---------------------------------------------------------------------------
for phase in onboot services onshutdown; do
    [ -d "$containers/$phase" ] || continue
    set -- "$containers/$phase"/*
    [ -e "$1" ] || continue
    "$here/examples/build-rootfs.sh" "$@" >/dev/null
    for b in "$@"; do
        [ -f "$b/config.json" ] || continue
        name=$(basename "$b")
        mkdir -p "$root/containers/$phase/$name"
        # A leftover tmp/ of a run on the host is not part of the bundle.
        (cd "$b" && tar --exclude=./tmp -cf - .) | (cd "$root/containers/$phase/$name" && tar -xf -)
    done
done
# One busybox in memory, not one per bundle.
find "$root/containers" -path '*/bin/busybox' -type f | while read -r f; do
    cmp -s "$f" "$root/bin/busybox" && ln -f "$root/bin/busybox" "$f"
done

# --- what the caller adds ------------------------------------------------------------------
[ -z "$extra" ] || cp -a "$extra/." "$root/"

# --- kernel and initramfs ------------------------------------------------------------------
cp "$kdir/vmlinuz" "$out/vmlinuz"
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | $filter >"$out/initrd.img"
# runc is lkinit's default; any other runtime is named on the kernel command line.
if [ "$RUNTIME" = runc ]; then : >"$out/cmdline"; else echo "lkinit.runtime=$RUNTIME" >"$out/cmdline"; fi
log "kernel $release: $out/vmlinuz; initramfs: $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1)); runtime $RUNTIME; cmdline: $(cat "$out/cmdline")"
