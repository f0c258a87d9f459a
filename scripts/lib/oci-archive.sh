#!/bin/sh
# Makes an OCI image layout tar from a directory tree, offline, with tar, gzip and sha256sum
# only: one gzip'd layer, an image config and a manifest, named in index.json by the
# `io.containerd.image.name` annotation, which is what `linuxkit cache import` names the
# image after (an archive without it imports blobs but no name).
# The same tree gives the same archive byte for byte: fixed times, owners and order.
#
# Usage: scripts/lib/oci-archive.sh [OPTIONS] ROOT REF OUT.tar
#   ROOT                  the image's file system (owners and modes kept, times and owners
#                         zeroed: every file belongs to root)
#   REF                   e.g. local/busybox:1 (a reference without a registry gets
#                         docker.io/, as `linuxkit build` resolves the names of a YAML)
#   --cmd JSON            the config's Cmd, a JSON array (default none)
#   --env JSON            the config's Env, a JSON array of strings (default a PATH)
#   --label KEY=VALUE     a label (repeatable; VALUE is a string, escaped here)
#   --moby-config JSON    the `org.mobyproject.config` label: defaults for the YAML's keys
#                         (`{"readonly": true, "binds": [...]}`), as LinuxKit packages carry
#   --arch ARCH           amd64 (default), arm64, ...
set -eu
log() { echo "oci-archive: $*" >&2; }
missing=
for t in tar gzip sha256sum awk find sort mktemp; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -z "$missing" ] || { log "missing:$missing"; exit 1; }

cmd= env='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]' arch=amd64
labels=
# A JSON string of $1 (backslash, quote, tab and newlines escaped).
json_str() {
    printf '%s' "$1" | awk 'BEGIN { ORS = ""; print "\"" }
        { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r")
          if (NR > 1) print "\\n"; print }
        END { print "\"" }'
}
add_label() {
    labels="${labels:+$labels,}$(json_str "$1"):$(json_str "$2")"
}
while [ $# -gt 0 ]; do
    case $1 in
    --cmd) cmd=$2; shift 2 ;;
    --env) env=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --label)
        case $2 in *=*) ;; *) log "--label wants KEY=VALUE, not $2"; exit 2 ;; esac
        add_label "${2%%=*}" "${2#*=}"; shift 2 ;;
    --moby-config) add_label org.mobyproject.config "$2"; shift 2 ;;
    --) shift; break ;;
    -*) log "unknown option $1"; exit 2 ;;
    *) break ;;
    esac
done
[ $# -eq 3 ] || { echo "usage: $0 [--cmd JSON] [--env JSON] [--label K=V]... [--moby-config JSON] [--arch ARCH] ROOT REF OUT.tar" >&2; exit 2; }
root=$1 ref=$2 out=$3
[ -d "$root" ] || { log "$root is not a directory"; exit 1; }

# The full reference: registry, repository, tag.
case ${ref%%/*} in
*.*|*:*|localhost) full=$ref ;;
*) full=docker.io/$ref ;;
esac
case ${full##*/} in
*:*) tag=${full##*:} ;;
*) tag=latest; full=$full:latest ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layout/blobs/sha256"
blobs=$work/layout/blobs/sha256

# A reproducible tar of a directory's contents: names without `./`, sorted, every entry
# owned by 0:0 with time 0.
tar_tree() {
    (cd "$1" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
        tar --null --no-recursion -T - --format=gnu --numeric-owner --owner=0 --group=0 \
            --mtime=@0 -cf -)
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c <"$1" | tr -d ' '; }
# Moves a file into blobs/ under its digest and prints `DIGEST SIZE`.
blob() {
    d=$(sha "$1") s=$(size "$1")
    mv "$1" "$blobs/$d"
    echo "$d $s"
}

tar_tree "$root" >"$work/layer.tar"
diff_id=$(sha "$work/layer.tar")
gzip -n -6 <"$work/layer.tar" >"$work/layer.tar.gz"
rm "$work/layer.tar"
set -- $(blob "$work/layer.tar.gz")
layer_digest=$1 layer_size=$2

{
    printf '{"architecture":"%s","os":"linux","config":{' "$arch"
    printf '"Env":%s' "$env"
    [ -z "$cmd" ] || printf ',"Cmd":%s' "$cmd"
    [ -z "$labels" ] || printf ',"Labels":{%s}' "$labels"
    printf ',"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id"
} >"$work/config.json"
set -- $(blob "$work/config.json")
config_digest=$1 config_size=$2

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
set -- $(blob "$work/manifest.json")
manifest_digest=$1 manifest_size=$2

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":%s,"org.opencontainers.image.ref.name":%s},"platform":{"architecture":"%s","os":"linux"}}]}' \
    "$manifest_digest" "$manifest_size" "$(json_str "$full")" "$(json_str "$tag")" "$arch" \
    >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

mkdir -p "$(dirname "$out")"
tar_tree "$work/layout" >"$out.tmp"
mv "$out.tmp" "$out"
log "$full: $out (layer $(size "$blobs/$layer_digest") bytes, manifest sha256:$manifest_digest)"
