# Sourced by the image scripts: Debian's kernel for the VM images, and a subset of its
# modules. Needs (Debian): apt, dpkg, kmod; xz-utils/zstd when the modules are compressed.
#
# debian_kernel CACHE: downloads linux-image-amd64 (and the versioned package it depends
# on) into CACHE once and unpacks it into CACHE/kernel: vmlinuz, release (e.g.
# 6.1.0-57-amd64) and lib/modules/RELEASE with modules.dep. Sets KERNEL_DIR and
# KERNEL_RELEASE. Several builds may share CACHE: the first downloads, the others wait.
# Its lines go through the script's `say` (scripts/lib/require.sh) when there is one.
_dk_say() {
    if command -v say >/dev/null 2>&1; then say "$@"; else echo "debian-kernel: $*" >&2; fi
}
debian_kernel() {
    mkdir -p "$1"
    _dk_cache=$(cd "$1" && pwd)
    KERNEL_DIR=$_dk_cache/kernel
    (
        flock 9
        [ -f "$KERNEL_DIR/release" ] && exit 0
        cd "$_dk_cache"
        # A package downloaded earlier (e.g. before an interrupted unpack) is used as it is.
        _dk_download() {
            ls "$1"_*.deb >/dev/null 2>&1 && return 0
            apt-get download "$1" >/dev/null 2>&1 || {
                _dk_say "apt-get download $1 failed; updating the package lists"
                apt-get update -qq && apt-get download "$1" >/dev/null
            }
        }
        _dk_say "downloading Debian's kernel (linux-image-amd64, about 70 MB) into $_dk_cache, once..."
        _dk_download linux-image-amd64
        meta=$(ls -t linux-image-amd64_*.deb | head -n1)
        # The meta package depends on the versioned one, e.g. linux-image-6.1.0-56-amd64.
        pkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' |
            sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
        [ -n "$pkg" ] || { _dk_say "cannot tell the kernel package from $meta"; exit 1; }
        _dk_download "$pkg"
        rm -rf "$KERNEL_DIR.tmp" && mkdir -p "$KERNEL_DIR.tmp"
        dpkg-deb -x "$(ls -t "${pkg}"_*.deb | head -n1)" "$KERNEL_DIR.tmp"
        release=$(ls "$KERNEL_DIR.tmp/lib/modules" | head -n1)
        # The package leaves modules.dep to its postinst.
        depmod -b "$KERNEL_DIR.tmp" "$release"
        cp "$KERNEL_DIR.tmp/boot/vmlinuz-$release" "$KERNEL_DIR.tmp/vmlinuz"
        echo "$release" >"$KERNEL_DIR.tmp/release"
        rm -rf "$KERNEL_DIR" && mv "$KERNEL_DIR.tmp" "$KERNEL_DIR"
        _dk_say "kernel $release unpacked in $KERNEL_DIR"
    ) 9>"$_dk_cache/.lock"
    KERNEL_RELEASE=$(cat "$KERNEL_DIR/release")
}

# kernel_modules KERNEL_DIR RELEASE ROOT NAMES...: copies the modules NAMES and everything
# they depend on to ROOT/lib/modules/RELEASE, uncompressed (Debian's 6.1 kernel cannot
# decompress modules itself: no CONFIG_MODULE_DECOMPRESS), with modules.builtin and
# modules.order, then runs depmod on the subset so modules.dep lists exactly these.
kernel_modules() {
    _km_kdir=$1 _km_release=$2 _km_root=$3
    shift 3
    _km_dest=$_km_root/lib/modules/$_km_release
    mkdir -p "$_km_dest"
    for _km_name in "$@"; do
        _km_deps=$(modprobe -d "$_km_kdir" -S "$_km_release" --show-depends "$_km_name") || {
            _dk_say "no module $_km_name in kernel $_km_release"
            return 1
        }
        echo "$_km_deps" |
            while read -r kind path _; do
                [ "$kind" = insmod ] || continue
                rel=${path#"$_km_kdir/lib/modules/$_km_release/"}
                dest=$_km_dest/$rel
                mkdir -p "$(dirname "$dest")"
                case $rel in
                *.ko.xz) xz -dc "$path" >"${dest%.xz}" ;;
                *.ko.zst) zstd -qdc "$path" >"${dest%.zst}" ;;
                *.ko.gz) gzip -dc "$path" >"${dest%.gz}" ;;
                *) cp "$path" "$dest" ;;
                esac
            done
    done
    for f in modules.builtin modules.builtin.modinfo modules.order; do
        cp "$_km_kdir/lib/modules/$_km_release/$f" "$_km_dest/" 2>/dev/null || true
    done
    depmod -b "$_km_root" "$_km_release"
}
