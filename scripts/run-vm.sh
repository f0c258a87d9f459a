#!/bin/sh
# Builds the example image (scripts/build-image.sh, same arguments) and boots it under QEMU
# without KVM (TCG), the serial console on this terminal. The example services power the
# machine off after a few seconds; Ctrl-A X quits QEMU at any time.
# Environment: NO_BUILD=1 boots the last image; IMAGE (default target/image), MEM (default
# 512M), APPEND (more kernel parameters; the image's own, IMAGE/cmdline, come first);
# RUNTIME (crun or runc, see build-image.sh).
# Everything the build and the boot need is checked first and named at once.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
image=${IMAGE:-$here/target/image}
. "$here/scripts/lib/require.sh"
require qemu-system-x86_64
if [ -n "${NO_BUILD:-}" ]; then
    for f in vmlinuz initrd.img; do
        [ -f "$image/$f" ] || require_note "$image/$f: no image to boot (run without NO_BUILD=1 first)"
    done
else
    require_also "$here/scripts/build-image.sh" --out "$image" "$@"
fi
require_check
[ -n "${NO_BUILD:-}" ] || "$here/scripts/build-image.sh" --out "$image" "$@"
say "booting under QEMU (TCG, no KVM): the kernel takes a few seconds before its first line; Ctrl-A X quits"
# -no-reboot: a reboot ends QEMU too; panic=-1: a kernel panic reboots at once, so a failed
# boot never hangs.
exec qemu-system-x86_64 -accel tcg -m "${MEM:-512M}" -smp 1 -nographic -no-reboot -nic none \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "console=ttyS0 panic=-1 quiet $(cat "$image/cmdline" 2>/dev/null) ${APPEND:-}"
