"""Measured per-op kernel tables against one table for every op: the same model, both engines in one process.

    python benchmarks/kernel_choice_ab.py [--models all] [--threads 1 2] [--rounds 30] [--isa avx512] [--csv out.csv]

``compile(kernel_choice="measure")`` lets an op run on the table of half the vector width where that timed faster
when the engine was built; ``kernel_choice="fixed"`` is the engine as it was before that choice existed. Each round
times a batch of runs of one engine, then of the other (the order alternates), and keeps the ratio of the two batch
medians; the table gives the median ratio (< 1: the measured choice is faster) with its quartiles, and how many ops
moved. On a CPU without a half-width table (no AVX-512) both engines are the same and the ratios are noise.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys

import numpy as np
from paired import batch_median
from tabulate import tabulate

import ghostfast
from ghostfast.comparison import reference_model
from ghostfast.models import registry


def measure(name: str, threads: int, isa: str | None, rounds: int, runs: int) -> dict:
    model = reference_model(name)
    measured = ghostfast.compile(model, threads=threads, isa=isa, kernel_choice="measure")
    fixed = ghostfast.compile(model, threads=threads, isa=isa, kernel_choice="fixed")
    x = np.random.default_rng(0).standard_normal((1, *fixed.input_shape), dtype=np.float32)
    ref = fixed.run(x)
    err = float(np.abs(measured.run(x) - ref).max() / np.abs(ref).max())
    ratios, t_meas, t_fixed = [], [], []
    for r in range(rounds):
        order = (measured, fixed) if r % 2 == 0 else (fixed, measured)
        t = {id(e): batch_median(lambda e=e: e.run(x), runs) for e in order}
        t_meas.append(t[id(measured)])
        t_fixed.append(t[id(fixed)])
        ratios.append(t[id(measured)] / t[id(fixed)])
    q = statistics.quantiles(ratios, n=4)
    moved = sum(a != fixed.isa for a in measured.op_isas)
    return {"model": name, "threads": threads, "isa": fixed.isa, "measured_ms": statistics.median(t_meas) * 1e3,
            "fixed_ms": statistics.median(t_fixed) * 1e3, "ratio": statistics.median(ratios), "q1": q[0],
            "q3": q[2], "ops_moved": moved, "ops": measured.num_ops, "max_rel_diff": err}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated zoo names, or all")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--runs", type=int, default=5, help="runs per batch")
    p.add_argument("--isa", default=None, help="kernel table of both engines (default: the best this CPU runs)")
    p.add_argument("--csv", help="also write the rows here")
    args = p.parse_args(argv)
    names = registry.names() if args.models == "all" else [registry.resolve(m) for m in args.models.split(",")]
    rows = [measure(n, t, args.isa, args.rounds, args.runs) for t in args.threads for n in names]
    print(tabulate([[r["model"], r["threads"], r["isa"], f"{r['measured_ms']:.3f}", f"{r['fixed_ms']:.3f}",
                     f"{r['ratio']:.3f} ({r['q1']:.3f}-{r['q3']:.3f})", f"{r['ops_moved']}/{r['ops']}",
                     f"{r['max_rel_diff']:.1e}"] for r in rows],
                   headers=["model", "threads", "isa", "measured ms", "fixed ms", "measured / fixed (quartiles)",
                            "ops moved", "max rel diff"], tablefmt="github"))
    for t in args.threads:
        sel = [r["ratio"] for r in rows if r["threads"] == t]
        print(f"{t} thread(s): geometric mean of measured / fixed over {len(sel)} models: "
              f"{float(np.exp(np.mean(np.log(sel)))):.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
