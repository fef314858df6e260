#!/usr/bin/env python3
"""Predicts the wall time of Burda et al.'s Table 1 schedule on N nodes.

Step-time model for N nodes, each a 2-core machine like this one running one
rank with 2 workers, batch B = 100 split over the nodes:

    t(N) = c(ceil(B / N))                       compute of one node's share, measured here
         + 2 (N - 1) alpha + 2 (N - 1) / N * S / beta     the gradient sum (ordered reducer:
                                                 alltoall + allgather, the traffic of a ring allreduce)
         + 2 ceil(log2 N) alpha                 the two small exchanges of a step
                                                 (bounds and failure flags; the stop flag)

S is the gradient in bytes (4 x parameters). c(b) is `iwae-bench speed` at
batch b on this machine (the faster of 2 workers and 1 worker with 2 BLAS
threads). alpha and beta are assumptions about the interconnect, stated
below; on this machine the same formula with the fitted shared-memory
alpha and beta is checked against the measured 2-rank step.

Usage (after `swift build -c release --traits MPI`):
    python3 Benchmarks/scaling-model.py            # runs the benchmarks it needs (~5 minutes)
"""
import json
import math
import subprocess
import sys

BENCH = ".build/release/iwae-bench"
STEPS_PER_MODEL = 3280 * 60000 // 100   # the paper's 3,280 passes over 60,000 images, batch 100
INTERCONNECTS = [
    # name, alpha (s), beta (bytes/s)
    ("10 GbE, TCP (alpha 30 us, 1.1 GB/s)", 30e-6, 1.1e9),
    ("InfiniBand EDR 100 Gb/s (alpha 1.5 us, 11 GB/s)", 1.5e-6, 11e9),
]
NODES = [1, 8, 32]


def rows(arguments):
    out = subprocess.run([BENCH] + arguments + ["--json"], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    batches = sorted({math.ceil(100 / n) for n in NODES})
    compute = {}     # (layers, batch, k) -> seconds per step on one node
    parameters = {1: 425284, 2: 521084}
    for layers in (1, 2):
        for r in rows(["speed", "--batches", ",".join(map(str, batches)), "--ks", "1,5,50",
                       "--layers", str(layers), "--eval-images", "0", "--seconds", "1.5"]):
            if r.get("case") == "train_step":
                compute[(layers, r["batch"], r["k"])] = r["ms_per_step"] / 1e3
    local = [r for r in rows(["scaling", "--reducers", "ordered", "--rounds", "3", "--seconds", "2"])]
    step = next(r for r in local if r["case"] == "scaling" and r["k"] == 5)
    fit = next(r for r in local if r["case"] == "sum_cost")
    alpha, beta = fit["latency_us"] * 1e-6, fit["gb_per_s"] * 1e9
    S = 4 * step["parameters"]
    print(f"fit on this machine (2 ranks, shared memory): alpha = {alpha*1e6:.1f} us, 1/beta = {beta/1e9:.2f} GB/s")
    predicted = step["single_ms_per_step"] / 1e3 + 2 * alpha + S / beta + 2 * alpha
    print(f"check, B = 100, K = 5: model {predicted*1e3:.3f} ms/step (1-process step + sum) "
          f"vs measured {step['ranks_ms_per_step']:.3f} ms/step on 2 ranks")

    def t(layers, k, n, a, b):
        share = math.ceil(100 / n)
        s = 4 * parameters[layers]
        exchange = 0 if n == 1 else 2 * (n - 1) * a + 2 * (n - 1) / n * s / b + 2 * math.ceil(math.log2(n)) * a
        return compute[(layers, share, k)] + exchange

    for name, a, b in INTERCONNECTS:
        print(f"\nnodes: 2-core AMD EPYC (this machine class), one rank x 2 workers each; interconnect: {name}")
        print("layers  K   " + "  ".join(f"{n:>3} node{'s' if n > 1 else ' '} ms/step  h/model" for n in NODES))
        totals = {n: 0.0 for n in NODES}
        for layers in (1, 2):
            for k in (1, 5, 50):
                cells = []
                for n in NODES:
                    seconds = t(layers, k, n, a, b)
                    hours = seconds * STEPS_PER_MODEL / 3600
                    totals[n] += 2 * hours   # VAE and IWAE cost the same at the same K
                    cells.append(f"{seconds*1e3:16.3f} {hours:8.2f}")
                print(f"{layers:>6} {k:>3}  " + "  ".join(cells))
        print("Table 1 (12 models): " + ", ".join(f"{n} node{'s' if n > 1 else ''} {totals[n]:.1f} h" for n in NODES))


if __name__ == "__main__":
    sys.exit(main())
