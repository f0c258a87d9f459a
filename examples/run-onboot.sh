#!/bin/sh
# Runs the example onboot bundles with lkinit on this machine (as root): builds lkinit and
# the bundles' busybox roots, then `lkinit onboot` over examples/onboot.
# Logs go to ${LOG_DIR:-/tmp/lkinit-examples/log}.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
cargo build --release --quiet
"$here/build-rootfs.sh" "$here"/onboot/*
log=${LOG_DIR:-/tmp/lkinit-examples/log}
exec ./target/release/lkinit --state-dir /tmp/lkinit-examples/state \
    --runtime-root /tmp/lkinit-examples/runc onboot --path "$here/onboot" --log-dir "$log" "$@"
