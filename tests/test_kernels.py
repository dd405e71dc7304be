"""The CPU kernel tables (ghostfast._core.kernels) against the scalar reference, and the reference against torch.

Every optimized table this CPU can run is swept over the shapes that break vector code: channel counts that are
not multiples of 4/8/16, odd spatial sizes, stride 2 on odd inputs, K from 1 to ~1000, M not a multiple of the
row tile, N not a multiple of the panel width, channel-slice (strided) inputs and outputs, and sub-range calls
as the executor's threads make them. Tables this CPU cannot run are skipped with a reason saying so.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ghostfast import _core

gk = _core.kernels

ACTS = list(range(7))  # None, ReLU, ReLU6, HardSwish, HardSigmoid, SiLU, Sigmoid
ACT_NAMES = ["none", "relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid"]
AVAILABLE = gk.available()
ALL_ISAS = ["generic", "avx2", "avx512", "neon"]
CHANNELS = [1, 3, 5, 8, 12, 16, 20, 36, 46, 60, 92, 100, 130]


def _isa_params():
    params = []
    for isa in ALL_ISAS:
        reason = f"kernel table '{isa}' cannot run on this CPU/build (available: {', '.join(AVAILABLE)})"
        if isa == "avx512":
            reason = "this CPU lacks AVX-512 (F+BW+DQ+VL) or this build is not x86-64: the avx512 table cannot run here"
        elif isa == "neon":
            reason = "not an ARM64 build: the neon table is tested by `ctest --preset aarch64` (under qemu-aarch64)"
        elif isa == "avx2":
            reason = "this CPU lacks AVX2+FMA or this build is not x86-64: the avx2 table cannot run here"
        params.append(pytest.param(isa, id=isa, marks=pytest.mark.skipif(isa not in AVAILABLE, reason=reason)))
    return params


ISAS = _isa_params()


def rng_for(*key) -> np.random.Generator:
    """A generator seeded from the test's parameters (crc32: stable across runs, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, *shape, scale=1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def assert_close(opt: np.ndarray, ref: np.ndarray, rel: float = 1e-5):
    """max|opt - ref| <= rel * max(1, max|ref|): the same sums in a different order."""
    opt = np.asarray(opt, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert opt.shape == ref.shape
    assert np.isfinite(opt).all() == np.isfinite(ref).all()
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(opt - ref).max(initial=0.0))
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel:g} * {scale:.3g}"


def torch_act(x: torch.Tensor, act: int) -> torch.Tensor:
    return [
        lambda t: t,
        F.relu,
        F.relu6,
        F.hardswish,
        F.hardsigmoid,
        F.silu,
        torch.sigmoid,
    ][act](x)


