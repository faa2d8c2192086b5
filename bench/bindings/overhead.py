"""Per-call cost of log_prob on 1 row through the Python binding: the Flow
class (shape checks, numpy output) and the raw SWIG layer (flowlib.capi).
Usage: overhead.py SPEC CALLS ROUNDS; prints JSON lines (median ns/call)."""
import json
import statistics
import sys
import time

import numpy as np

import flowlib
from flowlib import capi


def measure(fn, calls, rounds):
    for _ in range(calls):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter_ns() - t) / calls)
    return statistics.median(times)


def main():
    spec, calls, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with flowlib.Flow(spec, seed=1) as flow:
        x = np.array([[0.5, -0.25]], dtype=np.float32)
        out = np.empty(1, dtype=np.float32)
        m = flow._handle
        rows = [
            ("Flow", "log_prob 1 row", lambda: flow.log_prob(x)),
            ("raw SWIG", "log_prob 1 row", lambda: capi.flow_log_prob(m, x, None, 1, out)),
            ("raw SWIG", "model_dim", lambda: capi.flow_model_dim(m)),
        ]
        for layer, call, fn in rows:
            print(json.dumps({"lang": "Python", "layer": layer, "call": call,
                              "ns": round(measure(fn, calls, rounds), 1)}))


if __name__ == "__main__":
    main()
