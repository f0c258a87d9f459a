#!/bin/sh
# Runs the example services of examples/supervisor/ under the lkinit supervisor on this
# machine (as root), in the foreground until Ctrl-C (which stops them all). In another
# terminal:
#   target/release/lkinit list     (or `service list` through a link named service)
# Logs go to ${LOG_DIR:-/tmp/lkinit-examples/log}.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
. scripts/lib/require.sh
require_root "lkinit mounts and runs containers"
require runc busybox
require_cargo
require_check
say "building lkinit (cargo build --release; a few minutes the first time)..."
cargo build --release --quiet
"$here/build-rootfs.sh" "$here"/supervisor/*
log=${LOG_DIR:-/tmp/lkinit-examples/log}
exec ./target/release/lkinit --state-dir /tmp/lkinit-examples/state \
    --runtime-root /tmp/lkinit-examples/runc \
    system-init --path "$here/supervisor" --log-dir "$log" "$@"
