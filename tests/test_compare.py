"""ghostfast.compare: record schema, interleaving, skips, Ctrl-C, bad arguments, CSV / JSON / report / plots.

Timing is never asserted: a few iterations on one or two small models, and fake backends where the point is
the order of calls or the arithmetic of ratios.
"""
import json
import os
import sys

import numpy as np
import pytest
import torch

import ghostfast
from ghostfast import report
from ghostfast.backends import Backend, BackendUnavailable, Runner, base, get_backend
from ghostfast.comparison import RECORD_KEYS, STATUSES, Comparison, compare
from ghostfast.compare_report import summary_markdown, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = "ghostnet_050"


@pytest.fixture(scope="module")
def real():
    """One real run: the default CPU backends plus torchscript, one small model, one thread, few iterations."""
    return compare([SMALL], backends=["native", "torch", "onnxruntime", "torchscript"], threads=1, iters=4,
                   rounds=2, progress=False)


# ---- a fake backend that logs what the comparison asks of it ----------------------------------------------------

class FakeRunner(Runner):
    def __init__(self, backend, log, model, x, threads, ms, interrupt_after=None):
        self.backend, self.log, self.threads = backend.name, log, threads
        self.model, self.x, self.ms, self.backend_obj = model, x, ms, backend
        self.interrupt_after = interrupt_after

    def __call__(self):
        pass

    def output(self):
        with torch.inference_mode():
            return self.model(self.x).numpy()

    def time(self, iters, warmup):
        self.log.append((self.backend, self.threads, iters, warmup))
        if self.interrupt_after is not None and len(self.log) > self.interrupt_after:
            raise KeyboardInterrupt
        return np.full(iters, self.ms * 1e6)

    def close(self):
        self.log.append((self.backend, self.threads, "close"))


class FakeBackend(Backend):
    def __init__(self, name, log, ms, interrupt_after=None):
        self.name, self.log, self.ms, self.interrupt_after = name, log, ms, interrupt_after

    def prepare(self, model, x, threads):
        return FakeRunner(self, self.log, model, x, threads, self.ms, self.interrupt_after)


@pytest.fixture
def fakes(monkeypatch):
    """Registers fake-a (1 ms per iteration) and fake-b (3 ms) for one test; returns their shared call log."""
    log = []
    for name, ms in (("fake-a", 1.0), ("fake-b", 3.0)):
        monkeypatch.setitem(base._BACKENDS, name, FakeBackend(name, log, ms))
    return log


# ---- records ----------------------------------------------------------------------------------------------------

def test_record_schema(real):
    assert isinstance(real, Comparison) and isinstance(real, list) and not real.interrupted
    assert [r["backend"] for r in real] == ["native", "torch", "onnxruntime", "torchscript"]
    prof = ghostfast.profile(SMALL)
    for r in real:
        assert tuple(r) == RECORD_KEYS
        assert r["status"] in STATUSES
        assert r["status"] == "ok", r["reason"]
        assert (r["model"], r["threads"], r["batch"], r["input_size"]) == (SMALL, 1, 1, "224x224")
        assert (r["params"], r["macs"]) == (prof.params, prof.macs)
        assert r["weight_bytes_fp32"] == prof.weight_bytes_fp32
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert (r["iters"], r["rounds"]) == (4, 2) and r["round_drift"] >= 1.0
        assert r["ms_per_gmac"] == pytest.approx(r["median_ms"] / (prof.macs / 1e9))
        assert r["baseline"] == "onnxruntime"
        # Each backend's output was checked against torch (BN randomized, so the logits are not ~0).
        assert r["check_ok"] and r["check_max_rel_err"] < 1e-4 and r["check_top1_agree"] == 1.0
        assert r["top1"] == r["top1_published"] == 66.2 and r["top1_source"].startswith(("published", "measured"))
    ort = next(r for r in real if r["backend"] == "onnxruntime")
    assert ort["ratio_to_baseline"] == 1.0
    for r in real:
        assert r["ratio_to_baseline"] == pytest.approx(r["median_ms"] / ort["median_ms"])
    assert real.settings["backends"] == ["native", "torch", "onnxruntime", "torchscript"]
    env = real.environment
    assert env["cpu"] and isinstance(env["isa"], list) and "torch" in env["versions"] and env["date"]


