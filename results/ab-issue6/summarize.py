"""Median ratio to ONNX Runtime over the runs in this folder, old engine against new, per model and threads.

    python results/ab-issue6/summarize.py
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

here = Path(__file__).parent
ratios = defaultdict(list)  # (engine, model, threads) -> ratios
for run in sorted(here.glob("*-engine-run*")):
    engine = run.name.split("-")[0]
    for r in csv.DictReader(open(run / "results.csv")):
        if r["backend"] == "native" and r["status"] == "ok":
            ratios[engine, r["model"], int(r["threads"])].append(float(r["ratio_to_baseline"]))
models = sorted({m for _, m, _ in ratios}, key=lambda m: list(dict.fromkeys(k[1] for k in ratios)).index(m))
print("| model | 1t old | 1t new | 2t old | 2t new |")
print("|---|---|---|---|---|")
for m in models:
    cells = [statistics.median(ratios[e, m, t]) for t in (1, 2) for e in ("old", "new")]
    print(f"| {m} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