def nchw(x: np.ndarray) -> torch.Tensor:
    """[h, w, c] float32 numpy -> [1, c, h, w] float64 torch."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).permute(2, 0, 1).unsqueeze(0)


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.squeeze(0).permute(1, 2, 0).numpy()


def wide(rng, shape, extra_before: int, extra_after: int, fill=None):
    """A buffer with extra channels around a [..., c] slice; returns (buffer, slice view)."""
    *lead, c = shape
    buf = randn(rng, *lead, extra_before + c + extra_after) if fill is None else np.full(
        (*lead, extra_before + c + extra_after), fill, np.float32)
    return buf, buf[..., extra_before:extra_before + c]


# ---------------------------------------------------------------------------------------------------------------
# Dispatch and table metadata


def test_tables_listed_best_last():
    assert AVAILABLE[0] == "generic"
    assert gk.best() in AVAILABLE
    if "GHOSTFAST_ISA" not in os.environ:
        assert gk.best() == AVAILABLE[-1]
    features = set(_core.cpu_features())
    if {"avx2", "fma"} <= features:
        assert "avx2" in AVAILABLE
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= features:
        assert "avx512" in AVAILABLE


@pytest.mark.parametrize("isa", ISAS)
def test_table_info_and_packed_sizes(isa):
    info = gk.table_info(isa)
    w, nr = info["vector_floats"], info["pointwise_nr"]
    assert w in (4, 8, 16) and nr % w == 0
    k, n, c, ks, ic, oc = 37, 45, 46, 5, 3, 20
    sizes = gk.packed_sizes(isa, k, n, c, ks, ic, oc)
    assert sizes["pointwise"] == -(-n // nr) * nr * (k + 1)
    assert sizes["depthwise"] == -(-c // w) * w * (ks * ks + 1)
    assert sizes["conv"] % w == 0 and sizes["conv"] >= oc * (ks * ks * ic + 1)


def _run_python(code: str, env_isa: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GHOSTFAST_ISA=env_isa)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_env_forces_generic():
    r = _run_python("from ghostfast import _core; print(_core.kernels.best())", "generic")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "generic"


def test_env_unknown_isa_warns_and_falls_back():
    r = _run_python("from ghostfast import _core; print(_core.kernels.best(), _core.kernels.available()[-1])",
                    "sse9000")
    assert r.returncode == 0, r.stderr
    best, top = r.stdout.split()
    assert best == top
    assert "GHOSTFAST_ISA=sse9000" in r.stderr


# ---------------------------------------------------------------------------------------------------------------
# The reference against torch


@pytest.mark.parametrize("act", ACTS, ids=ACT_NAMES)
@pytest.mark.parametrize("m,k,n,res", [(1, 1, 1, False), (7, 24, 72, True), (49, 160, 100, False),
                                       (13, 1000, 20, True)])
def test_reference_pointwise_vs_torch(m, k, n, res, act):
    rng = rng_for("ref_pw", m, k, n)
    a, w, b = randn(rng, m, k), randn(rng, n, k, scale=k ** -0.5), randn(rng, n)
    r = randn(rng, m, n) if res else None
    got = gk.pointwise("reference", a, w, b, r, act)
    t = torch.from_numpy(a).double() @ torch.from_numpy(w).double().T + torch.from_numpy(b).double()
    if res:
        t = t + torch.from_numpy(r).double()
    assert_close(got, torch_act(t, act).numpy())


@pytest.mark.parametrize("act", [0, 3])
@pytest.mark.parametrize("h,w,c,k,s,pad", [(7, 7, 5, 3, 1, 1), (13, 15, 12, 3, 2, 1), (15, 13, 20, 5, 2, 2),
                                           (9, 11, 3, 5, 1, 2), (8, 9, 4, 3, 1, 0), (6, 7, 3, 7, 2, 3)])
def test_reference_depthwise_vs_torch(h, w, c, k, s, pad, act):
    rng = rng_for("ref_dw", h, w, c, k, s)
    x, wt, b = randn(rng, h, w, c), randn(rng, c, k, k), randn(rng, c)
    got = gk.depthwise("reference", x, wt, b, s, pad, act)
    want = F.conv2d(nchw(x), torch.from_numpy(wt).double().unsqueeze(1), torch.from_numpy(b).double(), s, pad,
                    groups=c)
    assert_close(got, hwc(torch_act(want, act)))


@pytest.mark.parametrize("h,w,ic,oc,k,s,pad", [(17, 15, 3, 16, 3, 2, 1), (9, 8, 5, 7, 3, 1, 1), (7, 7, 4, 9, 5, 2, 2),
                                               (6, 5, 8, 12, 1, 1, 0), (10, 10, 3, 40, 3, 2, 0)])
def test_reference_conv_vs_torch(h, w, ic, oc, k, s, pad):
    rng = rng_for("ref_conv", h, w, ic, oc, k)
    x, wt, b = randn(rng, h, w, ic), randn(rng, oc, ic, k, k), randn(rng, oc)
    got = gk.conv("reference", x, wt, b, s, pad, 2)
    want = F.relu6(F.conv2d(nchw(x), torch.from_numpy(wt).double(), torch.from_numpy(b).double(), s, pad))
    assert_close(got, hwc(want))


@pytest.mark.parametrize("h,w,c,k,s,pad", [(15, 13, 5, 3, 2, 1), (8, 8, 12, 2, 2, 0), (7, 9, 3, 3, 1, 1),
                                           (112, 112, 24, 3, 2, 1), (5, 6, 7, 5, 2, 2)])
def test_reference_pools_vs_torch(h, w, c, k, s, pad):
    rng = rng_for("ref_pool", h, w, c, k)
    x = randn(rng, h, w, c)
    assert_close(gk.max_pool("reference", x, k, s, pad), hwc(F.max_pool2d(nchw(x), k, s, pad)))
    assert_close(gk.avg_pool("reference", x, k, s, pad),
                 hwc(F.avg_pool2d(nchw(x), k, s, pad, count_include_pad=True)))


def test_reference_global_avg_pool_and_activations_vs_torch():
    rng = rng_for("ref_gap")
    x = randn(rng, 49, 37)
    assert_close(gk.global_avg_pool("reference", x), x.astype(np.float64).mean(axis=0))
    v = np.concatenate([randn(rng, 1000, scale=8.0), np.float32([0, -3, 3, 6, -6, 88, -88, 100, -100])])
    for act in ACTS:
        assert_close(gk.activate("reference", v, act), torch_act(torch.from_numpy(v).double(), act).numpy(), 1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Optimized tables against the reference: pointwise


def _pointwise_cases():
    ms = [1, 2, 5, 6, 7, 8, 9, 11, 13, 16, 23, 34, 49, 100]  # remainders of 6-, 8- and 12-row tiles
    ks = [1, 2, 3, 8, 16, 24, 40, 64, 160, 333, 1000]
    ns = [1, 3, 5, 8, 12, 16, 20, 24, 32, 36, 46, 60, 72, 92, 100, 130]
    cases = []
    for i, n in enumerate(ns):
        for j, m in enumerate(ms):
            k = ks[(i * 5 + j * 3) % len(ks)]
            cases.append((m, k, n, (i + j) % 7, (i * j) % 3 == 0))
    return cases


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n,act,res", _pointwise_cases())
def test_pointwise_matches_reference(isa, m, k, n, act, res):
    rng = rng_for("pw", m, k, n)
    a, w, b = randn(rng, m, k), randn(rng, n, k, scale=k ** -0.5), randn(rng, n)
    r = randn(rng, m, n) if res else None
    assert_close(gk.pointwise(isa, a, w, b, r, act), gk.pointwise("reference", a, w, b, r, act))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_NAMES)
def test_pointwise_every_activation_with_residual(isa, act):
    rng = rng_for("pw_act", act)
    m, k, n = 29, 45, 52
    a, w, b, r = randn(rng, m, k), randn(rng, n, k, scale=0.5), randn(rng, n), randn(rng, m, n, scale=3.0)
    assert_close(gk.pointwise(isa, a, w, b, r, act), gk.pointwise("reference", a, w, b, r, act))
    assert_close(gk.pointwise(isa, a, w, None, None, act), gk.pointwise("reference", a, w, None, None, act))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("panels_extra", [(3, 15), (4, 0), (4, 1), (8, 5), (9, 0)])
@pytest.mark.parametrize("act,res", [(0, False), (2, True), (5, True), (6, False)])
def test_pointwise_single_row_multi_panel_path(isa, panels_extra, act, res):
    # One row streams four weight panels at once; widths around multiples of 4 panels, whole and in column
    # ranges that start at panel boundaries inside a four-panel group.
    panels, extra = panels_extra
    nr = gk.table_info(isa)["pointwise_nr"]
    n, k = panels * nr + extra, 37
    rng = rng_for("pw_gemv", panels, extra, act)
    a, w, b = randn(rng, 1, k), randn(rng, n, k, scale=k ** -0.5), randn(rng, n)
    r = randn(rng, 1, n) if res else None
    want = gk.pointwise("reference", a, w, b, r, act)
    assert_close(gk.pointwise(isa, a, w, b, r, act), want)
    out = np.full((1, n), np.nan, np.float32)
    gk.pointwise(isa, a, w, b, r, act, out=out, n_chunk=3)
    assert_close(out, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(3136, 24, 72), (196, 80, 200), (49, 160, 960), (1, 960, 1280)])
def test_pointwise_network_shapes(isa, m, k, n):
    rng = rng_for("pw_net", m, k, n)
    a, w, b = randn(rng, m, k), randn(rng, n, k, scale=k ** -0.5), randn(rng, n)
    assert_close(gk.pointwise(isa, a, w, b, None, 3), gk.pointwise("reference", a, w, b, None, 3))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(23, 17, 36), (50, 64, 20), (7, 5, 100)])
def test_pointwise_strided_views_leave_other_channels_untouched(isa, m, k, n):
    rng = rng_for("pw_stride", m, k, n)
    _, a = wide(rng, (m, k), 3, 5)
    _, r = wide(rng, (m, n), 7, 1)
    w, b = randn(rng, n, k, scale=0.3), randn(rng, n)
    out_buf, out = wide(rng, (m, n), 5, 3, fill=12345.0)
    assert gk.pointwise(isa, a, w, b, r, 2, out=out) is None
    assert_close(out, gk.pointwise("reference", a, w, b, r, 2))
    assert (out_buf[:, :5] == 12345.0).all() and (out_buf[:, 5 + n:] == 12345.0).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m_chunk,n_chunk", [(1, 1), (5, 0), (7, 2), (0, 1), (13, 3)])
def test_pointwise_sub_ranges(isa, m_chunk, n_chunk):
    rng = rng_for("pw_sub", m_chunk, n_chunk)
    m, k, n = 61, 33, 100
    a, w, b, r = randn(rng, m, k), randn(rng, n, k, scale=0.3), randn(rng, n), randn(rng, m, n)
    out_buf, out = wide(rng, (m, n), 2, 2, fill=-7.0)
    gk.pointwise(isa, a, w, b, r, 5, out=out, m_chunk=m_chunk, n_chunk=n_chunk)
    assert_close(out, gk.pointwise("reference", a, w, b, r, 5))
    assert (out_buf[:, :2] == -7.0).all() and (out_buf[:, 2 + n:] == -7.0).all()


@pytest.mark.parametrize("isa", ISAS)
def test_pointwise_residual_may_alias_output(isa):
    rng = rng_for("pw_alias")
    m, k, n = 20, 16, 44
    a, w, b = randn(rng, m, k), randn(rng, n, k), randn(rng, n)
    buf = randn(rng, m, n)
    want = gk.pointwise("reference", a, w, b, buf.copy(), 1)
    gk.pointwise(isa, a, w, b, buf, 1, out=buf)
    assert_close(buf, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n,act", [(1, 7, 24, 0), (13, 16, 8, 1), (50, 16, 24, 0), (23, 48, 12, 2),
                                       (61, 24, 36, 5), (9, 72, 20, 0), (30, 40, 60, 3), (7, 33, 130, 0)])
def test_pointwise_raw_output_before_residual(isa, m, k, n, act):
    # raw gets a @ w.T + bias (a Ghost module's primary output for its depthwise) while out gets the residual
    # and the activation; both may be channel slices, and nothing around either slice is written.
    rng = rng_for("pw_raw", m, k, n, act)
    a, w, b = randn(rng, m, k), randn(rng, n, k, scale=k ** -0.5), randn(rng, n)
    _, r = wide(rng, (m, n), 2, 3)
    out_buf, out = wide(rng, (m, n), 3, 2, fill=4.0)
    raw_buf, raw = wide(rng, (m, n), 1, 5, fill=-4.0)
    gk.pointwise(isa, a, w, b, r, act, out=out, raw=raw, m_chunk=5)
    assert_close(out, gk.pointwise("reference", a, w, b, r, act))
    assert_close(raw, gk.pointwise("reference", a, w, b, None, 0))
    assert (out_buf[:, :3] == 4.0).all() and (out_buf[:, 3 + n:] == 4.0).all()
    assert (raw_buf[:, :1] == -4.0).all() and (raw_buf[:, 1 + n:] == -4.0).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n,stride,act,res", [(1, 12, 48, 8, 1, False), (49, 12, 48, 8, 0, True),
                                                  (196, 24, 96, 8, 1, False), (37, 48, 192, 8, 0, True),
                                                  (50, 20, 80, 3, 1, False), (13, 80, 320, 3, 0, True),
                                                  (23, 7, 36, 5, 2, False), (9, 3, 130, 2, 0, False)])
def test_pointwise_strided_k_reads_a_folded_shuffle(isa, m, k, n, stride, act, res):
    # k_stride s: the k inputs of a row are its columns g, g + s, g + 2s, ... (here g = 1, a view that starts one
    # column in): ShuffleNetV1's grouped 1x1 reading the unshuffled tensor, its group g's k-th channel at k * s + g.
    # Single rows go through the tiled path too (the single-row path reads A contiguously).
    rng = rng_for("pw_ks", m, k, n, stride)
    full = randn(rng, m, k * stride)
    view = full[:, 1:]
    w, b = randn(rng, n, k, scale=k ** -0.5), randn(rng, n)
    r = randn(rng, m, n) if res else None
    want = gk.pointwise("reference", np.ascontiguousarray(full[:, 1::stride]), w, b, r, act)
    assert_close(gk.pointwise("reference", view, w, b, r, act, k_stride=stride), want)
    assert_close(gk.pointwise(isa, view, w, b, r, act, k_stride=stride, m_chunk=5), want)
    with pytest.raises(ValueError, match="k_stride"):
        gk.pointwise(isa, full[:, :(k - 1) * stride], w, b, k_stride=stride)


def test_raw_and_residual_shapes_are_checked():
    a, w = np.ones((4, 3), np.float32), np.ones((5, 3), np.float32)
    with pytest.raises(ValueError, match="raw must have shape"):
        gk.pointwise("reference", a, w, raw=np.zeros((4, 4), np.float32))
    x, wt = np.ones((6, 6, 2), np.float32), np.ones((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        gk.depthwise("reference", x, wt, None, 2, 1, residual=np.zeros((6, 6, 2), np.float32))


def test_reference_pointwise_raw_vs_torch():
    rng = rng_for("ref_pw_raw")
    a, w, b, r = randn(rng, 11, 9), randn(rng, 6, 9), randn(rng, 6), randn(rng, 11, 6)
    raw = np.zeros((11, 6), np.float32)
    out = gk.pointwise("reference", a, w, b, r, 1, raw=raw)
    t = torch.from_numpy(a).double() @ torch.from_numpy(w).double().T + torch.from_numpy(b).double()
    assert_close(raw, t.numpy())
    assert_close(out, F.relu(t + torch.from_numpy(r).double()).numpy())


# ---------------------------------------------------------------------------------------------------------------
# Depthwise


def _depthwise_cases():
    sizes = [(1, 1), (2, 3), (7, 7), (13, 13), (15, 9), (9, 16), (28, 27)]
    cases = []
    for i, (c, (k, s)) in enumerate(itertools.product(CHANNELS, [(3, 1), (3, 2), (5, 1), (5, 2)])):
        h, w = sizes[i % len(sizes)]
        pad = [k // 2, 0, k // 2, 1][i % 4] if k == 5 else [1, 0, 1, 2][i % 4]
        if h + 2 * pad < k or w + 2 * pad < k:
            pad = k // 2
        cases.append((h, w, c, k, s, pad, i % 7))
    return cases


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("h,w,c,k,s,pad,act", _depthwise_cases())
def test_depthwise_matches_reference(isa, h, w, c, k, s, pad, act):
    rng = rng_for("dw", h, w, c, k, s, pad)
    x, wt, b = randn(rng, h, w, c), randn(rng, c, k, k, scale=0.3), randn(rng, c)
    assert_close(gk.depthwise(isa, x, wt, b, s, pad, act), gk.depthwise("reference", x, wt, b, s, pad, act))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_NAMES)
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_depthwise_every_activation(isa, k, s, act):
    rng = rng_for("dw_act", k, s, act)
    x, wt, b = randn(rng, 19, 21, 46), randn(rng, 46, k, k, scale=0.5), randn(rng, 46)
    assert_close(gk.depthwise(isa, x, wt, b, s, k // 2, act), gk.depthwise("reference", x, wt, b, s, k // 2, act))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("h,w,c,k,s", [(112, 112, 16, 3, 1), (56, 56, 72, 3, 2), (28, 28, 120, 5, 1),
                                       (14, 14, 200, 3, 1), (7, 7, 960, 5, 1)])
def test_depthwise_network_shapes(isa, h, w, c, k, s):
    rng = rng_for("dw_net", h, w, c, k)
    x, wt, b = randn(rng, h, w, c), randn(rng, c, k, k, scale=0.3), randn(rng, c)
    assert_close(gk.depthwise(isa, x, wt, b, s, k // 2, 3), gk.depthwise("reference", x, wt, b, s, k // 2, 3))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("ow,c,k,s", [(14, 20, 3, 1), (28, 36, 5, 1), (21, 9, 3, 2), (14, 44, 5, 2), (35, 4, 3, 1)])
def test_depthwise_rows_in_blocks_of_seven(isa, ow, c, k, s):
    # Rows of 14, 21, 28 and 35 output pixels run as blocks of 7 (the first and last clipped, those between
    # not), with a residual and channel tails: a block that skips or repeats a column fails here.
    rng = rng_for("dw_sevens", ow, c, k, s)
    pad = k // 2
    h, w = 9, ow * s
    x, wt, b = randn(rng, h, w, c), randn(rng, c, k, k, scale=0.3), randn(rng, c)
    oh = (h + 2 * pad - k) // s + 1
    assert (w + 2 * pad - k) // s + 1 == ow
    _, r = wide(rng, (oh, ow, c), 3, 1)
    got = gk.depthwise(isa, x, wt, b, s, pad, 1, residual=r)
    want = F.conv2d(nchw(x), torch.from_numpy(wt).double().unsqueeze(1), torch.from_numpy(b).double(), s, pad,
                    groups=c) + nchw(r)
    assert_close(got, hwc(torch_act(want, 1)))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k,s,pad", [(1, 1, 0), (7, 1, 3), (3, 3, 1), (4, 2, 1), (3, 1, 2)])
def test_depthwise_unspecialised_kernels(isa, k, s, pad):
    rng = rng_for("dw_gen", k, s, pad)
    x, wt, b = randn(rng, 11, 10, 21), randn(rng, 21, k, k, scale=0.3), randn(rng, 21)
    assert_close(gk.depthwise(isa, x, wt, b, s, pad, 1), gk.depthwise("reference", x, wt, b, s, pad, 1))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c,k,s,row_chunk", [(20, 3, 1, 1), (46, 5, 2, 2), (12, 3, 2, 3), (37, 5, 1, 4)])
def test_depthwise_strided_and_row_chunks(isa, c, k, s, row_chunk):
    rng = rng_for("dw_stride", c, k, s)
    h, w = 15, 13
    _, x = wide(rng, (h, w, c), 4, 3)
    wt, b = randn(rng, c, k, k, scale=0.3), randn(rng, c)
    oh, ow = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
    out_buf, out = wide(rng, (oh, ow, c), 6, 5, fill=99.0)
    gk.depthwise(isa, x, wt, b, s, k // 2, 3, out=out, row_chunk=row_chunk)
    assert_close(out, gk.depthwise("reference", x, wt, b, s, k // 2, 3))
    assert (out_buf[..., :6] == 99.0).all() and (out_buf[..., 6 + c:] == 99.0).all()


@pytest.mark.parametrize("isa", ISAS + ["reference"])
@pytest.mark.parametrize("c,k,s,act", [(8, 3, 1, 0), (12, 3, 1, 0), (20, 3, 2, 1), (36, 5, 1, 0), (4, 5, 2, 3),
                                       (46, 3, 1, 5), (21, 7, 1, 0), (16, 4, 2, 2)])
def test_depthwise_residual(isa, c, k, s, act):
    # out = act(dw(x) + bias + residual): the Ghost module's cheap half with its share of the residual. The
    # residual is a channel slice (pixel stride > c); channel tails of half a vector (4, 12, 20, 36) included.
    rng = rng_for("dw_res", c, k, s, act)
    h, w = 17, 19
    pad = k // 2
    x, wt, b = randn(rng, h, w, c), randn(rng, c, k, k, scale=0.3), randn(rng, c)
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    _, r = wide(rng, (oh, ow, c), 5, 2)
    got = gk.depthwise(isa, x, wt, b, s, pad, act, residual=r, row_chunk=3)
    want = F.conv2d(nchw(x), torch.from_numpy(wt).double().unsqueeze(1), torch.from_numpy(b).double(), s, pad,
                    groups=c) + nchw(r)
    assert_close(got, hwc(torch_act(want, act)))


@pytest.mark.parametrize("isa", ISAS + ["reference"])
@pytest.mark.parametrize("c,k,s,band", [(24, 3, 2, 2), (12, 3, 1, 3), (72, 5, 2, 4), (20, 5, 1, 1), (9, 7, 1, 2)])
def test_depthwise_ring_buffers(isa, c, k, s, band):
    # The single-thread executor streams rows through ring buffers (row r at r % rows): bands of output rows,
    # each computed after the ring holds the input rows it reads, must equal the whole-plane result.
    rng = rng_for("dw_ring", c, k, s, band)
    h, w, pad = 23, 17, k // 2
    x, wt, b = randn(rng, h, w, c), randn(rng, c, k, k, scale=0.3), randn(rng, c)
    want = gk.depthwise("reference", x, wt, b, s, pad, 1)
    oh = want.shape[0]
    rows_in = (band - 1) * s + k + 1  # not a divisor of h: bands wrap around the ring's end
    ring_in = np.full((rows_in, w, c), np.nan, np.float32)
    ring_out = np.full((band + 1, want.shape[1], c), np.nan, np.float32)
    got = np.empty_like(want)
    for y0 in range(0, oh, band):
        y1 = min(oh, y0 + band)
        for r in range(max(0, y0 * s - pad), min(h, (y1 - 1) * s - pad + k)):
            ring_in[r % rows_in] = x[r]
        gk.depthwise_ring(isa, ring_in, h, wt, b, s, pad, 1, ring_out, y0, y1)
        for y in range(y0, y1):
            got[y] = ring_out[y % ring_out.shape[0]]
    assert_close(got, want)


# ---------------------------------------------------------------------------------------------------------------
# Dense conv (stems)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("oc", [16, 24, 32, 40])
def test_conv_stem(isa, oc):
    rng = rng_for("stem", oc)
    x, wt, b = randn(rng, 224, 224, 3), randn(rng, oc, 3, 3, 3, scale=0.3), randn(rng, oc)
    assert_close(gk.conv(isa, x, wt, b, 2, 1, 3), gk.conv("reference", x, wt, b, 2, 1, 3))


@pytest.mark.parametrize("isa", ISAS + ["reference"])
@pytest.mark.parametrize("h,w,ic,oc,s", [(224, 224, 3, 16, 2), (17, 23, 3, 20, 1), (9, 8, 5, 8, 2),
                                            (17, 23, 3, 24, 2), (15, 16, 3, 40, 2), (8, 9, 3, 32, 2)])
def test_conv_planar_input_matches_nhwc(isa, h, w, ic, oc, s):
    # The engine's stem reads the caller's NCHW image in place: same result as on the NHWC copy.
    rng = rng_for("conv_planar", h, w, ic, oc, s)
    x, wt, b = randn(rng, h, w, ic), randn(rng, oc, ic, 3, 3, scale=0.3), randn(rng, oc)
    planar = np.ascontiguousarray(x.transpose(2, 0, 1))
    assert_close(gk.conv(isa, planar, wt, b, s, 1, 3, planar=True), gk.conv("reference", x, wt, b, s, 1, 3))


def _conv_cases():
    cases = []
    shapes = [(1, 1), (7, 7), (13, 15), (16, 9), (15, 15)]
    for i, (ic, oc, (k, s, pad)) in enumerate(itertools.product(
            [1, 3, 8, 17], [1, 5, 8, 16, 20, 33, 40, 70],
            [(3, 2, 1), (3, 1, 1), (5, 2, 2), (1, 1, 0), (3, 2, 0), (5, 1, 1)])):
        h, w = shapes[i % len(shapes)]
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        cases.append((h, w, ic, oc, k, s, pad, i % 7))
    return cases[::3]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("h,w,ic,oc,k,s,pad,act", _conv_cases())
def test_conv_matches_reference(isa, h, w, ic, oc, k, s, pad, act):
    rng = rng_for("conv", h, w, ic, oc, k, s, pad)
    x, wt, b = randn(rng, h, w, ic), randn(rng, oc, ic, k, k, scale=0.3), randn(rng, oc)
    assert_close(gk.conv(isa, x, wt, b, s, pad, act), gk.conv("reference", x, wt, b, s, pad, act))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_NAMES)
def test_conv_strided_row_chunks_every_activation(isa, act):
    rng = rng_for("conv_stride", act)
    h, w, ic, oc = 21, 19, 3, 20
    _, x = wide(rng, (h, w, ic), 1, 2)
    wt, b = randn(rng, oc, ic, 3, 3, scale=0.3), randn(rng, oc)
    out_buf, out = wide(rng, (11, 10, oc), 3, 4, fill=5.0)
    gk.conv(isa, x, wt, b, 2, 1, act, out=out, row_chunk=3)
    assert_close(out, gk.conv("reference", x, wt, b, 2, 1, act))
    assert (out_buf[..., :3] == 5.0).all() and (out_buf[..., 3 + oc:] == 5.0).all()


# ---------------------------------------------------------------------------------------------------------------
# Pools, global average pool, element-wise


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("h,w,k,s,pad", [(15, 13, 3, 2, 1), (8, 9, 2, 2, 0), (7, 7, 3, 1, 1), (1, 1, 1, 1, 0),
                                         (5, 6, 5, 2, 2), (56, 55, 3, 2, 1)])
def test_pools_match_reference(isa, c, h, w, k, s, pad):
    rng = rng_for("pool", c, h, w, k)
    x = randn(rng, h, w, c)
    assert_close(gk.max_pool(isa, x, k, s, pad), gk.max_pool("reference", x, k, s, pad))
    assert_close(gk.avg_pool(isa, x, k, s, pad), gk.avg_pool("reference", x, k, s, pad))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fn", ["max_pool", "avg_pool"])
def test_pools_strided_row_chunks(isa, fn):
    rng = rng_for("pool_stride", fn)
    _, x = wide(rng, (17, 15, 29), 3, 3)
    out_buf, out = wide(rng, (9, 8, 29), 1, 6, fill=-1.0)
    getattr(gk, fn)(isa, x, 3, 2, 1, out=out, row_chunk=2)
    assert_close(out, getattr(gk, fn)("reference", x, 3, 2, 1))
    assert (out_buf[..., :1] == -1.0).all() and (out_buf[..., 30:] == -1.0).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pixels", [1, 49, 169, 3136])
@pytest.mark.parametrize("c", [1, 5, 16, 36, 46, 100, 130, 960])
def test_global_avg_pool(isa, pixels, c):
    rng = rng_for("gap", pixels, c)
    _, x = wide(rng, (pixels, c), 2, 3)
    assert_close(gk.global_avg_pool(isa, x), gk.global_avg_pool("reference", x))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_NAMES)
@pytest.mark.parametrize("c", [1, 5, 12, 20, 46, 130])
def test_add_strided_chunks(isa, act, c):
    rng = rng_for("add", act, c)
    p = 23
    _, a = wide(rng, (p, c), 1, 2)
    _, b = wide(rng, (p, c), 0, 5)
    out_buf, out = wide(rng, (p, c), 3, 1, fill=8.0)
    gk.add(isa, a, b, act, out=out, p_chunk=4)
    assert_close(out, gk.add("reference", a, b, act))
    assert (out_buf[:, :3] == 8.0).all() and (out_buf[:, 3 + c:] == 8.0).all()


@pytest.mark.parametrize("isa", ISAS)
def test_add_in_place(isa):
    rng = rng_for("add_inplace")
    a, b = randn(rng, 31, 46), randn(rng, 31, 46)
    want = gk.add("reference", a, b, 1)
    gk.add(isa, a, b, 1, out=a)
    assert_close(a, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", [1, 3, 8, 20, 36, 60, 100, 130])
def test_scale_channels(isa, c):
    rng = rng_for("scale", c)
    buf, x = wide(rng, (37, c), 2, 3)
    s = randn(rng, c)
    want_buf = buf.copy()
    want_buf[:, 2:2 + c] *= s
    gk.scale_channels(isa, x, s, p_chunk=5)
    assert_close(buf, want_buf)
    assert (buf[:, :2] == want_buf[:, :2]).all() and (buf[:, 2 + c:] == want_buf[:, 2 + c:]).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_NAMES)
@pytest.mark.parametrize("count", [1, 3, 7, 16, 17, 100, 1001])
def test_activate(isa, act, count):
    rng = rng_for("act", act, count)
    x = randn(rng, count, scale=6.0)
    got = gk.activate(isa, x, act)
    assert_close(got, gk.activate("reference", x, act))
    assert (x == randn(rng_for("act", act, count), count, scale=6.0)).all()  # the input is not modified


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", [5, 6], ids=["silu", "sigmoid"])
def test_exp_based_activations_are_accurate(isa, act):
    """The vector exp: relative error of sigmoid/SiLU against float64 stays within a few float32 ulps."""
    x = np.linspace(-87.0, 30.0, 200_001, dtype=np.float32)
    got = gk.activate(isa, x, act).astype(np.float64)
    want = torch_act(torch.from_numpy(x).double(), act).numpy()
    mask = np.abs(want) > 1e-30
    rel = np.abs(got[mask] - want[mask]) / np.abs(want[mask])
    assert rel.max() < 1e-6, rel.max()
    assert np.median(rel) < 1.2e-7


@pytest.mark.parametrize("isa", ISAS + [pytest.param("reference", id="reference")])
def test_special_values(isa):
    nan, inf = np.float32("nan"), np.float32("inf")
    x = np.float32([nan, inf, -inf, 0.0, -0.0, 1e30, -1e30])
    for act in ACTS:
        got = gk.activate(isa, x, act)
        assert np.isnan(got[0]), (ACT_NAMES[act], got)  # NaN in, NaN out
        assert not np.isnan(got[1:]).any() or act in (3, 5), (ACT_NAMES[act], got)
    assert gk.activate(isa, x, 6)[1] == 1.0 and gk.activate(isa, x, 6)[2] < 1e-30
    assert gk.activate(isa, x, 5)[1] == inf
    assert gk.activate(isa, x, 1)[2] == 0.0 and gk.activate(isa, x, 2)[1] == 6.0
    assert gk.activate(isa, x, 4)[1] == 1.0 and gk.activate(isa, x, 4)[2] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Argument validation: bad shapes raise, never crash


def test_validation_raises_value_error():
    rng = rng_for("validate")
    a, w = randn(rng, 4, 5), randn(rng, 6, 5)
    with pytest.raises(ValueError):
        gk.pointwise("reference", a, randn(rng, 6, 4))  # k mismatch
    with pytest.raises(ValueError):
        gk.pointwise(gk.best(), a, w, act=7)
    with pytest.raises(ValueError):
        gk.pointwise(gk.best(), a, w, randn(rng, 5))  # bias length
    with pytest.raises(ValueError):
        gk.pointwise(gk.best(), a, w, residual=randn(rng, 4, 5))
    with pytest.raises(ValueError):
        gk.pointwise(gk.best(), randn(rng, 5, 8)[:, ::2].copy()[:, :0], randn(rng, 6, 0))  # empty
    with pytest.raises(ValueError):
        gk.pointwise(gk.best(), randn(rng, 4, 10)[:, ::2], w)  # non-contiguous last axis
    with pytest.raises(ValueError):
        gk.pointwise(gk.best(), a, w, out=np.zeros((4, 7), np.float32))
    with pytest.raises(ValueError):
        gk.pointwise("no_such_isa", a, w)
    x = randn(rng, 5, 5, 3)
    with pytest.raises(ValueError):
        gk.depthwise(gk.best(), x, randn(rng, 4, 3, 3))  # channel mismatch
    with pytest.raises(ValueError):
        gk.depthwise(gk.best(), x, randn(rng, 3, 3, 3), stride=0)
    with pytest.raises(ValueError):
        gk.depthwise(gk.best(), randn(rng, 2, 2, 3), randn(rng, 3, 5, 5), pad=1)  # kernel > padded input
    with pytest.raises(ValueError):
        gk.depthwise(gk.best(), x, randn(rng, 3, 3, 3), pad=-1)
    with pytest.raises(ValueError):
        gk.conv(gk.best(), x, randn(rng, 8, 4, 3, 3))
    with pytest.raises(ValueError):
        gk.max_pool(gk.best(), x, 3, 2, 2)  # pad > kernel / 2
    with pytest.raises(ValueError):
        gk.add(gk.best(), randn(rng, 3, 4), randn(rng, 3, 5))
    with pytest.raises(ValueError):
        gk.scale_channels(gk.best(), randn(rng, 3, 4), randn(rng, 5))
    with pytest.raises(ValueError):
        gk.global_avg_pool(gk.best(), randn(rng, 3, 4, 5))
    with pytest.raises(ValueError):  # pixels that are not evenly spaced
        gk.depthwise(gk.best(), randn(rng, 6, 6, 3)[:, :5, :], randn(rng, 3, 3, 3))
