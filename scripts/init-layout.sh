#!/bin/sh
# Lays lkinit out in a root file system the way an image uses it:
#   /usr/bin/service                     the binary
#   /usr/bin/{onboot,onshutdown,init,lkinit} -> service
#   /sbin/init -> ../usr/bin/service     what a kernel with a root disk runs
#   /init -> usr/bin/service             what the kernel runs from an initramfs
# lkinit acts on the name it is called by, so every link is a command.
# Used by the image builder and by the Dockerfiles (the package image has this layout).
# Usage: scripts/init-layout.sh LKINIT_BINARY ROOT
set -eu
[ $# -eq 2 ] || { echo "usage: $0 LKINIT_BINARY ROOT" >&2; exit 2; }
bin=$1 root=$2
mkdir -p "$root/usr/bin" "$root/sbin"
cp "$bin" "$root/usr/bin/service"
chmod 0755 "$root/usr/bin/service"
for name in onboot onshutdown init lkinit; do
    ln -sfn service "$root/usr/bin/$name"
done
ln -sfn ../usr/bin/service "$root/sbin/init"
ln -sfn usr/bin/service "$root/init"
