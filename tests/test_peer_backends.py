"""The peer runtimes (openvino, litert, ncnn, mnn): outputs equal torch's, settings read back from the runtime,
conversions cached, missing packages skipped with the install hint, MNN's converter kept away from pip, and the
report's best-peer table.

Each model instance lives for the whole session, so each peer converts each model once (LiteRT's conversion,
10-20 s a model, is most of this file's time). Timing is never asserted.
"""
import gc
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from ghostfast import benchmark
from ghostfast.backends import BackendUnavailable, get_backend
from ghostfast.backends._peers import ConversionCache, ConversionError
from ghostfast.compare_report import best_peer_table, best_peers, full_markdown, summary_markdown, write_report
from ghostfast.comparison import RECORD_KEYS, Comparison, compare, reference_input, reference_model, torch_reference
from ghostfast.parity import check_output, randomize_batchnorm

PEERS = ("openvino", "litert", "ncnn", "mnn")
# Small but representative: odd channel counts (GhostNet 0.5x), SE and hard-swish (MobileNetV3-Small), channel
# shuffle (ShuffleNetV2).
MODELS = ("ghostnet_050", "mobilenet_v3_small", "shufflenet_v2_x0_5")
# What each peer imports: (module, what the skip message must name).
NEEDS = {
    "openvino": [("onnx", "onnx"), ("openvino", "openvino")],
    "litert": [("litert_torch", "litert-torch"), ("ai_edge_litert.interpreter", "ai-edge-litert")],
    "ncnn": [("onnx", "onnx"), ("pnnx", "pnnx"), ("ncnn", "ncnn")],
    "mnn": [("onnx", "onnx"), ("MNN", "mnn")],
}


def require(peer):
    """Skip, with the reason, when a package the peer needs is not installed (CI has them all)."""
    for module, dist in NEEDS[peer]:
        if module == "litert_torch":  # found, not imported: importing it pulls JAX into the test process
            if importlib.util.find_spec(module) is None:
                pytest.skip(f"{dist} is not installed")
        else:
            pytest.importorskip(module, reason=f"{dist} is not installed")


@pytest.fixture(scope="session")
def zoo():
    """model name -> (instance with randomized BN, seeded input, torch's output), shared by every test."""
    out = {}
    for name in MODELS:
        model, x = reference_model(name), reference_input(name)
        out[name] = (model, x, torch_reference(model, x))
    return out


def assert_fp32_and_threads(peer, runner, threads):
    """What the runtime itself reports: the thread count asked for, fp32 arithmetic and weights."""
    eff = runner.effective()
    assert runner.threads == threads
    assert eff["threads"] == threads, eff
    if peer == "openvino":
        assert eff["precision"] == "f32"
        assert eff["runtime_precisions"].get("f32", 0) > 0
        from ghostfast.backends.openvino import REDUCED

        assert not set(eff["runtime_precisions"]) & set(REDUCED), eff
        assert (eff["performance_hint"], eff["num_streams"]) == ("LATENCY", 1)
    elif peer == "ncnn":
        assert not any(eff[k] for k in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                                        "use_bf16_storage") if k in eff), eff
        assert eff["bytes_per_weight"] > 3.9
    elif peer == "mnn":
        assert eff["precision"] == "normal" and eff["bytes_per_weight"] > 3.9
    elif peer == "litert":
        assert "float32" in eff["tensor_types"] and eff["reduced_precision_tensors"] == []


# ---- outputs and settings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("peer", PEERS)
def test_output_matches_torch(peer, name, threads, zoo):
    require(peer)
    model, x, reference = zoo[name]
    with get_backend(peer).prepare(model, x, threads) as runner:
        out = runner.output()
        assert out.shape == reference.shape == (1, 1000) and out.dtype == np.float32
        check = check_output(out, reference)
        assert check["check_ok"] and check["check_max_rel_err"] < 1e-5, check
        assert_fp32_and_threads(peer, runner, threads)
        assert runner.time(3, 1).shape == (3,)
        assert np.array_equal(runner.output(), out)  # the bound buffers give the same answer every time


