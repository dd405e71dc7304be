"""Per-op kernel tables: an engine whose ops run on different tables (compile(kernel_choice=...)) computes what a
single-table engine computes, the measured choice only ever picks the engine's table or its half-width one, and bad
choices are clear errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

import ghostfast
from ghostfast import _core
from ghostfast.program import OP
from test_engine import assert_parity, inputs, randomized, reference

TABLES = _core.kernels.available()
# The table an AVX-512 engine may hand ops to (kernel_choice.h); none for the other tables.
HALF_WIDTH = {"avx512": "avx2"}


def _mixed(num_ops: int, offset: int) -> list[str]:
    """Every table this CPU runs, op after op: neighbouring ops (a Ghost module streaming into the next op, a
    1x1 reading through a folded shuffle) run on different tables."""
    return [TABLES[(i + offset) % len(TABLES)] for i in range(num_ops)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["ghostnet_100", "ghostnet_050", "mobilenet_v3_large", "efficientnet_b0",
                                  "shufflenet_v1_g3", "shufflenet_v2_x1_0", "mnasnet_a1"])
def test_mixed_tables_match_torch_and_one_table(name, threads):
    if len(TABLES) < 2:
        pytest.skip(f"this CPU runs one kernel table only ({TABLES[0]}): nothing to mix")
    model = randomized(name)
    x = inputs((3, 224, 224), n=2)
    ref = reference(model, x)
    fixed = ghostfast.compile(model, batch=2, threads=threads, kernel_choice="fixed")
    single = fixed.run(x)
    for offset in range(2):
        engine = ghostfast.compile(model, batch=2, threads=threads, kernel_choice=_mixed(fixed.num_ops, offset))
        assert len(set(engine.op_isas)) >= 2
        got = engine.run(x)
        assert_parity(got, ref)
        # Tables differ in instruction order only (the sums' order per output is the same), so the logits stay
        # within float rounding of the single-table engine's.
        assert np.abs(got - single).max() <= 1e-5 * np.abs(single).max()


def test_fixed_keeps_every_op_on_the_engine_table():
    model = randomized("ghostnet_050")
    for isa in TABLES:
        engine = ghostfast.compile(model, isa=isa, kernel_choice="fixed")
        assert set(engine.op_isas) == {isa}


def test_measured_choice_picks_the_table_or_its_half_width_one():
    model = randomized("ghostnet_100")
    engine = ghostfast.compile(model)
    allowed = {engine.isa, HALF_WIDTH.get(engine.isa, engine.isa)}
    assert set(engine.op_isas) <= allowed
    prof = engine.profile(iters=2)
    kernel_rows = [r for r in prof["ops"] if r["isa"] is not None]
    assert kernel_rows and {r["isa"] for r in kernel_rows} <= allowed
    # ops without kernels of their own (adds, pools, copies) stay on the engine's table
    data_only = {OP[k] for k in ("add", "max_pool", "avg_pool", "global_avg_pool", "channel_shuffle", "copy",
                                 "activation")}
    assert all(isa == engine.isa for op, isa in zip(engine.program.ops, engine.op_isas) if op[0] in data_only)
    # whatever the timing chose, the engine computes what torch does
    x = inputs((3, 224, 224), n=1)
    assert_parity(engine.run(x), reference(model, x))


def test_environment_turns_measuring_off():
    if "avx512" not in TABLES:
        pytest.skip("no AVX-512 on this CPU: no table has a half-width one, so every engine is one table anyway")
    code = ("import ghostfast; e = ghostfast.compile('ghostnet_050'); "
            "print(','.join(sorted(set(e.op_isas))), e.isa)")
    env = {**os.environ, "GHOSTFAST_KERNEL_CHOICE": "fixed"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    tables, isa = out.stdout.split()
    assert tables == isa


@pytest.mark.parametrize("bad,exc,match", [
    ("fastest", ValueError, "kernel_choice must be 'measure', 'fixed'"),
    (["avx2"], ValueError, "one table name"),
    (7, TypeError, "kernel_choice must be a str or a sequence"),
    ("", ValueError, "kernel_choice must be"),
])
def test_bad_kernel_choice(bad, exc, match):
    with pytest.raises(exc, match=match):
        ghostfast.compile("ghostnet_050", kernel_choice=bad)


def test_unknown_or_unavailable_table_in_the_list():
    n = ghostfast.compile("ghostnet_050", kernel_choice="fixed").num_ops
    with pytest.raises(ValueError, match="isa must be None or one of"):
        ghostfast.compile("ghostnet_050", kernel_choice=["avx1024"] * n)
    missing = [t for t in ("generic", "avx2", "avx512", "neon") if t not in TABLES]
    if missing:
        with pytest.raises(ValueError, match="not available on this CPU"):
            ghostfast.compile("ghostnet_050", kernel_choice=[missing[0]] * n)


def test_load_with_a_bad_choice_is_the_callers_error(tmp_path):
    path = tmp_path / "g.gfe"
    ghostfast.compile("ghostnet_050").save(path)
    with pytest.raises(ValueError, match="one table name") as info:
        ghostfast.load(path, kernel_choice=["generic"])
    assert type(info.value) is ValueError  # not the file's ModelFileError
    engine = ghostfast.load(path, kernel_choice="fixed")
    assert len(set(engine.op_isas)) == 1
