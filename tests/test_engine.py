"""The native engine: parity with PyTorch on every zoo model, bad input, concurrency, save / load."""
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

import ghostfast
from ghostfast import models
from ghostfast.lower import UnsupportedLayer
from ghostfast.program import ModelFileError

ZOO = models.names()


def randomized(name_or_model, seed=0):
    """A zoo model in eval mode with random BN statistics and affine parameters.

    Default-initialised BN (mean 0, var 1, gamma 1, beta 0) lets outputs shrink towards zero, where any
    tolerance passes; random statistics make the comparison mean something.
    """
    model = models.create(name_or_model) if isinstance(name_or_model, str) else name_or_model
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


def reference(model, x):
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def assert_parity(got, ref):
    scale = np.abs(ref).max()
    assert scale > 1e-3, f"reference output too small ({scale}) for the comparison to mean anything"
    err = np.abs(got - ref).max()
    assert err <= 1e-4 * scale, f"max |native - torch| = {err:.3g}, {err / scale:.3g} of max |torch| = {scale:.3g}"
    assert (got.argmax(1) == ref.argmax(1)).all(), "top-1 differs"


def inputs(shape, n=16, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *shape), dtype=np.float32)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ZOO)
def test_parity_every_model(name, threads):
    model = randomized(name)
    spec = models.spec(name)
    x = inputs((3, *spec.input_size))
    ref = reference(model, x)
    engine = ghostfast.compile(model, batch=4, threads=threads)
    batched = np.concatenate([engine.run(x[i:i + 4]) for i in range(0, 16, 4)])
    assert_parity(batched, ref)
    single = np.concatenate([engine.run(x[i:i + 1]) for i in range(16)])
    assert_parity(single, ref)


@pytest.mark.parametrize("name,size", [("ghostnet_050", 160), ("ghostnet_100", (192, 256)), ("ghostnet_130", 257),
                                       ("mobilenet_v3_large", 193), ("mobilenet_v3_small", 320),
                                       ("shufflenet_v2_x1_0", 160), ("efficientnet_lite0", 200)])
@pytest.mark.parametrize("threads", [1, 2])
def test_parity_other_resolutions(name, size, threads):
    # Odd sizes put row bands and ring-buffer steps (1 thread: a Ghost module streaming into its depthwise)
    # out of step with the image height.
    model = randomized(name)
    h, w = (size, size) if isinstance(size, int) else size
    x = inputs((3, h, w), n=4)
    engine = ghostfast.compile(model, input_size=(h, w), batch=4, threads=threads)
    assert_parity(engine.run(x), reference(model, x))


def test_ghost_rows_stream_through_a_ring():
    # GhostNet's first Ghost modules stream their rows through a ring into the op that reads them (a depthwise, a
    # Ghost module), and the intermediate planes then take no arena space. At 1 thread every such pair does; at
    # 2 threads only those whose consumer has at least 56 output rows (ghost_stream_slices), in row slices:
    # blocks 0-2, not block 3 (a depthwise of 28 rows) nor block 5 (28x28 Ghost module). Block 1's 112x112x48
    # plane and its 112x112x16 input, were they alive together, would take more than either whole arena.
    one, two = ghostfast.compile("ghostnet_100", threads=1), ghostfast.compile("ghostnet_100", threads=2)
    assert max(one.arena_bytes, two.arena_bytes) < 112 * 112 * (48 + 16) * 4
    # The profile shows a streamed pair as one row named after both ops; the consumer's own row says where it
    # went and is no op type of its own in the per-type totals.
    prof = one.profile(iters=1)
    rows = {r["op"]: r for r in prof["ops"]}
    for block in (1, 3):
        assert any(n.startswith(f"blocks.{block}.0.ghost1 + blocks.{block}.0.conv_dw") and r["type"] == "ghost"
                   for n, r in rows.items())
    streamed = {n for n, r in rows.items() if r["type"] == "streamed"}
    assert {f"(streamed into blocks.{b}.0.ghost1)" for b in (0, 1, 2, 3, 5)} <= streamed
    assert "streamed" not in prof["by_type"]
    rows = {r["op"]: r for r in two.profile(iters=1)["ops"]}
    assert {n for n, r in rows.items() if r["type"] == "streamed"} == {
        f"(streamed into blocks.{b}.0.ghost1)" for b in (0, 1, 2)}
    assert rows["blocks.3.0.conv_dw + blocks.3.0.bn_dw"]["type"] == "depthwise"


