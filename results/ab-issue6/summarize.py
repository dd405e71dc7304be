"""Median ratio to ONNX Runtime over the runs in this folder, per engine version, model and thread count.

    python results/ab-issue6/summarize.py

Engine versions: `old` = d33afa9 (old-engine-run*), `new1` = the first session's commits (new-engine-run1..5),
`new2` = the second session's (new-engine-run6..10).

1-thread figures use every run. 2-thread figures use only the runs whose harness waited for ONNX Runtime's
spinning workers to go idle before each native round (old-engine-run4, new-engine-run5..10): in the other runs
ORT's worker, which spins ~60 ms after every run, shared a core with the native engine's threads (run1 of the
old engine had no wait; the others had a wait whose 2 ms window read idle while ORT spun).
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

IDLE_WAIT_FIXED = {"old-engine-run4"} | {f"new-engine-run{i}" for i in range(5, 11)}
VERSIONS = ("old", "new1", "new2")


def version(run: str) -> str:
    if run.startswith("old"):
        return "old"
    return "new1" if int(run.rsplit("run", 1)[1]) <= 5 else "new2"


here = Path(__file__).parent
ratios = defaultdict(list)  # (version, model, threads) -> ratios
order = []
for run in sorted(here.glob("*-engine-run*")):
    for r in csv.DictReader(open(run / "results.csv")):
        if r["backend"] != "native" or r["status"] != "ok":
            continue
        threads = int(r["threads"])
        if threads > 1 and run.name not in IDLE_WAIT_FIXED:
            continue
        ratios[version(run.name), r["model"], threads].append(float(r["ratio_to_baseline"]))
        if r["model"] not in order:
            order.append(r["model"])
print("| model | " + " | ".join(f"{t}t {v}" for t in (1, 2) for v in VERSIONS) + " |")
print("|---|" + "---|" * (2 * len(VERSIONS)))
for m in order:
    cells = [statistics.median(ratios[v, m, t]) if ratios[v, m, t] else float("nan") for t in (1, 2)
             for v in VERSIONS]
    print(f"| {m} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
