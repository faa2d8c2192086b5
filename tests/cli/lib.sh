# Helpers for the command-line tests. Source it; $1 of the test is the
# flowlib program. Each test runs in its own scratch folder (the cwd).
set -euo pipefail

FLOWLIB=${1:?usage: bash test_x.sh PATH/TO/flowlib}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
checks=0

die() {
    echo "FAIL: $*" >&2
    exit 1
}

# run ARGS...: runs flowlib, which must succeed; its stdout is in $out.
run() {
    local rc=0
    out=$("$FLOWLIB" "$@" 2>err.txt) || rc=$?
    if ((rc != 0)); then
        cat err.txt >&2
        die "flowlib $* exited with $rc"
    fi
    checks=$((checks + 1))
}

# fails PATTERN ARGS...: flowlib must fail with status 1 and print exactly
# one line on stderr that matches PATTERN (grep -E), with nothing like a
# crash or sanitizer report.
fails() {
    local pattern=$1 rc=0
    shift
    "$FLOWLIB" "$@" >/dev/null 2>err.txt || rc=$?
    local lines
    lines=$(wc -l <err.txt)
    ((rc == 1)) || { cat err.txt >&2; die "flowlib $* exited with $rc, expected 1"; }
    ((lines == 1)) || { cat err.txt >&2; die "flowlib $*: $lines lines on stderr, expected one"; }
    grep -Eq -- "$pattern" err.txt || { cat err.txt >&2; die "flowlib $*: message does not match /$pattern/"; }
    if grep -Eqi 'sanitizer|terminate called|what\(\)|core dumped|Aborted' err.txt; then
        cat err.txt >&2
        die "flowlib $*: crashed"
    fi
    checks=$((checks + 1))
}

# contains TEXT PATTERN
contains() {
    grep -Eq -- "$2" <<<"$1" || die "expected /$2/ in: $1"
    checks=$((checks + 1))
}

# Bytes from a printf format (octal/hex escapes), into a file.
bytes() {
    printf "$2" >"$1"
}

# A .npy file: npy FILE DESCR SHAPE DATA_PRINTF_FORMAT (version 1.0 header).
npy() {
    local file=$1 descr=$2 shape=$3 data=$4
    local dict="{'descr': '$descr', 'fortran_order': False, 'shape': $shape, }"
    local total=$((10 + ${#dict} + 1))
    local pad=$(((64 - total % 64) % 64))
    dict="$dict$(printf '%*s' "$pad" '')"
    local len=$((${#dict} + 1))
    {
        printf '\x93NUMPY\x01\x00'
        printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
        printf '%s\n' "$dict"
        printf "$data"
    } >"$file"
}

# An idx file of N images of HxW bytes (value (i*7 + i/13) mod 256):
# idx FILE N H W
idx() {
    local file=$1 n=$2 h=$3 w=$4 esc="\\x00\\x00\\x08\\x03" d i
    for d in "$n" "$h" "$w"; do
        esc+=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((d >> 24 & 255)) $((d >> 16 & 255)) $((d >> 8 & 255)) $((d & 255)))
    done
    for ((i = 0; i < n * h * w; i++)); do esc+=$(printf '\\x%02x' $(((i * 7 + i / 13) % 256))); done
    printf "$esc" >"$file"
}

done_ok() {
    echo "ok: $checks checks"
}
