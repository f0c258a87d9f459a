#!/bin/sh
# Gives every example bundle a busybox root filesystem (binaries are built here, never
# committed): `lower/` when its config.json asks for a writable root, `rootfs/` otherwise.
# Usage: examples/build-rootfs.sh [DIR...]   (default: every bundle under examples/)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/lib/require.sh"
require busybox
require_check
busybox=$(command -v busybox)
"$busybox" --list >/dev/null 2>&1 || {
    say "$busybox cannot list its applets: busybox-static's busybox is needed"; exit 1; }
[ $# -gt 0 ] || set -- "$here"/onboot/* "$here"/services/* "$here"/onshutdown/*

for b in "$@"; do
    [ -f "$b/config.json" ] || continue
    if grep -q '"readonly": *false' "$b/config.json"; then root="$b/lower"; else root="$b/rootfs"; fi
    [ -x "$root/bin/busybox" ] && continue
    mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/etc" "$root/run" "$root/var"
    [ "$root" = "$b/lower" ] && mkdir -p "$b/rootfs"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    echo "built $root"
done