@pytest.mark.parametrize("size", [112, 117])
@pytest.mark.parametrize("threads", [2, 3])
def test_ghost_modules_stream_in_slices(size, threads):
    # At threads, a Ghost module streams into a consumer of at least 56 output rows as one region of one row
    # slice per thread, each with its own ring, recomputing the rows beyond its edge that the consumer reads:
    # here into a stride-2 depthwise, and (the next bottleneck) into a Ghost module with a fused residual, whose
    # cheap rows at a slice edge the second slice to finish computes. 117 rows make 59 rows after the stride
    # and slices of unequal heights; a batch of 3 runs one region per image. The depthwise's output rows of one
    # slice share no memory with the input rows another slice still reads (plan_arena: here the stem's output,
    # which nothing reads after the Ghost module, would otherwise be the depthwise's output).
    from ghostfast.models.ghostnet import GhostBottleneck, GhostModule
    from ghostfast.models.layers import ConvNormAct

    model = randomized(nn.Sequential(
        ConvNormAct(3, 16, 3, stride=1, act_layer=nn.ReLU),
        GhostModule(16, 48, relu=True),
        nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=48, bias=False), nn.BatchNorm2d(48),
        GhostBottleneck(48, 48, 24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    ))
    x = inputs((3, size, size), n=3)
    engine = ghostfast.compile(model, input_size=size, batch=3, threads=threads)
    ref = reference(model, x)
    got = engine.run(x)
    assert_parity(got, ref)
    assert_parity(np.concatenate([engine.run(x[i:i + 1]) for i in range(3)]), ref)
    # No op of this model splits a reduction across threads, so every thread count computes each output element
    # the same way: a stale or missing row at a slice's edge, which the global pool dilutes below the parity
    # tolerance, still shows here.
    np.testing.assert_array_equal(got, ghostfast.compile(model, input_size=size, batch=3, threads=1).run(x))
    rows = {r["op"]: r for r in engine.profile(iters=1)["ops"]}
    assert rows["(streamed into 1)"]["type"] == rows["(streamed into 4.ghost1)"]["type"] == "streamed"

    def regions(e, size):
        before = e.parallel_regions
        e.run(np.ascontiguousarray(x[:1, :, :size, :size]))
        return e.parallel_regions - before

    # At 110 rows (55 after the stride) nothing streams: the first Ghost module (a 1x1 and a cheap depthwise),
    # the depthwise, and the bottleneck's two Ghost modules (two each) take seven regions instead of two.
    unstreamed = ghostfast.compile(model, input_size=110, threads=threads)
    assert regions(unstreamed, 110) - regions(engine, size) == 5


def test_every_isa_table_matches(monkeypatch):
    from ghostfast import _core

    model = randomized("ghostnet_050")
    x = inputs((3, 224, 224), n=2)
    ref = reference(model, x)
    for isa in _core.kernels.available():
        assert_parity(ghostfast.compile(model, batch=2, isa=isa).run(x), ref)


