#!/usr/bin/python3
"""flowlib vs PyTorch, alternating in one run, as ratios of medians.

  /usr/bin/python3 bench/compare.py [--bench build/bench/flowlib_bench]
        [--coretype inherit|unset|NAME] [--models realnvp,nice,maf,iaf,made,glow]
        [--dims 8,64] [--hidden 64,256] [--batch 256,4096] [--threads 1,2]
        [--layers K] [--ops train_step,log_prob,sample] [--rounds 5]
        [--round-time 0.2] [--context C] [--json results.jsonl] [--no-check]
        [--no-pin] [--quick]

Models: realnvp, nice, realnvp_bn, maf, iaf, made (MADE MoG, 10 components
per dimension), glow, planar, radial (K = 8 layers, 5 MADE layers for maf /
iaf, made's one MADE; planar and radial have no hidden width, so they run
once per dimension and batch, H shown as "-"). --quick keeps the
small configurations only (H 64, batch 256, 1 thread: both dims) of every
model the grid names, for a run of a few minutes. --context C > 0 runs the
conditional form of every model with a conditioner (context_dim C, one row
of C context values per data row; planar and radial stay as they are).

First checks that both compute the same thing (flowlib_bench --check writes a
trained model and flowlib's outputs; torch_reference.check loads the same
weights into PyTorch and compares). Then, per configuration and op, both are
warmed up and timed in alternating rounds (flowlib in a `flowlib_bench
--serve` child process, PyTorch in this process), and the table gives the
medians and ratio = flowlib throughput / PyTorch throughput. The float32 GEMM
rate of the machine (1024^3 sgemm, same OpenBLAS) is measured the same way,
and the last column gives a train step's dense-layer GFLOP/s (6 x weights x
batch) as a share of the sgemm rate measured in the same alternating rounds
(same thread count), since the load of a shared machine drifts. A summary
of the issue's targets follows the table.

Both programs run on the same CPUs: the last T of those this process may
use, for T threads (--no-pin leaves them to the scheduler). On a shared
host one vCPU can lose 30-40% of its speed for minutes while the other
keeps it (sgemm loops pinned to each of the two, side by side: 85-96
against 121-142 GFLOP/s); left to the scheduler, the two programs'
one-thread runs could sit on different vCPUs for a whole run, and one of
them took all the loss (NICE D = 8's large log_prob read 2.06x and 1.13x
in two runs a minute apart, 1.39-1.59x in six runs with both on one CPU).

--coretype sets OPENBLAS_CORETYPE for both programs ("unset" removes it, so
OpenBLAS picks its kernels for the CPU; "inherit", the default, keeps the
environment as it is). Both use the same libopenblas, so both get the same.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="the flowlib_bench program (default: search build*/bench)")
    ap.add_argument("--coretype", default="inherit")
    ap.add_argument("--models", default="realnvp,nice,maf,iaf,made,glow")
    ap.add_argument("--dims", default="8,64")
    ap.add_argument("--hidden", default="64,256")
    ap.add_argument("--batch", default="256,4096")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--layers", type=int, default=0,
                    help="K (default: 8 layers, 5 MADE layers for maf / iaf)")
    ap.add_argument("--ops", default="train_step,log_prob,sample")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-time", type=float, default=0.2)
    ap.add_argument("--context", type=int, default=0,
                    help="context_dim of the models with a conditioner (0: unconditional)")
    ap.add_argument("--json", help="also write one JSON line per measurement here")
    ap.add_argument("--no-check", action="store_true", help="skip the equality check")
    ap.add_argument("--no-gemm", action="store_true", help="skip the sgemm rate")
    ap.add_argument("--no-pin", action="store_true",
                    help="leave both programs' threads to the scheduler")
    ap.add_argument("--quick", action="store_true",
                    help="small configurations only: --hidden 64 --batch 256 --threads 1")
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.batch, args.threads = "64", "256", "1"
    return args


def find_bench(path):
    if path:
        return path
    root = os.path.dirname(HERE)
    for d in sorted(os.listdir(root)):
        p = os.path.join(root, d, "bench", "flowlib_bench")
        if d.startswith("build") and os.access(p, os.X_OK):
            return p
    sys.exit("compare.py: no flowlib_bench found; pass --bench")


class FlowlibServer:
    def __init__(self, bench):
        self.proc = subprocess.Popen([bench, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if not reply or reply.startswith("error"):
            sys.exit("flowlib_bench: %r -> %r" % (line, reply))
        return reply

    def setup(self, model, dim, hidden, batch, threads, layers, context):
        return int(self.ask("setup %s %d %d %d %d %d %d"
                            % (model, dim, hidden, batch, threads, layers, context)).split()[1])

    def run(self, op, calls):
        return float(self.ask("time %s %d" % (op, calls)))

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def pin(pids, cpus):
    """Every thread of the processes pids onto cpus (threads they start
    later inherit it from the starting thread)."""
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except (ProcessLookupError, FileNotFoundError):
                pass  # a thread that ended meanwhile


def calibrate(run, op, round_time):
    """Warm up (>= 2 calls, >= 0.1 s); return calls per round of ~round_time."""
    calls, spent = 0, 0.0
    while calls < 2 or spent < min(0.1, 2 * round_time):
        spent += run(op, 1)
        calls += 1
    return max(1, int(round_time / (spent / calls)))


def alternate(run_a, run_b, op, rounds, round_time, extra=None):
    """Per-call medians of a and b (and of extra, an (op, run) pair timed in
    the same rounds), timed in alternating rounds."""
    runners = [(run_a, op), (run_b, op)] + ([(extra[1], extra[0])] if extra else [])
    calls = [calibrate(run, o, round_time) for run, o in runners]
    times = [[] for _ in runners]
    for r in range(rounds):
        # Rotate who goes first, so no one always follows the same program.
        for q in range(len(runners)):
            k = (q + r) % len(runners)
            run, o = runners[k]
            times[k].append(run(o, calls[k]) / calls[k])
    meds = [statistics.median(t) for t in times]
    return meds, times


def summarize(results):
    """The issue's targets, per model: small = hidden 64, batch 256 (train step
    and log_prob >= 3x PyTorch, and MAF sampling); large = hidden 256, batch
    4096 (>= 1.3x, and a train step at >= 75% of the sgemm rate). Models
    without a hidden width (H None) are classed by batch alone."""
    print("\n# targets (min ratio over dims and threads; met / total)")
    for model in sorted({r[0] for r in results}):
        rows = [r for r in results if r[0] == model]
        small_ops = ("train_step", "log_prob") + (("sample",) if model == "maf" else ())
        small = [r for r in rows if r[2] in (64, None) and r[3] == 256 and r[7] in small_ops]
        large = [r for r in rows if r[2] in (256, None) and r[3] == 4096]
        share = [r for r in large if r[7] == "train_step" and r[6] == r[6]]
        if small:
            print("#   %s small: %s >= 3x: %d/%d (min %.2fx)"
                  % (model, "/".join(small_ops), sum(r[5] >= 3 for r in small), len(small),
                     min(r[5] for r in small)))
        if large:
            print("#   %s large: >= 1.3x: %d/%d (min %.2fx)"
                  % (model, sum(r[5] >= 1.3 for r in large), len(large), min(r[5] for r in large)))
        if share:
            print("#   %s large: train step >= 75%% of sgemm: %d/%d (min %.0f%%)"
                  % (model, sum(r[6] >= 75 for r in share), len(share), min(r[6] for r in share)))


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs, %s" % (cpu, os.cpu_count(), platform.platform())


def steady_malloc():
    """Fixed glibc malloc thresholds for PyTorch (this process).

    glibc serves blocks above its mmap threshold with fresh mmaps, whose
    pages fault in again on every use, and raises the threshold as such
    blocks are freed: the same PyTorch step then ran at two speeds depending
    on what ran before it (MADE MoG D = 64's train step 9.7 ms after a run
    start, 5.3 ms after other models). With fixed thresholds PyTorch gets
    its fast case every time. flowlib allocates nothing per call.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest
    libc.mallopt(m_trim_threshold, 256 << 20)


