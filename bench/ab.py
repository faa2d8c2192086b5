#!/usr/bin/python3
"""One build of libflowlib against another, alternating in one run.

  /usr/bin/python3 bench/ab.py [--bench build/bench/flowlib_bench] [--runs 10]
        OLD_LIB_DIR NEW_LIB_DIR [...] -- FLOWLIB_BENCH_ARGS

Each LIB_DIR holds a libflowlib.so (a build's lib/ folder, or a copy of it
taken before a change). The same flowlib_bench program runs once per build
per run, the order of the builds reversed every other run, with
LD_LIBRARY_PATH pointing at that build's folder: the loader searches it
before the program's RUNPATH, so each run times the library it names, not
the one the program was linked against. The table gives, per configuration
and op, each build's best and median ms and best(first) / best(other): > 1
means the other build is faster.

Every run is pinned to the last T CPUs this process may use, T the largest
thread count in the flowlib_bench arguments (--threads; when not given, 2,
or 1 with --quick), so that one-thread runs of every build sit on the same
CPU: on a shared host one vCPU can be 30-40% slower than the other for
minutes (see compare.py).

Why not two runs of compare.py: on a shared machine the speed drifts by
10-30% within minutes, more than most changes are worth; alternating short
runs put both builds under the same drift. The runs get
OMP_WAIT_POLICY=passive unless the environment sets it: threads that spin
after a run cannot then take the core the next build's run needs (see the
README's note on two threads).

Example: the effect of a change on the small NICE configurations:

  cp -r build/lib /tmp/lib-before        # before the change
  ninja -C build                         # after it
  /usr/bin/python3 bench/ab.py /tmp/lib-before build/lib -- \\
      --models nice --hidden 64 --batch 256 --threads 1 --ops log_prob --rounds 5
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: ab.py [--bench B] [--runs N] LIB_DIR LIB_DIR [...] -- FLOWLIB_BENCH_ARGS")
    split = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bench", "flowlib_bench"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("libs", nargs="+")
    args = ap.parse_args(argv[:split])
    if len(args.libs) < 2:
        ap.error("give at least two library folders")
    for lib in args.libs:
        if not os.path.exists(os.path.join(lib, "libflowlib.so.0")):
            ap.error(lib + " holds no libflowlib.so.0")
    args.bench_args = argv[split + 1:]
    return args


def run_cpus(bench_args):
    """The CPUs every run gets: the last T allowed, T = the most threads asked
    (flowlib_bench's default grid: 1,2; --quick: 1)."""
    threads = "1" if "--quick" in bench_args else "1,2"
    for i, a in enumerate(bench_args[:-1]):
        if a == "--threads":
            threads = bench_args[i + 1]
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-max(int(t) for t in threads.split(",") if t):]


def run_once(bench, lib, bench_args, cpus):
    """ms of each (config, op) line of one flowlib_bench run against lib."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.path.abspath(lib)
    env.setdefault("OMP_WAIT_POLICY", "passive")
    out = subprocess.run([bench] + bench_args, capture_output=True, text=True, env=env,
                         check=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus)).stdout
    times = {}
    for line in out.splitlines():
        if line.startswith("{") and '"op"' in line:
            j = json.loads(line)
            key = (j["model"], j["dim"], j.get("hidden", "-"), j["batch"], j["threads"], j["op"])
            times[key] = j["ms"]
    return times


def main():
    args = parse_args()
    ms = collections.defaultdict(list)  # (key, lib) -> ms of each run
    cpus = run_cpus(args.bench_args)
    print("# every run on CPU(s) %s" % ",".join(map(str, cpus)))
    for run in range(args.runs):
        order = args.libs if run % 2 == 0 else args.libs[::-1]
        for lib in order:
            for key, t in run_once(args.bench, lib, args.bench_args, cpus).items():
                ms[key, lib].append(t)
        print("# run %d of %d done" % (run + 1, args.runs), file=sys.stderr)
    keys = sorted({key for key, _ in ms}, key=str)
    names = [os.path.basename(os.path.normpath(lib)) or lib for lib in args.libs]
    print("| model | D | H | batch | thr | op | " +
          " | ".join("%s best / median ms" % n for n in names) + " | " +
          " | ".join("%s / %s" % (names[0], n) for n in names[1:]) + " |")
    print("|---" * (6 + 2 * len(names) - 1) + "|")
    for key in keys:
        best = [min(ms[key, lib]) for lib in args.libs]
        cells = ["%.4f / %.4f" % (min(ms[key, lib]), statistics.median(ms[key, lib]))
                 for lib in args.libs]
        ratios = ["%.3f" % (best[0] / b) for b in best[1:]]
        print("| " + " | ".join(str(k) for k in key) + " | " + " | ".join(cells) + " | " +
              " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