def test_model_assembled_from_zoo_blocks():
    from ghostfast.models.ghostnet import GhostBottleneck
    from ghostfast.models.layers import ConvNormAct

    model = nn.Sequential(
        ConvNormAct(3, 16, 3, stride=2, act_layer=nn.Hardswish),
        GhostBottleneck(16, 48, 24, dw_kernel_size=5, stride=2, se_ratio=0.25),
        GhostBottleneck(24, 72, 24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    )
    model = randomized(model)
    x = inputs((3, 64, 64), n=3)
    engine = ghostfast.compile(model, input_size=64, batch=3)
    assert_parity(engine.run(x), reference(model, x))


@pytest.mark.parametrize("threads", [1, 2])
def test_small_maps_odd_channels(threads):
    # Maps of 7, 4 and 2 rows, where multi-thread runs split a Ghost module's 1x1 by columns, its depthwise by
    # channel chunks whose last one ends in a partial vector (22 = 16 + 6, 46 = 32 + 14), and an SE's pool into
    # partial means over as few as 4 pixels.
    from ghostfast.models.ghostnet import GhostBottleneck
    from ghostfast.models.layers import ConvNormAct

    model = randomized(nn.Sequential(
        ConvNormAct(3, 20, 3, stride=2, act_layer=nn.ReLU),
        GhostBottleneck(20, 44, 28, stride=2, se_ratio=0.25),
        GhostBottleneck(28, 92, 28, se_ratio=0.25),
        GhostBottleneck(28, 60, 36, dw_kernel_size=5, stride=2, se_ratio=0.25),
        GhostBottleneck(36, 76, 36, stride=2, se_ratio=0.25),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(36, 10),
    ))
    x = inputs((3, 28, 28), n=3)
    ref = reference(model, x)
    engine = ghostfast.compile(model, input_size=28, batch=3, threads=threads)
    assert_parity(engine.run(x), ref)
    assert_parity(np.concatenate([engine.run(x[i:i + 1]) for i in range(3)]), ref)


@pytest.mark.parametrize("size", [112, 117])
def test_ghost_modules_in_row_slices(size):
    # At 2 threads a Ghost module on a map of at least 112 rows that streams into nothing (here each reads or
    # feeds an SE) runs as one region of 8 row slices, and the cheap rows at an edge between two slices are
    # computed by whichever of the two finishes second. 117 rows make slices of unequal heights; a batch of 3
    # runs the ReLU module's images in one region and the fused-residual module's images one after another. At
    # 111 rows each module runs as two regions (its 1x1, its depthwise).
    from ghostfast.models.ghostnet import GhostBottleneck
    from ghostfast.models.layers import ConvNormAct

    model = randomized(nn.Sequential(
        ConvNormAct(3, 16, 3, stride=1, act_layer=nn.ReLU),
        GhostBottleneck(16, 40, 16, se_ratio=0.25),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ))
    x = inputs((3, size, size), n=3)
    engine = ghostfast.compile(model, input_size=size, batch=3, threads=2)
    assert_parity(engine.run(x), reference(model, x))

    def regions(e):
        before = e.parallel_regions
        e.run(np.ascontiguousarray(x[:1, :, :e.input_shape[1], :e.input_shape[2]]))
        return e.parallel_regions - before

    unsliced = ghostfast.compile(model, input_size=111, threads=2)
    assert regions(unsliced) - regions(engine) == 2


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_channel_shuffle_folded_into_the_grouped_1x1_that_reads_it(threads):
    # ShuffleNetV1's shuffle between its depthwise and its second grouped 1x1 never runs: the 1x1 reads group g's
    # k-th input at channel k * groups + g of the unshuffled map (plan_folds). 4 groups of 7 channels, 9x9 maps
    # (81 rows: row blocks of 32, 32 and 17), a batch of 3. A shuffle whose reader is not a 1x1 of matching
    # groups (here a 1x1 of 2 groups after the last unit) still runs.
    from ghostfast.models.layers import ConvNormAct
    from ghostfast.models.shufflenet_v1 import ChannelShuffle, ShuffleUnit

    model = randomized(nn.Sequential(
        ConvNormAct(3, 28, 3, stride=2, act_layer=nn.ReLU),
        ShuffleUnit(28, 112, groups=4, stride=2),
        ShuffleUnit(112, 112, groups=4, stride=1),
        ChannelShuffle(4), nn.Conv2d(112, 56, 1, groups=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(56, 10),
    ))
    x = inputs((3, 36, 36), n=3)
    engine = ghostfast.compile(model, input_size=36, batch=3, threads=threads)
    ref = reference(model, x)
    assert_parity(engine.run(x), ref)
    assert_parity(np.concatenate([engine.run(x[i:i + 1]) for i in range(3)]), ref)
    rows = engine.profile(iters=1)["ops"]
    folded = [r["op"] for r in rows if r["type"] == "folded"]
    assert len(folded) == 2 and all("shuffle" in n for n in folded)
    assert sum(r["type"] == "channel_shuffle" for r in rows) == 1


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2)).eval()
    with pytest.raises(UnsupportedLayer, match=r"\b1\b.*LeakyReLU"):
        ghostfast.compile(model, input_size=16)


@pytest.fixture(scope="module")
def ghost_engine():
    model = randomized("ghostnet_050")
    return model, ghostfast.compile(model, batch=4, threads=2)


def test_accepts_torch_tensors_and_numpy(ghost_engine):
    model, engine = ghost_engine
    x = inputs((3, 224, 224), n=2)
    np.testing.assert_array_equal(engine.run(torch.from_numpy(x)), engine.run(x))
    assert engine.run(x).shape == (2, 1000) and engine.run(x).dtype == np.float32


