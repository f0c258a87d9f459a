# Sourced by the benchmark and stress scripts.
#
# cleanup_work WORK CGROUP [RUNTIME_ROOT...]: at exit, takes away what a run made, best
# effort to the end (a step that fails does not stop the rest): the containers left in each
# runtime root (`runc delete --force`), every mount under WORK, deepest first, and WORK
# itself, and the cgroup CGROUP with everything below it in every hierarchy.
cleanup_work() {
    set +e
    local work=$1 cg=$2 r c m h
    shift 2
    for r in "$@"; do
        [ -d "$r" ] || continue
        for c in "$r"/*; do
            [ -d "$c" ] && runc --root "$r" delete --force "${c##*/}" >/dev/null 2>&1
        done
    done
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$work"
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        [ -d "$h$cg" ] && find "$h$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}