def test_records_make_a_table_as_is(real):
    # What a DataFrame needs: a list of flat dicts with the same keys, scalar values only.
    assert all(not isinstance(v, (list, dict)) for r in real for v in r.values())


def test_csv_and_json_round_trip(real, tmp_path):
    records = list(real)
    assert report.from_csv(report.to_csv(records)) == records
    text = report.to_json(records, real.environment, settings=real.settings)
    assert report.from_json(text) == records and json.loads(text)["environment"] == real.environment
    skipped = [dict(records[0], status="skipped", reason="no GPU, \"quoted\", commas", median_ms=None)]
    assert report.from_csv(report.to_csv(skipped)) == skipped


def test_report_folder(real, tmp_path):
    breakdown = {"a": {"by_type": {"ghost": 3000.0, "pointwise": 1000.0}, "total_us": 4000.0,
                       "by_type_macs": {"ghost": 9e7, "pointwise": 1e7}},
                 "b": {"by_type": {"pointwise": 5000.0, "depthwise": 500.0}, "total_us": 5500.0}}
    paths = write_report(real, tmp_path, breakdown=breakdown)
    names = {p.name for p in paths}
    assert names == {"report.md", "results.csv", "results.json", "latency_vs_macs.png", "top1_vs_latency.png",
                     "op_breakdown.png"}
    for p in paths:
        if p.suffix == ".png":
            data = p.read_bytes()
            assert data[:8] == PNG_SIGNATURE and len(data) > 5000, p
    md = (tmp_path / "report.md").read_text()
    for heading in ("Median latency (ms), batch 1, 1 thread", "Ratio to onnxruntime", "ms per GMAC",
                    "Output check against torch", "Time per op type", "Environment", "All records"):
        assert heading in md
    assert "![latency vs MACs](latency_vs_macs.png)" in md
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["records"] == list(real) and doc["environment"]["cpu"] and doc["settings"]["iters"] == 4
    assert report.from_csv((tmp_path / "results.csv").read_text()) == list(real)


def test_summary_markdown(real):
    text = summary_markdown(real)
    assert "| ghostnet_050" in text and "(1.00x)" in text and "CPU:" in text


def test_latency_table_marks_drift_and_contention(real):
    from ghostfast.compare_report import latency_tables

    one = dict(real[0], round_drift=1.0, median_ms=5.0, ratio_to_baseline=None)
    two = dict(one, threads=2, median_ms=9.0, round_drift=2.0)  # slower with more threads, and drifting
    text = latency_tables([one, two])
    assert "| 5.00 " in text and "9.00 † ‡" in text and "† the slowest round" in text and "‡ more than" in text
    assert "‡" not in latency_tables([one, dict(two, median_ms=4.0, round_drift=1.0)])


def test_pareto_front():
    from ghostfast.plots import pareto_front

    pts = [(5.0, 70.0), (3.0, 66.0), (4.0, 65.0), (6.0, 75.0), (6.5, 74.0)]
    assert sorted(pareto_front(pts)) == [0, 1, 3]


def test_plot_labels():
    from ghostfast.plots import _label

    assert [_label(n) for n in ("ghostnet_100", "mobilenet_v3_large", "shufflenet_v2_x0_5")] == \
        ["GN1.0", "MNv3-L", "SNv2-0.5"]


def test_op_breakdown_attributes_every_mac():
    from ghostfast.comparison import op_breakdown

    out = op_breakdown(models=[SMALL], iters=2)
    prof = out[SMALL]
    assert prof["total_us"] > 0 and prof["by_type"]
    assert prof["unattributed_macs"] == 0
    assert sum(prof["by_type_macs"].values()) == ghostfast.profile(SMALL).macs