@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((3, 224, 224), np.float32), ValueError, "4-D"),
    (np.zeros((1, 3, 224, 225), np.float32), ValueError, "shape"),
    (np.zeros((1, 4, 224, 224), np.float32), ValueError, "shape"),
    (np.zeros((1, 3, 224, 224), np.float64), TypeError, "float32"),
    (np.zeros((1, 3, 224, 224), np.int32), TypeError, "float32"),
    (np.zeros((0, 3, 224, 224), np.float32), ValueError, "batch"),
    (np.zeros((5, 3, 224, 224), np.float32), ValueError, "batch"),
    (np.zeros((1, 224, 224, 3), np.float32).transpose(0, 3, 1, 2), ValueError, "contiguous"),
    ([[1.0, 2.0]], TypeError, "numpy array"),
    ("image.png", TypeError, "numpy array"),
])
def test_bad_input(ghost_engine, bad, exc, match):
    _, engine = ghost_engine
    with pytest.raises(exc, match=match):
        engine.run(bad)


def test_nan_and_inf_propagate(ghost_engine):
    _, engine = ghost_engine
    x = inputs((3, 224, 224), n=2)
    x[0, 0, 100, 100] = np.nan
    x[1, 1, 50, 50] = np.inf
    out = engine.run(x)
    assert out.shape == (2, 1000)
    assert not np.isfinite(out[0]).all()


def test_concurrent_runs_are_safe(ghost_engine):
    _, engine = ghost_engine
    xs = [inputs((3, 224, 224), n=1, seed=s) for s in range(6)]
    expected = [engine.run(x) for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(3):
            results[i] = engine.run(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [2, 5])
def test_runs_after_the_workers_fell_asleep(threads):
    # Pool workers spin for a while after a job, then sleep; the caller wakes them only when one is asleep.
    # Runs back to back (workers spinning) and after pauses much longer than the spin (workers asleep, or
    # falling asleep just as the job is published) must give identical results: a worker that woke late and ran
    # a stale job's function, or a task run twice or never, would change them. 5 threads on this machine's cores
    # also covers workers descheduled while the caller finishes their share. (A lost wake-up would not show here:
    # the caller then takes the sleeping worker's share, so it costs speed only.)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1, groups=16),
                          nn.Conv2d(16, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    engine = ghostfast.compile(model, (3, 32, 32), threads=threads)
    x = inputs((3, 32, 32), n=1)
    want = engine.run(x)
    np.testing.assert_allclose(want, reference(model, x), rtol=1e-4, atol=1e-5)
    for i in range(60):
        if i % 3 == 0:
            time.sleep(0.002 + 0.001 * (i % 5))
        np.testing.assert_array_equal(engine.run(x), want)


def test_engine_properties(ghost_engine):
    _, engine = ghost_engine
    assert engine.input_shape == (3, 224, 224) and engine.max_batch == 4 and engine.classes == 1000
    assert engine.threads == 2 and engine.isa in ghostfast.engine.KERNEL_TABLES
    assert engine.arena_bytes > 0 and "ghostnet_050" in repr(engine)


def test_parallel_regions_counts_thread_pool_jobs():
    # benchmarks/dispatch_overhead.py reads a run's regions from this counter. One thread: every op runs inline.
    # Two threads: each op with more than one task is one job, the same number every run; a 1x1 over a 1x1 map
    # (one task) runs inline and adds none.
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.AdaptiveAvgPool2d(1),
                          nn.Conv2d(16, 10, 1), nn.Flatten()).eval()
    x = inputs((3, 32, 32), n=1)
    one = ghostfast.compile(model, (3, 32, 32), threads=1)
    one.run(x)
    assert one.parallel_regions == 0
    two = ghostfast.compile(model, (3, 32, 32), threads=2)
    counts = []
    for _ in range(3):
        before = two.parallel_regions
        two.run(x)
        counts.append(two.parallel_regions - before)
    assert counts[0] == counts[1] == counts[2]
    assert 2 <= counts[0] < two.num_ops


def test_compile_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ghostfast.compile("ghostnet_050", batch=0)
    with pytest.raises(ValueError):
        ghostfast.compile("ghostnet_050", threads=0)
    with pytest.raises(ValueError):
        ghostfast.compile("ghostnet_050", isa="sse9")
    with pytest.raises(ValueError, match="Did you mean"):
        ghostfast.compile("ghostnet_05")


# ---- save / load -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory, ghost_engine):
    _, engine = ghost_engine
    path = tmp_path_factory.mktemp("engine") / "ghostnet_050.gfe"
    engine.save(path)
    return path


def test_save_load_roundtrip(saved, ghost_engine):
    _, engine = ghost_engine
    x = inputs((3, 224, 224), n=3)
    loaded = ghostfast.load(saved, threads=1)
    np.testing.assert_allclose(loaded.run(x), engine.run(x), rtol=0, atol=1e-5 * np.abs(engine.run(x)).max())
    assert loaded.model == "ghostnet_050" and loaded.max_batch == 4


def test_load_runs_without_torch(saved, ghost_engine, tmp_path):
    _, engine = ghost_engine
    x = inputs((3, 224, 224), n=2)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any attempt to import torch now fails
        import numpy as np
        import ghostfast
        engine = ghostfast.load({str(saved)!r})
        np.save({str(tmp_path / "y.npy")!r}, engine.run(np.load({str(tmp_path / "x.npy")!r})))
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), engine.run(x), rtol=0,
                               atol=1e-5 * np.abs(engine.run(x)).max())


