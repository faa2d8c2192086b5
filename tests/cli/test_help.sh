# Every subcommand answers --help, and the program's own usage errors are one
# line with a non-zero status.
source "$(dirname "$0")/lib.sh"

run --help
main_help=$out
contains "$main_help" "usage: flowlib COMMAND"
for cmd in train eval sample info data plot; do
    contains "$main_help" "  $cmd "
    run "$cmd" --help
    contains "$out" "^usage: flowlib $cmd"
    contains "$out" "-h, --help"
    run help "$cmd"
    contains "$out" "^usage: flowlib $cmd"
done
run --version
contains "$out" "^flowlib [0-9]+\.[0-9]+\.[0-9]+"

rc=0; "$FLOWLIB" >/dev/null 2>&1 || rc=$?; ((rc == 2)) || die "no command: status $rc"
rc=0; "$FLOWLIB" frobnicate 2>err.txt || rc=$?
((rc == 2)) && grep -q 'unknown command "frobnicate"' err.txt || die "unknown command: status $rc"

fails 'unknown option --bogus' data two_moons --bogus -o x.csv
fails '--count needs a value' data two_moons -o x.csv --count
fails '--count: "many" is not an integer' data two_moons -o x.csv -n many
fails 'unknown data set "nope"' data nope -o x.csv
fails 'missing -o FILE' data two_moons
fails 'x.txt: unknown output type' data two_moons -o x.txt
fails 'missing MODEL' sample -o x.npy
fails 'missing -o MODEL' train two_moons
fails 'nope.npy: no such file' train nope.npy -o m.safetensors
fails 'nope: no such file, nor a built-in data set' train nope -o m.safetensors
fails '--device: unknown device "tpu"' train two_moons -o m.safetensors --device tpu
fails 'missing.safetensors: no such file' info missing.safetensors
fails 'missing MODEL and DATA' eval
done_ok
