#!/usr/bin/env bash
# Per-call overhead of each binding against the C call: log_prob of 1 row
# (plus flow_model_dim, a call that does no work) on a tiny model, so the
# time is mostly the crossing itself. A benchmark, not a test: run it by hand.
#
#   bash bench/bindings/run.sh [BUILD_DIR]     (default build/; build it first)
#
# The machines are noisy: the programs run in turns, REPEAT times (default 3),
# and the table shows each row's median. One OpenMP thread, as the C library
# would use for a 1-row call anyway.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
repeat=${REPEAT:-3}
spec='{"preset":"realnvp","dim":2,"layers":2,"hidden":[8]}'
calls=${CALLS:-20000}
rounds=7
python=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -std=c99 "$here/overhead.c" -I"$root/include" -I"$build/include" \
   -L"$build/lib" -Wl,-rpath,"$build/lib" -lflowlib -o "$tmp/overhead"
runs=("$tmp/overhead")
if [[ -d $build/bindings/python/flowlib ]]; then
    runs+=("env PYTHONPATH=$build/bindings/python $python $here/overhead.py")
fi
if [[ -f $build/bindings/java/flowlib.jar ]]; then
    runs+=("java -cp $build/bindings/java/flowlib.jar $here/Overhead.java")
fi
if [[ -f $build/bindings/csharp/FlowLib.dll ]]; then
    mcs -nologo -optimize+ -r:"$build/bindings/csharp/FlowLib.dll" -out:"$tmp/Overhead.exe" "$here/Overhead.cs"
    runs+=("env MONO_PATH=$build/bindings/csharp mono $tmp/Overhead.exe")
fi

for ((i = 0; i < repeat; i++)); do
    for run in "${runs[@]}"; do
        $run "$spec" "$calls" "$rounds"
    done
done > "$tmp/results.jsonl"

"$python" - "$tmp/results.jsonl" <<'PY'
import collections, json, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["lang"], r["layer"], r["call"])].append(r["ns"])
med = {k: statistics.median(v) for k, v in rows.items()}
base = {call: ns for (lang, _, call), ns in med.items() if lang == "C"}
print(f"{'language':<8} {'layer':<9} {'call':<15} {'ns/call':>9} {'overhead vs C':>14}")
for (lang, layer, call), ns in med.items():
    extra = "" if lang == "C" else f"{ns - base[call]:+.0f} ns"
    print(f"{lang:<8} {layer:<9} {call:<15} {ns:>9.0f} {extra:>14}")
PY