def main():
    args = parse_args()
    # OpenBLAS reads OPENBLAS_CORETYPE when it loads: set it before torch is
    # imported (re-executing this script) and in the child's environment.
    if args.coretype != "inherit":
        want = None if args.coretype == "unset" else args.coretype
        if os.environ.get("OPENBLAS_CORETYPE") != want:
            env = dict(os.environ)
            env.pop("OPENBLAS_CORETYPE", None)
            if want:
                env["OPENBLAS_CORETYPE"] = want
            os.execve(sys.executable, [sys.executable] + sys.argv, env)

    steady_malloc()
    sys.path.insert(0, HERE)
    import torch
    import torch_reference as ref

    bench = find_bench(args.bench)
    ints = lambda s: [int(v) for v in s.split(",") if v]
    models, dims, hiddens = args.models.split(","), ints(args.dims), ints(args.hidden)
    batches, threads_list, ops = ints(args.batch), ints(args.threads), args.ops.split(",")
    out = open(args.json, "w") if args.json else None

    def emit(rec):
        if out:
            out.write(json.dumps(rec) + "\n")
            out.flush()

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print("# machine: %s" % machine())
    print("# OPENBLAS_CORETYPE=%s, torch %s, load average at start %s"
          % (os.environ.get("OPENBLAS_CORETYPE", "(unset)"), torch.__version__, " ".join(load)))
    print("# flowlib_bench: %s; %d alternating rounds of ~%.2f s, medians"
          % (bench, args.rounds, args.round_time))
    if args.context:
        print("# conditional models: context_dim %d" % args.context)

    unknown = [m for m in models if m not in ref.MODELS]
    if unknown:
        sys.exit("compare.py: no PyTorch reference for %s (known: %s)"
                 % (", ".join(unknown), ", ".join(ref.MODELS)))
    if not args.no_check:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([bench, "--check", d], check=True, stdout=subprocess.DEVNULL)
            saved = sys.stdout
            sys.stdout = open(os.devnull, "w")
            try:
                # The conditional forms are checked when they are timed.
                same = ref.check(d, [ref.conditional_name(m) if ref.context_of(m, args.context)
                                     else m for m in models])
            finally:
                sys.stdout.close()
                sys.stdout = saved
        print("# equality check (same weights: log_prob, forward, inverse, gradients, Adam step): %s"
              % ("passed" if same else "FAILED"))
        if not same:
            sys.exit("the two implementations disagree: run torch_reference.py --check")

    server = FlowlibServer(bench)
    allowed = sorted(os.sched_getaffinity(0))

    def use_threads(t):
        """Both programs onto the same t CPUs, PyTorch onto t threads."""
        if not args.no_pin:
            pin([os.getpid(), server.proc.pid], allowed[-t:])
        torch.set_num_threads(t)

    if args.no_pin:
        print("# threads left to the scheduler (--no-pin)")
    else:
        print("# both programs pinned to the last T of CPUs %s for T threads"
              % ",".join(map(str, allowed)))
    gemm = {}
    if not args.no_gemm:
        n = 1024
        a, b = torch.rand(n, n), torch.rand(n, n)
        for t in threads_list:
            use_threads(t)

            def torch_mm(_, calls):
                start = time.perf_counter()
                for _ in range(calls):
                    torch.mm(a, b)
                return time.perf_counter() - start

            def flowlib_mm(_, calls, t=t):
                return float(server.ask("gemm %d %d %d" % (n, calls, t))) * calls

            (tf, tt), _ = alternate(flowlib_mm, torch_mm, "sgemm", args.rounds, args.round_time)
            gemm[t] = 2.0 * n ** 3 / tf / 1e9
            print("# sgemm 1024^3, %d thread(s): %.1f GFLOP/s via OpenBLAS, %.1f via torch.mm"
                  % (t, gemm[t], 2.0 * n ** 3 / tt / 1e9))
            emit({"op": "sgemm", "n": n, "threads": t, "flowlib_gflops": gemm[t],
                  "torch_gflops": 2.0 * n ** 3 / tt / 1e9})

    results = []
    header = ("| model | D | H | batch | thr | op | flowlib ms | torch ms | ratio | "
              "flowlib GFLOP/s | train step / sgemm GFLOP/s |")
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for model in models:
        layers = args.layers or ref.default_layers(model)
        for dim in dims:
            # The hidden width means nothing to planar / radial: run once.
            for hidden in hiddens if ref.has_hidden(model) else hiddens[:1]:
                for batch in batches:
                    for t in threads_list:
                        context = ref.context_of(model, args.context)
                        use_threads(t)
                        params = server.setup(model, dim, hidden, batch, t, layers, context)
                        tb = ref.TorchBench(model, dim, hidden, batch, t, layers, context)
                        for op in ops:
                            # A train step is also compared with the machine's
                            # sgemm rate measured in the same rounds (the load
                            # of a shared machine changes from minute to minute).
                            extra = None
                            if op == "train_step" and not args.no_gemm:
                                extra = ("gemm", lambda _, calls, t=t: calls * float(
                                    server.ask("gemm 1024 %d %d" % (calls, t))))
                            meds, times = alternate(server.run, tb.run, op, args.rounds,
                                                    args.round_time, extra)
                            mf, mt = meds[0], meds[1]
                            tf, tt = times[0], times[1]
                            flops = (6.0 if op == "train_step" else 2.0) * \
                                ref.dense_weights(model, dim, hidden, layers, context) * batch
                            gf = flops / mf / 1e9
                            rate = 2.0 * 1024 ** 3 / meds[2] / 1e9 if extra else gemm.get(t)
                            # No GEMM work (planar, radial): no share to report.
                            share = 100.0 * gf / rate if rate and flops else float("nan")
                            h = hidden if ref.has_hidden(model) else None
                            results.append((model, dim, h, batch, t, mt / mf,
                                            share if op == "train_step" else None, op))
                            print("| %s | %d | %s | %d | %d | %s | %.3f | %.3f | %.2f | %.1f | %s |"
                                  % (model, dim, h or "-", batch, t, op, 1e3 * mf, 1e3 * mt,
                                     mt / mf, gf, "%.0f%% of %.0f" % (share, rate)
                                     if op == "train_step" and rate and flops else ""),
                                  flush=True)
                            emit({"model": model, "dim": dim, "hidden": h, "batch": batch,
                                  "threads": t, "layers": layers, "context": context, "op": op,
                                  "params": params, "flowlib_ms": 1e3 * mf, "torch_ms": 1e3 * mt,
                                  "ratio": mt / mf, "flowlib_gflops": gf,
                                  "gemm_share": share / 100.0, "gemm_gflops": rate,
                                  "flowlib_samples_per_s": batch / mf,
                                  "torch_samples_per_s": batch / mt,
                                  "flowlib_rounds_ms": [1e3 * v for v in tf],
                                  "torch_rounds_ms": [1e3 * v for v in tt],
                                  "coretype": os.environ.get("OPENBLAS_CORETYPE", "")})
                        del tb
    server.close()
    summarize(results)
    with open("/proc/loadavg") as f:
        print("\n# load average at end %s" % " ".join(f.read().split()[:3]))


if __name__ == "__main__":
    main()
