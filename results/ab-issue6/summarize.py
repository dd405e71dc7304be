"""Median ratio to ONNX Runtime over the runs in this folder, old engine against new, per model and threads.

    python results/ab-issue6/summarize.py

1-thread figures use every run. 2-thread figures use only the runs whose harness waited for ONNX Runtime's
spinning workers to go idle before each native round (old-engine-run4, new-engine-run5): in the other runs
ORT's worker, which spins ~60 ms after every run, shared a core with the native engine's threads (run1 of the
old engine had no wait; the others had a wait whose 2 ms window read idle while ORT spun).
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

IDLE_WAIT_FIXED = {"old-engine-run4", "new-engine-run5"}

here = Path(__file__).parent
ratios = defaultdict(list)  # (engine, model, threads) -> ratios
order = []
for run in sorted(here.glob("*-engine-run*")):
    engine = run.name.split("-")[0]
    for r in csv.DictReader(open(run / "results.csv")):
        if r["backend"] != "native" or r["status"] != "ok":
            continue
        threads = int(r["threads"])
        if threads > 1 and run.name not in IDLE_WAIT_FIXED:
            continue
        ratios[engine, r["model"], threads].append(float(r["ratio_to_baseline"]))
        if r["model"] not in order:
            order.append(r["model"])
print("| model | 1t old | 1t new | 2t old | 2t new |")
print("|---|---|---|---|---|")
for m in order:
    cells = [statistics.median(ratios[e, m, t]) if ratios[e, m, t] else float("nan") for t in (1, 2)
             for e in ("old", "new")]
    print(f"| {m} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
