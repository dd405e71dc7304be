"""Per-op profile of the native engine: time, MACs and achieved GFLOP/s of every op, against the GEMM peak.

    python benchmarks/profile_ops.py ghostnet_100 [--threads 1] [--iters 200] [--top 25] [--csv out.csv]

The time of each op is the engine's own per-op wall time (``Engine.profile``), averaged over ``iters`` runs of
one image. MACs are counted from the compiled program (weights x output pixels), so they are the work the
engine actually does after BN folding and fusion. "Outside kernels" is the layout edges (input conversion,
logits copy): with per-op timing on, dispatch cost is inside each op's time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ghostfast import compile as compile_engine
from ghostfast import report
from ghostfast.benchmark import prepare_model
from ghostfast.program import OP

_NAMES = {v: k for k, v in OP.items()}


def op_macs(program, op) -> int:
    """Multiply-accumulates of one op for one image (0 for data movement)."""
    kind, inputs, output, params, tensors, _ = op
    c, h, w = program.buffers[program.values[output][0]]
    out_c, pixels = program.values[output][2], h * w
    shapes = [program.tensors[t].shape for t in tensors]
    name = _NAMES[kind]
    if name in ("conv", "pointwise", "depthwise"):  # weights x output pixels
        return int(np.prod(shapes[0])) * pixels
    if name == "ghost":
        return (int(np.prod(shapes[0])) + int(np.prod(shapes[2]))) * pixels
    if name == "squeeze_excite":
        return int(np.prod(shapes[0])) + int(np.prod(shapes[2])) + out_c * pixels
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--top", type=int, default=25, help="slowest ops listed (0: all, in program order)")
    p.add_argument("--peak", type=float, default=0.0, help="GFLOP/s peak to report against (0: not shown)")
    p.add_argument("--csv", help="write every op's row here")
    args = p.parse_args(argv)

    _, module, x = prepare_model(args.model)
    engine = compile_engine(module, x.shape[1:], threads=args.threads)
    engine.profile(x, iters=max(5, args.iters // 10))  # warm-up
    prof = engine.profile(x, iters=args.iters)
    prog = engine.program
    ops_iter = iter(prog.ops)
    rows = []
    for r in prof["ops"]:
        macs = 0 if r["type"] == "layout" else op_macs(prog, next(ops_iter))
        if r["type"] == "streamed":  # computed inside the op above (a Ghost module streaming into it)
            rows[-1]["MMAC"] += macs / 1e6
            rows[-1]["GFLOP/s"] = 2e3 * rows[-1]["MMAC"] / rows[-1]["us"] if rows[-1]["us"] > 0 else 0.0
            macs = 0
        us = r["mean_us"]
        gflops = 2 * macs / (us * 1e3) if us > 0 else 0.0
        rows.append({"op": r["op"], "type": r["type"], "isa": r["isa"] or "", "us": us, "MMAC": macs / 1e6,
                     "GFLOP/s": gflops, "%": 100 * us / prof["total_us"]})
    if args.peak:
        for row in rows:
            row["% peak"] = 100 * row["GFLOP/s"] / args.peak
    shown = rows if args.top == 0 else sorted(rows, key=lambda r: -r["us"])[: args.top]
    print(tabulate(shown, headers="keys", tablefmt="github", floatfmt=".2f"))
    by_type = {}
    for row in rows:
        t = by_type.setdefault(row["type"], {"type": row["type"], "ops": 0, "us": 0.0, "MMAC": 0.0})
        t["ops"] += 1
        t["us"] += row["us"]
        t["MMAC"] += row["MMAC"]
    for t in by_type.values():
        t["GFLOP/s"] = 2 * t["MMAC"] * 1e6 / (t["us"] * 1e3) if t["us"] else 0.0
        t["%"] = 100 * t["us"] / prof["total_us"]
    print()
    print(tabulate(sorted(by_type.values(), key=lambda t: -t["us"]), headers="keys", tablefmt="github",
                   floatfmt=".2f"))
    total_macs = sum(r["MMAC"] for r in rows)
    moved = sum(isa != engine.isa for isa in engine.op_isas)
    print(f"\n{args.model}, {args.threads} thread(s), {engine.isa} ({moved} ops on a half-width table): "
          f"{prof['total_us']:.0f} us per image in "
          f"{len(prog.ops)} ops, {total_macs:.1f} MMAC, {2e3 * total_macs / prof['total_us']:.1f} GFLOP/s overall")
    if args.csv:
        Path(args.csv).write_text(report.to_csv(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
