# shellcheck shell=sh
# Sourced by the scripts of scripts/ and examples/ (never run): their prerequisites, checked
# before any work starts and named all at once, with the command that installs them.
#
#   require CMD...         notes each CMD missing from PATH; its Debian package is the one
#                          scripts/debian-packages.txt lists it under (tests/setup.rs checks
#                          that every CMD a script requires is there)
#   require_cargo          notes a missing Rust toolchain (cargo, and the linker `cc`)
#   require_root WHY       notes that the script is not running as root
#   require_note TEXT      notes anything else, said as it is
#   require_also CMD ARGS  notes what another script of ours needs, as run with ARGS (it is
#                          run with REQUIRE_LIST=1 and only lists what it lacks)
#   require_check          if anything was noted: one message naming it all, the apt-get
#                          line for the Debian packages among it, exit 1
#   say TEXT               one line on stderr, prefixed with the script's name
#
# With REQUIRE_LIST=1 in the environment, require_check prints what was noted (one record a
# line, for require_also) and exits 0 instead: the script does nothing else.
# Sourced by bash scripts too: POSIX sh only, and every name starts with `require`/`_req`.

_req_root=$(cd "$(dirname "$0")/.." && pwd)
_req_prog=$(basename "$0" .sh)
_req_list=$_req_root/scripts/debian-packages.txt
# One record a line: `PACKAGE WHAT` for a missing Debian package (WHAT: the command, or
# what it is for), `- TEXT` for anything else.
_req_missing=

say() { echo "$_req_prog: $*" >&2; }

_req_add() {
    _req_missing="$_req_missing$1
"
}

require() {
    for _req_cmd in "$@"; do
        command -v "$_req_cmd" >/dev/null 2>&1 && continue
        _req_pkg=$(awk -v c="$_req_cmd" '{ sub(/#.*/, "") }
            NF > 1 { for (i = 2; i <= NF; i++) if ($i == c) { print $1; exit } }' "$_req_list")
        if [ -z "$_req_pkg" ]; then
            # A script asking for a command the list does not know: its bug, said plainly.
            _req_add "- $_req_cmd (not in scripts/debian-packages.txt: add it there)"
        else
            _req_add "$_req_pkg $_req_cmd"
        fi
    done
}

require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        _req_ver=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$_req_root/rust-toolchain.toml")
        _req_add "- cargo: the Rust toolchain $_req_ver, from rustup (README.md, Set-up):"
        _req_add "-   curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain $_req_ver -c rustfmt -c clippy"
        _req_add "-   . \"\$HOME/.cargo/env\""
    fi
    require cc
    # The linker's C library files (crt1.o, libc.so): without them every link fails.
    dpkg-query -W -f '${Status}' libc6-dev 2>/dev/null | grep -q 'ok installed' ||
        _req_add "libc6-dev the C library files cc links with"
}

require_root() {
    [ "$(id -u)" = 0 ] || _req_add "- root: run it as root ($1)"
}

require_note() {
    _req_add "- $1"
}

require_also() {
    _req_more=$(REQUIRE_LIST=1 "$@") || {
        _req_add "- $1 could not list what it needs"
        return 0
    }
    [ -z "$_req_more" ] || _req_add "$_req_more"
}

require_check() {
    # Each record once, in the order noted.
    _req_missing=$(printf '%s' "$_req_missing" | awk 'NF && !seen[$0]++')
    if [ -n "${REQUIRE_LIST:-}" ]; then
        [ -z "$_req_missing" ] || printf '%s\n' "$_req_missing"
        exit 0
    fi
    [ -n "$_req_missing" ] || return 0
    {
        echo "$_req_prog: cannot start, missing:"
        printf '%s\n' "$_req_missing" | awk '
            $1 == "-" { sub(/^- /, ""); print "  " $0; next }
            { pkg = $1; sub(/^[^ ]+ /, ""); print "  " $0 " (Debian package " pkg ")" }'
        _req_pkgs=$(printf '%s\n' "$_req_missing" |
            awk '$1 != "-" && !seen[$1]++ { printf "%s%s", sep, $1; sep = " " }')
        if [ -n "$_req_pkgs" ]; then
            echo "$_req_prog: install the packages with:"
            echo "  apt-get update && apt-get install -y --no-install-recommends $_req_pkgs"
        fi
    } >&2
    exit 1
}