# ---- interleaving and ratios --------------------------------------------------------------------------------------

def test_interleaved_order_and_ratio(fakes):
    res = compare("mobilenet_v3_small", backends=["fake-a", "fake-b"], threads=(1, 2), iters=6, rounds=3,
                  warmup=1, baseline="fake-a", progress=False)
    timed = [e for e in fakes if e[2] != "close"]
    # Per thread count: A B A B A B, 2 iterations a round; the first round of each runs one more untimed round.
    expected = []
    for t in (1, 2):
        expected += [("fake-a", t, 2, 3), ("fake-b", t, 2, 3)] + [("fake-a", t, 2, 1), ("fake-b", t, 2, 1)] * 2
    assert timed == expected
    # Runners are closed in reverse order of preparation, after each thread count's rounds.
    closes = [e for e in fakes if e[2] == "close"]
    assert closes == [("fake-b", 1, "close"), ("fake-a", 1, "close"), ("fake-b", 2, "close"),
                      ("fake-a", 2, "close")]
    assert [(r["backend"], r["threads"]) for r in res] == [("fake-a", 1), ("fake-b", 1), ("fake-a", 2),
                                                          ("fake-b", 2)]
    for r in res:
        expect_ms = 1.0 if r["backend"] == "fake-a" else 3.0
        assert r["median_ms"] == pytest.approx(expect_ms) and r["ratio_to_baseline"] == pytest.approx(expect_ms)
        assert r["iters"] == 6 and r["rounds"] == 3 and r["round_drift"] == 1.0


def test_rounds_are_capped_at_iters(fakes):
    res = compare("mobilenet_v3_small", backends=["fake-a"], threads=1, iters=2, rounds=5, progress=False)
    assert res[0]["rounds"] == 2 and res[0]["iters"] == 2
    assert [e[2] for e in fakes if e[2] != "close"] == [1, 1]


def test_ctrl_c_keeps_what_was_measured(monkeypatch):
    log = []
    # Interrupt in the second thread count's rounds: the first group's records survive, the second is dropped.
    monkeypatch.setitem(base._BACKENDS, "fake-a", FakeBackend("fake-a", log, 1.0, interrupt_after=4))
    res = compare("mobilenet_v3_small", backends=["fake-a"], threads=(1, 2), iters=4, rounds=2, progress=False)
    assert res.interrupted
    assert [(r["backend"], r["threads"], r["status"]) for r in res] == [("fake-a", 1, "ok")]
    assert ("fake-a", 2, "close") in log  # the interrupted group's runner was closed too


def test_threads_restored_after_compare():
    before = torch.get_num_threads()
    compare("mobilenet_v3_small", backends=["torch"], threads=1, iters=2, rounds=1, progress=False)
    assert torch.get_num_threads() == before


def test_backend_failure_is_recorded_not_raised(fakes, monkeypatch):
    class Broken(Backend):
        name = "broken"

        def prepare(self, model, x, threads):
            raise RuntimeError("cannot lower this op")

    class Wrong(FakeBackend):
        def prepare(self, model, x, threads):
            r = super().prepare(model, x, threads)
            r.output = lambda: np.zeros((1, 1000), dtype=np.float32) + 1.0
            return r

    monkeypatch.setitem(base._BACKENDS, "broken", Broken())
    monkeypatch.setitem(base._BACKENDS, "wrong", Wrong("wrong", fakes, 1.0))
    res = compare("mobilenet_v3_small", backends=["fake-a", "broken", "wrong"], threads=1, iters=2, rounds=1,
                  progress=False)
    by = {r["backend"]: r for r in res}
    assert by["fake-a"]["status"] == "ok"
    assert by["broken"]["status"] == "error" and "cannot lower this op" in by["broken"]["reason"]
    assert by["wrong"]["status"] == "mismatch" and "differs from torch" in by["wrong"]["reason"]
    assert by["wrong"]["median_ms"] is None and not by["wrong"]["check_ok"]
    assert not [e for e in fakes if e[0] == "wrong" and e[2] != "close"]  # a mismatching backend is never timed


