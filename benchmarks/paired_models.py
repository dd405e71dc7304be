"""Two zoo models on the native engine in one process, timed in alternating batches: the ratio of their latencies.

    python benchmarks/paired_models.py ghostnet_100 mobilenet_v3_large [--threads 1] [--rounds 100]

Each round times a batch of runs of one engine, then of the other (the order alternates between rounds), and
keeps the ratio of the two batch medians. On a shared machine whose speed drifts between phases, the median of
those per-round ratios is steadier than ratios of medians taken at different times (for example from two cells
of `ghostfast compare`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import numpy as np
from paired import batch_median

import ghostfast


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--runs", type=int, default=10, help="runs per batch")
    args = p.parse_args(argv)
    engines = [ghostfast.compile(m, threads=args.threads) for m in (args.model_a, args.model_b)]
    inputs = [np.random.default_rng(0).standard_normal((1, *e.input_shape), dtype=np.float32) for e in engines]
    for e, x in zip(engines, inputs):
        for _ in range(10):
            e.run(x)
    medians = ([], [])
    ratios = []
    for r in range(args.rounds):
        cur = [0.0, 0.0]
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            cur[i] = batch_median(lambda: engines[i].run(inputs[i]), args.runs)
            medians[i].append(cur[i])
        ratios.append(cur[0] / cur[1])
    q = statistics.quantiles(ratios, n=4)
    print(f"{args.threads} thread(s): {args.model_a} {statistics.median(medians[0]) * 1e3:.2f} ms, {args.model_b} "
          f"{statistics.median(medians[1]) * 1e3:.2f} ms; {args.model_a} / {args.model_b} per round: median "
          f"{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}, {q[2]:.3f}; {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
