"""Native engine against PyTorch eager for every zoo model at 1 and 2 threads, interleaved in one run.

    python benchmarks/native_vs_torch.py [--models a,b] [--threads 1 2] [--rounds 5] [--iters 20] [--json out.json]

Both backends are prepared once per model and thread count; then rounds alternate native, torch, native, torch
(each round `iters` timed runs inside the C++ loop), so slow phases of a shared machine hit both alike. The
table gives medians over all rounds and the ratio native / torch.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from ghostfast import env, models
from ghostfast.backends import get_backend
from ghostfast.benchmark import prepare_model
from ghostfast.comparison import wait_until_cpu_idle


def measure(name: str, threads: int, rounds: int, iters: int, backends=("native", "torch")) -> dict:
    _, module, x = prepare_model(name)
    runners = {b: get_backend(b).prepare(module, x, threads) for b in backends}
    try:
        samples = {b: [] for b in backends}
        for b in backends:
            runners[b].time(max(3, iters // 4), 0)  # warm-up: caches, thread pools, allocator
        for _ in range(rounds):
            for b in backends:
                wait_until_cpu_idle()  # the other backend's pool threads may still be spinning
                samples[b].append(runners[b].time(iters, 0))
    finally:
        for r in runners.values():
            r.close()
    med = {b: float(np.median(np.concatenate(s))) / 1e6 for b, s in samples.items()}
    return {"model": name, "threads": threads, **{f"{b}_ms": med[b] for b in backends},
            "native/torch": med["native"] / med["torch"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--json", help="also write the records and the environment to this file")
    args = p.parse_args(argv)
    names = models.names() if args.models == "all" else [models.resolve(m) for m in args.models.split(",")]
    rows = []
    for name, t in tqdm([(n, t) for n in names for t in args.threads], desc="native vs torch", unit="run"):
        rows.append(measure(name, t, args.rounds, args.iters))
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env.describe(), "records": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