@pytest.mark.skipif(not os.environ.get("GHOSTFAST_SLOW_TESTS"),
                    reason="torch.compile takes 10-20 s even for a tiny model; set GHOSTFAST_SLOW_TESTS=1")
def test_torch_compiled_inductor_matches_torch():
    from ghostfast.parity import check_output

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    from ghostfast.parity import randomize_batchnorm

    randomize_batchnorm(model)
    x = torch.randn(1, 3, 16, 16)
    before = torch.get_num_threads()
    with get_backend("torch-compiled").prepare(model, x, 1) as runner:
        assert runner.threads == 1
        with torch.inference_mode():
            assert check_output(runner.output(), model(x).numpy())["check_ok"]
        assert runner.time(3, 1).shape == (3,)
    assert torch.get_num_threads() == before


# ---- skip paths ---------------------------------------------------------------------------------------------------

def test_missing_gpu_is_a_recorded_skip(fakes, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    for name in ("torch-cuda", "onnxruntime-cuda"):
        with pytest.raises(BackendUnavailable, match="CUDA"):
            get_backend(name).check_available()
    res = compare("mobilenet_v3_small", backends=["torch-cuda", "onnxruntime-cuda", "fake-a"], threads=1, iters=2,
                  rounds=1, progress=False)
    by = {r["backend"]: r for r in res}
    assert by["fake-a"]["status"] == "ok"
    for name in ("torch-cuda", "onnxruntime-cuda"):
        assert by[name]["status"] == "skipped" and "CUDA" in by[name]["reason"] and by[name]["median_ms"] is None
    assert set(res.settings["unavailable"]) == {"torch-cuda", "onnxruntime-cuda"}
    assert res.settings["baseline"] == "fake-a"  # the default baseline is a backend that runs here
    assert "Not timed" in summary_markdown(res) and "torch-cuda" in summary_markdown(res)


def test_missing_onnxruntime_is_a_recorded_skip(fakes, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'ghostfast\[onnx\]'"):
        get_backend("onnxruntime").check_available()
    res = compare("mobilenet_v3_small", backends=["fake-a", "onnxruntime"], threads=1, iters=2, rounds=1,
                  baseline="onnxruntime", progress=False)
    by = {r["backend"]: r for r in res}
    assert by["onnxruntime"]["status"] == "skipped" and "onnxruntime" in by["onnxruntime"]["reason"]
    # The baseline did not run, so there is no ratio, but the other backend's latency is there.
    assert by["fake-a"]["median_ms"] == pytest.approx(1.0) and by["fake-a"]["ratio_to_baseline"] is None


# ---- bad arguments ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"backends": ["torch", "tensorrt"]}, ValueError, "unknown backend 'tensorrt'"),
    ({"models": ["ghostnet_1000"]}, ValueError, "ghostnet"),
    ({"models": [3]}, TypeError, "models"),
    ({"threads": 0}, ValueError, "threads"),
    ({"threads": (1, -2)}, ValueError, "threads"),
    ({"threads": 1.5}, TypeError, "threads"),
    ({"iters": 0}, ValueError, "iters"),
    ({"iters": -3}, ValueError, "iters"),
    ({"rounds": 0}, ValueError, "rounds"),
    ({"batch": 0}, ValueError, "batch"),
    ({"warmup": -1}, ValueError, "warmup"),
    ({"backends": []}, ValueError, "at least one"),
    ({"baseline": "native"}, ValueError, "baseline"),
    ({"tolerance": 0}, ValueError, "tolerance"),
])
def test_bad_arguments(kwargs, exc, match):
    args = {"models": [SMALL], "backends": ["torch"], "threads": 1, "iters": 2, "progress": False, **kwargs}
    with pytest.raises(exc, match=match):
        compare(**args)