@pytest.mark.parametrize("peer", PEERS)
def test_conversion_is_cached_per_model(peer, zoo):
    require(peer)
    model, x, _ = zoo["mobilenet_v3_small"]
    cache = sys.modules[f"ghostfast.backends.{peer}"]._CACHE
    get_backend(peer).prepare(model, x, 1).close()
    converted = cache.conversions
    folders = cache.folders()
    with get_backend(peer).prepare(model, x, 2) as runner:
        assert runner.threads == 2
    assert cache.conversions == converted and cache.folders() == folders and all(f.is_dir() for f in folders)


@pytest.mark.parametrize("peer", PEERS)
def test_description_names_precision_and_threads(peer):
    d = get_backend(peer).description
    assert "\n" not in d and "fp32" in d.lower().replace("f32", "fp32") and "threads" in d


def test_openvino_precision_readback_sees_what_runs_without_the_hint(zoo):
    # The check the runner makes, on a model compiled without the precision hint: on CPUs with AVX-512 BF16 or
    # AMX OpenVINO picks bf16 there, elsewhere f32; the runner's hint makes it f32 everywhere.
    require("openvino")
    from ghostfast.backends import openvino as ov_backend

    model, x, _ = zoo["ghostnet_050"]
    core = ov_backend._core()
    compiled = core.compile_model(ov_backend._read_model(model, x), "CPU", {"INFERENCE_NUM_THREADS": 1})
    default = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    counts = ov_backend.runtime_precisions(compiled)
    assert default in ("bf16", "f16", "f32")
    assert ("bf16" in counts) == (default == "bf16")


# ---- the conversion cache -------------------------------------------------------------------------------------------

def test_conversion_cache_converts_once_and_cleans_up():
    cache = ConversionCache("test")
    calls = []

    def convert(folder):
        calls.append(folder)
        (folder / "m.bin").write_bytes(b"x")
        return {"bin": folder / "m.bin"}

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    x = torch.randn(1, 3, 8, 8)
    first = cache.get(model, x, convert)
    assert cache.get(model, x, convert) is first and len(calls) == 1 and cache.conversions == 1
    # Another input shape is another entry; the first stays.
    cache.get(model, torch.randn(2, 3, 8, 8), convert)
    assert len(calls) == 2 and calls[0].is_dir()
    # New weights in place (randomized BN): every stale entry is reconverted, its folder removed.
    randomize_batchnorm(model, seed=5)
    cache.get(model, x, convert)
    assert len(calls) == 3 and not calls[0].exists() and not calls[1].exists()
    # The model dies: its folders go with it.
    live = cache.folders()
    del model
    gc.collect()
    assert live and not any(f.exists() for f in live) and cache.folders() == []


def test_failed_conversion_leaves_no_folder_and_caches_nothing():
    cache = ConversionCache("test")
    seen = []

    def convert(folder):
        seen.append(folder)
        raise ConversionError("converter said no")

    model = nn.Conv2d(3, 4, 3)
    with pytest.raises(ConversionError, match="converter said no"):
        cache.get(model, torch.randn(1, 3, 8, 8), convert)
    assert not seen[0].exists() and cache.conversions == 0 and cache.folders() == []