def test_truncated_files_are_rejected(saved, tmp_path):
    blob = saved.read_bytes()
    bad = tmp_path / "bad.gfe"
    for cut in sorted({0, 1, 7, 8, 12, 19, 20, 21, 100, 1000, len(blob) // 2, len(blob) - 5, len(blob) - 1,
                       *np.random.default_rng(0).integers(0, len(blob), 40).tolist()}):
        bad.write_bytes(blob[:cut])
        with pytest.raises(ModelFileError):
            ghostfast.load(bad)


def test_flipped_bytes_are_rejected(saved, tmp_path):
    blob = bytearray(saved.read_bytes())
    bad = tmp_path / "flip.gfe"
    for pos in sorted({0, 8, 12, 20, 30, 200, len(blob) - 1, *np.random.default_rng(1).integers(0, len(blob), 60).tolist()}):
        mutated = bytearray(blob)
        mutated[pos] ^= 0x5A
        bad.write_bytes(bytes(mutated))
        with pytest.raises(ModelFileError):
            ghostfast.load(bad)


def _resave(program, path):
    from ghostfast.program import save_program

    save_program(program, path)
    return path


def test_wrong_version_is_rejected(saved, tmp_path):
    import struct
    import zlib

    blob = bytearray(saved.read_bytes()[:-4])
    struct.pack_into("<I", blob, 8, 99)
    bad = tmp_path / "v99.gfe"
    bad.write_bytes(bytes(blob) + struct.pack("<I", zlib.crc32(bytes(blob))))
    with pytest.raises(ModelFileError, match="version 99"):
        ghostfast.load(bad)


def test_semantically_corrupt_programs_are_rejected(saved, tmp_path):
    """Files with a valid checksum but an inconsistent program: the engine's own validation must refuse them."""
    from ghostfast.program import load_program

    rng = np.random.default_rng(2)
    rejected = 0
    for trial in range(60):
        p = load_program(saved)
        field = trial % 6
        # Mutate an op that has the field being mutated (every op has inputs and an output; not all have
        # parameters or weights).
        candidates = [j for j, op in enumerate(p.ops) if (field != 2 or op[3]) and (field != 3 or op[4])]
        i = int(rng.choice(candidates))
        t, ins, out, params, tens, name = p.ops[i]
        huge = int(rng.choice([-1, 10**6, 2**31 - 1, -(2**31)]))
        if field == 0:
            ins = [huge] + ins[1:]
        elif field == 1:
            out = huge
        elif field == 2:
            params = list(params)
            params[int(rng.integers(len(params)))] = huge
        elif field == 3:
            tens = [huge] + tens[1:]
        elif field == 4:
            t = int(rng.choice([0, 13, 99, -5]))
        else:
            p.tensors[int(rng.integers(len(p.tensors)))] = np.zeros(3, np.float32)
        p.ops[i] = (t, ins, out, params, tens, name)
        try:
            ghostfast.load(_resave(p, tmp_path / f"c{trial}.gfe")).run(inputs((3, 224, 224), n=1))
        except ValueError:
            rejected += 1
    assert rejected >= 55  # a few mutations may turn a value into another valid one


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "x.gfe"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelFileError, match="not a ghostfast model file"):
        ghostfast.load(bad)
    with pytest.raises(ModelFileError, match="cannot read"):
        ghostfast.load(tmp_path / "missing.gfe")
