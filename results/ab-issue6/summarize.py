"""Median ratio to ONNX Runtime over the runs in this folder, per engine version, model and thread count.

    python results/ab-issue6/summarize.py

Engine versions: `old` = d33afa9 (old-engine-run*), `new1` = the first session's commits (new-engine-run1..5),
`new2` = the second session's (new-engine-run6..10), `new3` = the third session's last engine commit, ab61484
(new-engine-run15..19), `new4` = the fourth session's last engine commit, 0233e86 (new-engine-run25..29), `new5` =
the fifth session's last engine commit, a69cae1 (new-engine-run35..39), `new6` = the sixth session's last engine
commit, 0a43353 (new-engine-run48..52), `new7` = the seventh session's last engine commit, 1f9b68e
(new-engine-run58..62).
Runs at intermediate states are left out: new-engine-run11 (8b0a83a) and run12..14 (a3a432d built with an experiment
that was then dropped: small-SE threshold 512 KiB) in the third session; new-engine-run20 (22252ab) and run21..24
(23d697e, before the stem change) in the fourth; new-engine-run30..34 (c65d2c1, before the one-band small maps) in
the fifth; new-engine-run40..44 (3b33c42, whose executor code layout made ShuffleNetV1 g8 1.07x slower at 2 threads)
and run45..47 (0bf161b, before the kernel functions were aligned) in the sixth; new-engine-run53..57 (cbedcae, before
ShuffleNetV1's shuffles were folded into the 1x1s) in the seventh.

1-thread figures use every run. 2-thread figures use only the runs whose harness waited for ONNX Runtime's
spinning workers to go idle before each native round (old-engine-run4, new-engine-run5 and later): in the other runs
ORT's worker, which spins ~60 ms after every run, shared a core with the native engine's threads (run1 of the
old engine had no wait; the others had a wait whose 2 ms window read idle while ORT spun).
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

IDLE_WAIT_FIXED = {"old-engine-run4"} | {f"new-engine-run{i}" for i in range(5, 63)}
VERSIONS = ("old", "new1", "new2", "new3", "new4", "new5", "new6", "new7")


def version(run: str):
    if run.startswith("old"):
        return "old"
    number = int(run.rsplit("run", 1)[1])
    if number <= 5:
        return "new1"
    if number <= 10:
        return "new2"
    if 15 <= number <= 19:
        return "new3"
    if 25 <= number <= 29:
        return "new4"
    if 35 <= number <= 39:
        return "new5"
    if 48 <= number <= 52:
        return "new6"
    return "new7" if number >= 58 else None  # 11..14, 20..24, 30..34, 40..47, 53..57: intermediate, not counted


here = Path(__file__).parent
ratios = defaultdict(list)  # (version, model, threads) -> ratios
order = []
for run in sorted(here.glob("*-engine-run*")):
    if version(run.name) is None:
        continue
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