# ---- parity helpers -----------------------------------------------------------------------------------------------

def test_check_output():
    from ghostfast.parity import check_output

    ref = np.array([[0.0, 2.0, -1.0]])
    assert check_output(ref, ref) == {"check_max_rel_err": 0.0, "check_top1_agree": 1.0, "check_ok": True}
    off = check_output(ref + [[0.0, 0.0, 0.02]], ref)
    assert off["check_max_rel_err"] == pytest.approx(0.01) and not off["check_ok"]
    assert not check_output(np.full((1, 3), np.nan), ref)["check_ok"]
    assert "shape" in check_output(np.zeros((1, 4)), ref)["check_note"]


def test_randomize_batchnorm_is_seeded():
    from ghostfast.models import create
    from ghostfast.parity import randomize_batchnorm

    def bn_state(model):
        return {k: v for k, v in model.state_dict().items() if "running" in k}

    a, b, c = (randomize_batchnorm(create(SMALL), seed=s) for s in (3, 3, 4))
    assert all(torch.equal(v, bn_state(b)[k]) for k, v in bn_state(a).items())
    assert not all(torch.equal(v, bn_state(c)[k]) for k, v in bn_state(a).items())
    assert not any(torch.equal(v, torch.ones_like(v)) for k, v in bn_state(a).items() if k.endswith("running_var"))
    with torch.inference_mode():
        y = a(torch.randn(1, 3, 224, 224))
    assert torch.isfinite(y).all() and y.abs().max() > 1e-3  # logits large enough for a relative check


# ---- command line -------------------------------------------------------------------------------------------------

def test_cli_compare_out(tmp_path, capsys):
    from ghostfast.cli import main

    argv = ["compare", "--models", SMALL, "--backends", "torch", "--threads", "1", "--iters", "2", "--rounds", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Median latency (ms), batch 1, 1 thread" in captured.out and "wrote" in captured.err
    assert {p.name for p in tmp_path.iterdir()} == {"report.md", "results.csv", "results.json",
                                                    "latency_vs_macs.png", "top1_vs_latency.png", "op_breakdown.png"}
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 5000
    rows = report.from_csv((tmp_path / "results.csv").read_text())
    assert [(r["model"], r["backend"], r["status"]) for r in rows] == [(SMALL, "torch", "ok")]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["environment"]["command"] and set(doc["op_breakdown"]) == {"ghostnet_100", "mobilenet_v3_large"}


def test_cli_out_without_matplotlib_writes_the_tables(tmp_path, capsys, monkeypatch):
    from ghostfast.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = ["compare", "--models", SMALL, "--backends", "torch", "--threads", "1", "--iters", "2", "--rounds", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert "ghostfast[plot]" in capsys.readouterr().err
    assert {p.name for p in tmp_path.iterdir()} == {"report.md", "results.csv", "results.json"}


def test_cli_defaults_match_compare():
    from ghostfast import comparison
    from ghostfast.cli import build_parser

    args = build_parser().parse_args(["compare"])
    assert args.backends.split(",") == list(comparison.DEFAULT_BACKENDS)
    assert (args.iters, args.rounds, args.threads) == (comparison.DEFAULT_ITERS, comparison.DEFAULT_ROUNDS,
                                                       list(comparison.DEFAULT_THREADS))


def test_wait_until_cpu_idle_waits_out_a_spinning_thread():
    # A thread of this process that keeps a core busy (like an idle pool spinning after a run) holds the wait
    # until its limit; the waits between interleaved rounds rely on that.
    import threading

    from ghostfast.comparison import wait_until_cpu_idle

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        waited = wait_until_cpu_idle(window_s=0.02, limit_s=0.1)
    finally:
        stop.set()
        t.join()
    assert waited >= 0.1