# ---- missing packages -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer,module,dist", [(p, m, d) for p, needs in NEEDS.items() for m, d in needs])
def test_missing_package_is_backend_unavailable(peer, module, dist, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(BackendUnavailable) as info:
        get_backend(peer).check_available()
    message = str(info.value)
    assert f"'{dist}'" in message and "pip install -c constraints-cpu.txt '.[peers]'" in message


def test_missing_peer_is_a_recorded_skip(monkeypatch):
    monkeypatch.setitem(sys.modules, "ncnn", None)
    res = compare("mobilenet_v3_small", backends=["torch", "ncnn"], threads=1, iters=2, rounds=1, progress=False)
    by = {r["backend"]: r for r in res}
    assert by["torch"]["status"] == "ok"
    assert by["ncnn"]["status"] == "skipped" and "'ncnn'" in by["ncnn"]["reason"]
    assert "[peers]" in summary_markdown(res)


# ---- conversion failures and MNN's converter --------------------------------------------------------------------------

def test_mnn_never_imports_its_logger_or_spawns_pip(monkeypatch):
    require("mnn")
    from ghostfast.backends import mnn

    spawned = []

    def refuse(*args, **kwargs):
        spawned.append(args)
        raise AssertionError(f"MNN conversion tried to start a process: {args}")

    for name in ("system", "popen", "execv", "execvp", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    model = randomize_batchnorm(_tiny(), seed=1)
    x = torch.randn(1, 3, 16, 16)
    with get_backend("mnn").prepare(model, x, 1) as runner:
        with torch.inference_mode():
            assert check_output(runner.output(), model(x).numpy())["check_ok"]
    assert mnn._CACHE.conversions >= 1 and not spawned
    assert not [m for m in sys.modules if m.startswith("MNN.tools") or m.startswith("aliyun")]


def _tiny():
    """A conv / BN / linear net small enough that converting it takes a fraction of a second."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10)).eval()


def test_conversion_failures_are_clear_and_recorded(monkeypatch):
    require("ncnn")
    require("litert")
    from ghostfast.backends import litert, ncnn

    x = torch.randn(1, 3, 16, 16)
    # pnnx exiting with an error: the message says pnnx failed and quotes it.
    monkeypatch.setattr(ncnn, "pnnx_executable", lambda: "false")
    with pytest.raises(ConversionError, match="pnnx failed"):
        get_backend("ncnn").prepare(_tiny(), x, 1)
    # litert-torch's child failing: its last lines are in the error.
    monkeypatch.setattr(litert, "_CHILD", "import sys; print('cannot lower aten.frobnicate'); sys.exit(3)")
    with pytest.raises(ConversionError, match="exit 3.*cannot lower aten.frobnicate"):
        get_backend("litert").prepare(_tiny(), x, 1)
    # In a comparison the failure is an error record, not an exception.
    res = compare("mobilenet_v3_small", backends=["torch", "ncnn"], threads=1, iters=2, rounds=1, progress=False)
    by = {r["backend"]: r for r in res}
    assert by["torch"]["status"] == "ok"
    assert by["ncnn"]["status"] == "error" and "pnnx failed" in by["ncnn"]["reason"]


# ---- compare() and the report -------------------------------------------------------------------------------------------

def test_compare_with_two_peers_reports_the_best_peer(tmp_path):
    require("openvino")
    require("ncnn")
    res = compare("ghostnet_050", backends=["native", "openvino", "ncnn"], threads=1, iters=4, rounds=2,
                  progress=False)
    assert [(r["backend"], r["status"]) for r in res] == [("native", "ok"), ("openvino", "ok"), ("ncnn", "ok")], \
        [r["reason"] for r in res]
    assert all(r["check_ok"] and r["check_max_rel_err"] < 1e-5 for r in res)
    env = res.environment
    assert {"openvino", "ncnn", "pnnx"} <= set(env["versions"])
    assert "INFERENCE_PRECISION_HINT f32" in env["backends"]["openvino"]
    paths = write_report(res, tmp_path, plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "native against the best peer runtime" in md and "fastest ok of openvino, ncnn" in md
    row = next(line for line in md.splitlines() if line.startswith("| ghostnet_050 ") and "/2 " in line)
    best = min((r for r in res if r["backend"] != "native"), key=lambda r: r["median_ms"])
    native = next(r for r in res if r["backend"] == "native")
    assert f"| {best['backend']} " in row and f"{native['median_ms'] / best['median_ms']:.2f}" in row
    assert "backends: native:" in md and {p.name for p in paths} == {"report.md", "results.csv", "results.json"}


def _rec(model, backend, threads, ms, status="ok", batch=1):
    r = dict.fromkeys(RECORD_KEYS)
    r.update(model=model, backend=backend, threads=threads, batch=batch, status=status,
             median_ms=ms if status == "ok" else None, params=1e6, macs=1e8, top1=70.0,
             reason=None if status == "ok" else f"{backend} {status}")
    return r


def test_best_peer_picks_the_fastest_ok_peer():
    records = [_rec("a", "native", 1, 2.0), _rec("a", "torch", 1, 1.0), _rec("a", "onnxruntime", 1, 3.0),
               _rec("a", "openvino", 1, 2.5), _rec("a", "ncnn", 1, None, "error"), _rec("a", "mnn", 1, 2.5)]
    (row,) = best_peers(records)
    # torch is faster but no peer; ncnn failed; openvino and mnn tie and openvino comes first in PEER_BACKENDS.
    assert row["best_peer"] == "openvino" and row["peer_ms"] == 2.5
    assert row["native_over_peer"] == pytest.approx(0.8) and (row["peers_ok"], row["peers_compared"]) == (3, 4)
    text = best_peer_table(records)
    assert "| a " in text and "| openvino " in text and "0.80" in text and "3/4" in text


def test_best_peer_with_missing_or_skipped_peers_and_geomean():
    records = []
    for model, native_ms, ort_ms in (("a", 1.0, 2.0), ("b", 4.0, 2.0), ("c", 3.0, None)):
        records.append(_rec(model, "native", 1, native_ms))
        records.append(_rec(model, "onnxruntime", 1, ort_ms, "ok" if ort_ms else "skipped"))
        records.append(_rec(model, "litert", 1, None, "skipped"))
    records.append(_rec("d", "native", 1, None, "error"))
    records.append(_rec("d", "onnxruntime", 1, 1.0))
    rows = {r["model"]: r for r in best_peers(records)}
    assert rows["c"]["best_peer"] is None and rows["c"]["native_over_peer"] is None and rows["c"]["peers_ok"] == 0
    assert rows["d"]["native_ms"] is None and rows["d"]["best_peer"] == "onnxruntime"
    text = best_peer_table(records)
    c_row = next(line for line in text.splitlines() if line.startswith("| c "))
    assert "0/2" in c_row and c_row.count("| -") >= 2
    assert "| error " in next(line for line in text.splitlines() if line.startswith("| d "))
    # Geometric mean over the models with a ratio: 0.5 and 2.0 -> 1.00.
    geo = next(line for line in text.splitlines() if "geomean" in line)
    assert "**1.00**" in geo


def test_best_peer_table_per_thread_count_and_batch():
    records = [_rec("a", b, t, ms, batch=bs) for bs in (1, 4) for t in (1, 2)
               for b, ms in (("native", 1.0 * t * bs), ("mnn", 2.0 * bs))]
    text = best_peer_table(records)
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert text.count("**geomean**") == 4 and "batch" in header
    assert [r["native_over_peer"] for r in best_peers(records)] == [0.5, 1.0, 0.5, 1.0]


def test_no_peer_no_table():
    records = [_rec("a", "native", 1, 1.0), _rec("a", "torch", 1, 2.0)]
    assert best_peers(records) == [] and best_peer_table(records) == ""
    res = Comparison(records, settings={"baseline": "torch"})
    assert "best peer" not in summary_markdown(res) and "best peer" not in full_markdown(res)
    with_peer = Comparison(records + [_rec("a", "openvino", 1, 0.5)], settings={"baseline": "torch"})
    assert "best peer runtime" in summary_markdown(with_peer) and "best peer runtime" in full_markdown(with_peer)


def test_peer_set_is_data_in_one_place():
    assert set(benchmark.PEER_BACKENDS) <= set(benchmark.BACKENDS)
    assert not {"native", "torch", "torch-cuda", "onnxruntime-cuda"} & set(benchmark.PEER_BACKENDS)
    assert set(PEERS) | {"onnxruntime"} == set(benchmark.PEER_BACKENDS)
