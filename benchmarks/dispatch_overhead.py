"""Work outside kernels: the engine's per-op dispatch and thread hand-off cost, against a model's latency.

    python benchmarks/dispatch_overhead.py [--model ghostnet_100] [--threads 1 2] [--rounds 15]

A chain of 200 tiny pointwise ops (8 -> 8 channels on an 8 x 8 map: 512 MACs each, two row tasks per op at
2 threads) costs almost nothing in its kernels, so its time per op is the engine's overhead per op: the
executor's dispatch at 1 thread, plus the wake-up and barrier of one parallel region at 2 threads. That
figure times the number of parallel regions of one run of a model, divided by the model's own median latency,
estimates the share of its latency spent outside kernels. Both are measured interleaved in one run. At 1 thread
every op counts; at more, the engine counts its thread-pool jobs (``Engine.parallel_regions``): ops with a single
task run inline and do not count, SE and Ghost ops count once per phase.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch.nn as nn
from tabulate import tabulate

import ghostfast
from ghostfast.benchmark import prepare_model

CHAIN = 200


def _chain() -> nn.Module:
    layers = []
    for _ in range(CHAIN):
        layers += [nn.Conv2d(8, 8, 1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()  # the engine wants logits


def _regions(engine, x, threads: int) -> int:
    """Parallel regions per run of one image: every op at 1 thread (each is one dispatch), the engine's own count
    of thread-pool jobs at more."""
    if threads == 1:
        return engine.num_ops
    before = engine.parallel_regions
    engine.run(x)
    return engine.parallel_regions - before


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ghostnet_100")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--iters", type=int, default=40)
    args = p.parse_args(argv)
    _, module, x = prepare_model(args.model)
    x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    chain_x = np.random.default_rng(0).standard_normal((1, 8, 8, 8), dtype=np.float32)
    rows = []
    for t in args.threads:
        model = ghostfast.compile(module, x.shape[1:], threads=t)
        chain = ghostfast.compile(_chain(), (8, 8, 8), threads=t)
        model.time(x, 5), chain.time(chain_x, 5)
        m_ns, c_ns = [], []
        for _ in range(args.rounds):
            m_ns.append(np.median(model.time(x, args.iters)))
            c_ns.append(np.median(chain.time(chain_x, args.iters)))
        regions, chain_regions = _regions(model, x, t), _regions(chain, chain_x, t)
        per_region_us = float(np.median(c_ns)) / chain_regions / 1e3
        model_ms = float(np.median(m_ns)) / 1e6
        rows.append({"model": args.model, "threads": t, "latency_ms": model_ms, "overhead_per_region_us": per_region_us,
                     "parallel_regions": regions,
                     "outside_kernels_%": 100 * regions * per_region_us / (model_ms * 1e3)})
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
