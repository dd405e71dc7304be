"""Single-core throughput of every kernel table on GhostNet / MobileNetV3 / EfficientNet layer shapes.

A plain script (not collected by pytest):  PYTHONPATH=<dir with ghostfast> python benchmarks/bench_kernels.py
Options: --isa avx2 (repeatable; default: every available table + the reference), --quick (fewer repeats),
--filter pointwise (substring of the row name).

Each figure is the best of several rounds; a round times `repeat` back-to-back calls inside C++
(ghostfast._core.kernels.<op>(..., repeat=n) returns ns per call), so Python overhead is not measured.
GFLOP/s counts a multiply-add as 2 FLOPs (activations, pools and element-wise ops count 1 per output element
or tap, so their figures are for comparison between tables only).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no idle BLAS threads spinning next to the timed core

import numpy as np  # noqa: E402

from ghostfast import _core  # noqa: E402

gk = _core.kernels


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def time_ns(fn, flops: float, quick: bool) -> float:
    # Aim for ~20 ms per round (5 ms with --quick), at least one call.
    probe = fn(1)
    target = 5e6 if quick else 2e7
    repeat = max(1, int(target / max(probe, 1.0)))
    rounds = 3 if quick else 7
    return min(fn(repeat) for _ in range(rounds))


def cases(rng):
    """(name, flops, {isa: callable(repeat) -> ns per call})."""
    out = []

    def pw(m, k, n, act, label):
        a, w, b = rnd(rng, m, k), rnd(rng, n, k, scale=k ** -0.5), rnd(rng, n)
        out.append((f"pointwise {label} M={m} K={k} N={n} act={act}", 2.0 * m * k * n,
                    lambda isa, r: gk.pointwise(isa, a, w, b, None, act, repeat=r)))

    pw(56 * 56, 24, 72, 1, "mnv3 expand")
    pw(56 * 56, 72, 24, 0, "mnv3 project")
    pw(28 * 28, 40, 120, 1, "mnv3 expand")
    pw(14 * 14, 80, 200, 3, "mnv3 expand hswish")
    pw(14 * 14, 112, 672, 3, "mnv3 expand hswish")
    pw(7 * 7, 160, 960, 3, "mnv3 head")
    pw(112 * 112, 16, 16, 0, "ghost primary")
    pw(56 * 56, 24, 36, 1, "ghost primary")
    pw(28 * 28, 40, 60, 1, "ghost primary")
    pw(112 * 112, 16, 96, 5, "effnet expand silu")
    pw(56 * 56, 64, 64, 0, "square")
    pw(56 * 56, 128, 128, 0, "square")
    pw(56 * 56, 256, 256, 0, "square")
    pw(1, 960, 1280, 3, "linear")

    def dw(h, w, c, k, s, act, label):
        x, wt, b = rnd(rng, h, w, c), rnd(rng, c, k, k, scale=0.3), rnd(rng, c)
        oh, ow = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        out.append((f"depthwise {label} {h}x{w}x{c} k{k} s{s} act={act}", 2.0 * oh * ow * c * k * k,
                    lambda isa, r: gk.depthwise(isa, x, wt, b, s, k // 2, act, repeat=r)))

    dw(112, 112, 16, 3, 1, 1, "mnv3")
    dw(112, 112, 64, 3, 2, 1, "mnv3")
    dw(56, 56, 72, 3, 1, 1, "mnv3")
    dw(56, 56, 72, 5, 2, 1, "mnv3")
    dw(28, 28, 120, 5, 1, 1, "mnv3")
    dw(14, 14, 200, 3, 1, 3, "mnv3")
    dw(14, 14, 672, 5, 1, 3, "mnv3")
    dw(7, 7, 960, 5, 1, 3, "mnv3")
    dw(56, 56, 36, 3, 1, 0, "ghost cheap")
    dw(28, 28, 60, 3, 1, 0, "ghost cheap")

    def conv(h, w, ic, oc, k, s, act, label):
        x, wt, b = rnd(rng, h, w, ic), rnd(rng, oc, ic, k, k, scale=0.3), rnd(rng, oc)
        oh, ow = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        out.append((f"conv {label} {h}x{w}x{ic}->{oc} k{k} s{s} act={act}", 2.0 * oh * ow * oc * ic * k * k,
                    lambda isa, r: gk.conv(isa, x, wt, b, s, k // 2, act, repeat=r)))

    def conv_planar(oc, act):  # the engine's stem: it reads the caller's NCHW image in place
        x, wt, b = rnd(rng, 3, 224, 224), rnd(rng, oc, 3, 3, 3, scale=0.3), rnd(rng, oc)
        out.append((f"conv stem planar 3x224x224->{oc} k3 s2 act={act}", 2.0 * 112 * 112 * oc * 27,
                    lambda isa, r: gk.conv(isa, x, wt, b, 2, 1, act, planar=True, repeat=r)))

    conv_planar(16, 3)
    conv_planar(32, 1)
    conv(224, 224, 3, 16, 3, 2, 3, "stem")
    conv(224, 224, 3, 24, 3, 2, 1, "stem")
    conv(224, 224, 3, 32, 3, 2, 5, "stem")
    conv(224, 224, 3, 40, 3, 2, 1, "stem")

    x = rnd(rng, 112, 112, 24)
    out.append(("max_pool 112x112x24 k3 s2 p1", 56.0 * 56 * 24 * 9,
                lambda isa, r: gk.max_pool(isa, x, 3, 2, 1, repeat=r)))
    out.append(("avg_pool 112x112x24 k3 s2 p1", 56.0 * 56 * 24 * 9,
                lambda isa, r: gk.avg_pool(isa, x, 3, 2, 1, repeat=r)))
    g = rnd(rng, 56 * 56, 72)
    out.append(("global_avg_pool 56x56x72", 56.0 * 56 * 72, lambda isa, r: gk.global_avg_pool(isa, g, repeat=r)))
    g2 = rnd(rng, 49, 960)
    out.append(("global_avg_pool 7x7x960", 49.0 * 960, lambda isa, r: gk.global_avg_pool(isa, g2, repeat=r)))
    a2, b2 = rnd(rng, 56 * 56, 24), rnd(rng, 56 * 56, 24)
    out.append(("add 56x56x24", 56.0 * 56 * 24, lambda isa, r: gk.add(isa, a2, b2, 0, repeat=r)))
    # scale_channels works in place and is timed by repeating it: scales of +-1 keep the values from drifting
    # into denormals or infinities over the repeats.
    sx, ss = rnd(rng, 28 * 28, 120), np.where(rnd(rng, 120) > 0, 1.0, -1.0).astype(np.float32)
    out.append(("scale_channels 28x28x120", 28.0 * 28 * 120,
                lambda isa, r: gk.scale_channels(isa, sx, ss, repeat=r)))
    # Activations timed out of place (act(a + 0)): repeated in-place SiLU/HardSwish would shrink negative
    # values into denormals and time those instead.
    v, zeros = rnd(rng, 28 * 28, 120, scale=4.0), np.zeros((28 * 28, 120), np.float32)
    for act, name in [(1, "relu"), (3, "hardswish"), (5, "silu"), (6, "sigmoid")]:
        out.append((f"add+{name} 28x28x120", float(v.size),
                    lambda isa, r, act=act: gk.add(isa, v, zeros, act, repeat=r)))
    s = rnd(rng, 1280, scale=4.0)
    out.append(("activate sigmoid 1280 (SE gate)", float(s.size), lambda isa, r: gk.activate(isa, s, 6, repeat=r)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", action="append", help="table(s) to time (default: all available + reference)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--filter", default="")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args(argv)
    isas = args.isa or list(reversed(gk.available()))
    if not args.no_reference and "reference" not in isas:
        isas.append("reference")
    print(f"tables: {', '.join(isas)} (best: {gk.best()}); CPU features: {' '.join(_core.cpu_features())}")
    rng = np.random.default_rng(0)
    header = f"{'kernel':60s}" + "".join(f"{isa + ' GF/s':>16s}" for isa in isas) + f"{'us (best)':>11s}"
    print(header)
    print("-" * len(header))
    for name, flops, fn in cases(rng):
        if args.filter and args.filter not in name:
            continue
        cells, best_us = [], None
        for isa in isas:
            q = args.quick or isa == "reference"
            ns = time_ns(lambda r, isa=isa: fn(isa, r), flops, q)
            cells.append(f"{flops / ns:16.2f}")
            if isa == isas[0]:
                best_us = ns / 1e3
        print(f"{name:60s}" + "".join(cells) + f"{best_us:11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
