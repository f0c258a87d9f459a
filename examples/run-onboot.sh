#!/bin/sh
# Runs the example onboot bundles with lkinit on this machine (as root): builds lkinit and
# the bundles' busybox roots, then `lkinit onboot` over examples/onboot.
# Logs go to ${LOG_DIR:-/tmp/lkinit-examples/log}.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
. scripts/lib/require.sh
require_root "lkinit mounts, makes links and runs containers"
require runc busybox ip
require_cargo
require_check
say "building lkinit (cargo build --release; a few minutes the first time)..."
cargo build --release --quiet
"$here/build-rootfs.sh" "$here"/onboot/*
# A boot starts with no veth left from the boot before (/run and the namespaces bound in it
# are gone). On a long-lived host, 030-netns's root-side veth end from an earlier run still
# exists, and lkinit refuses to create a link whose name is taken: delete it first, which
# takes its other end with it. The old bind on /run/netns/lkinit-example needs nothing:
# lkinit re-points a path that already carries a namespace bind.
ip link del lkex-host 2>/dev/null || true
log=${LOG_DIR:-/tmp/lkinit-examples/log}
exec ./target/release/lkinit --state-dir /tmp/lkinit-examples/state \
    --runtime-root /tmp/lkinit-examples/runc onboot --path "$here/onboot" --log-dir "$log" "$@"
