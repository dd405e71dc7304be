"""First use (issue 17, items 8-12): bench's defaults and progress bar, partial evals, CLI help, README truths and a
missing torch, readable plot labels."""
import argparse
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ghostfast
from ghostfast import benchmark
from ghostfast.accuracy import EvalResult, load_results, measured_top1, save_result
from ghostfast.backends import backend_names, base
from ghostfast.cli import build_parser, main
from test_accuracy import ghostnet_case  # noqa: F401  (fixture: GhostNet, a synthetic checkpoint, labeled images)
from test_compare import FakeBackend

README = Path(__file__).resolve().parents[1] / "README.md"


# ---- 8. bench: native by default, one default for Python and the CLI, a progress bar on long runs ---------------

def test_bench_defaults_to_native_and_the_cli_agrees():
    params = inspect.signature(ghostfast.bench).parameters
    args = build_parser().parse_args(["bench", "ghostnet"])
    assert params["backend"].default == args.backend == benchmark.DEFAULT_BACKEND == "native"
    assert params["iters"].default == args.iters == benchmark.DEFAULT_ITERS
    r = ghostfast.bench("ghostnet_050", iters=3, warmup=1)
    assert r.backend == "native" and r.samples_ns.shape == (3,)


def test_cli_backend_choices_are_the_registry():
    assert list(benchmark.BACKENDS) == backend_names()
    action = next(a for a in _subparsers()["bench"]._actions if a.dest == "backend")
    assert list(action.choices) == backend_names()


def _fake(monkeypatch, ms: float) -> list:
    log: list = []
    monkeypatch.setitem(base._BACKENDS, "fake", FakeBackend("fake", log, ms))
    return log


def test_long_run_shows_a_bar_and_runs_in_chunks_of_the_cpp_loop(monkeypatch, capsys):
    log = _fake(monkeypatch, ms=10.0)  # 1000 x 10 ms: 10 s expected
    r = ghostfast.bench("ghostnet_050", iters=1000, warmup=10, backend="fake")
    calls = [c for c in log if c[2] != "close"]
    assert calls[0] == ("fake", None, 10, 0)  # the warm-up, timed for the estimate only
    chunks = [c[2] for c in calls[1:]]
    assert sum(chunks) == 1000 and len(chunks) > 1 and all(c[3] == 0 for c in calls[1:])
    assert all(n * 0.010 >= benchmark.CHUNK_S for n in chunks[:-1])  # each C++ loop >= 0.5 s
    assert r.samples_ns.shape == (1000,) and r.iters == 1000 and r.warmup == 10
    err = capsys.readouterr().err
    assert "1000/1000" in err and "bench ghostnet_050 [fake]" in err


def test_short_run_is_one_cpp_loop_without_a_bar(monkeypatch, capsys):
    log = _fake(monkeypatch, ms=0.1)  # 1000 x 0.1 ms: 0.1 s
    r = ghostfast.bench("ghostnet_050", iters=1000, warmup=10, backend="fake")
    assert [c[2:] for c in log if c[2] != "close"] == [(10, 0), (1000, 0)]
    assert r.samples_ns.shape == (1000,) and "it/s" not in capsys.readouterr().err
    log.clear()
    ghostfast.bench("ghostnet_050", iters=1000, warmup=10, backend="fake", progress=False)
    assert len([c for c in log if c[2] != "close"]) == 2


def test_warmup_zero_counts_the_first_iteration(monkeypatch):
    log = _fake(monkeypatch, ms=10.0)
    r = ghostfast.bench("ghostnet_050", iters=300, warmup=0, backend="fake", progress=False)
    assert [c[2:] for c in log if c[2] != "close"] == [(1, 0), (299, 0)] and r.samples_ns.shape == (300,)


# ---- 9. a partial eval never stands in for the published top-1 -------------------------------------------------

def _record(images: int, classes: int | None, correct1: int, weights_format="timm:ghostnet_100", **kw) -> EvalResult:
    return EvalResult(model="ghostnet_100", backend="torch", weights="w.pth" if weights_format else None,
                      weights_format=weights_format, weights_sha256=None, data=kw.get("data", "/val"),
                      layout="imagefolder",
                      images=images, correct1=correct1, correct5=correct1, limit=kw.get("limit"), batch=50,
                      preprocess={}, seconds=1.0, classes=classes, date=kw.get("date", "2030-01-01"))


def test_tiny_random_eval_does_not_replace_the_published_top1(tmp_path, monkeypatch):
    from ghostfast.comparison import _model_fields

    cache = tmp_path / "accuracy.json"
    monkeypatch.setenv("GHOSTFAST_ACCURACY_CACHE", str(cache))
    tiny = _record(10, 10, 0, weights_format=None)  # the issue: 10 images, random weights, top-1 0.0
    save_result(tiny, cache)
    stored = load_results(cache)[0]
    assert stored["full_set"] is False and stored["set"].startswith("partial: 10 of 50,000 images")
    assert "no pretrained weights" in stored["set"] and not tiny.full_set
    assert measured_top1("ghostnet") is None
    fields = _model_fields("ghostnet_100")
    assert fields["top1"] == fields["top1_published"] == 73.9 and fields["top1_measured"] is None
    assert fields["top1_source"].startswith("published")
    partial = measured_top1("ghostnet", partial=True)
    assert partial["full_set"] is False and partial["source"].startswith("partial: 10 of 50,000 images")
    # Every class but too few images, or every image of a few classes: partial too.
    save_result(_record(49_999, 1000, 37_000, data="/val-sample"), cache)
    save_result(_record(50_000, 999, 37_000, data="/val-999-classes"), cache)
    assert len(load_results(cache)) == 3 and measured_top1("ghostnet") is None
    # The full validation set with loaded weights does stand in, labeled as measured.
    save_result(_record(50_000, 1000, 36_979), cache)
    m = measured_top1("ghostnet")
    assert m["full_set"] is True and m["top1"] == pytest.approx(73.958) and m["source"].startswith("measured")
    fields = _model_fields("ghostnet_100")
    assert fields["top1"] == pytest.approx(73.958) and fields["top1_source"].startswith("measured")


def test_comparison_ignores_a_cache_entry_not_marked_full(monkeypatch):
    from ghostfast import accuracy, comparison

    monkeypatch.setattr(accuracy, "measured_top1", lambda name: {"top1": 0.0, "source": "measured: 10 images"})
    assert comparison._measured_top1("ghostnet_100") is None


def test_cli_eval_without_weights_refuses(tmp_path, capsys, ghostnet_case):  # noqa: F811
    _, data, labels, n = ghostnet_case
    results = tmp_path / "acc.json"
    argv = ["eval", "--data", str(data), "--model", "ghostnet_100", "--labels", str(labels), "--crop", "64",
            "--resize", "72", "--batch", "8", "--results", str(results), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "--random-weights" in err and "random weights" in err
    assert not results.exists()
    assert main(argv + ["--random-weights", "--limit", "4", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "partial" in captured.err
    doc = json.loads(captured.out)
    assert doc["full_set"] is False and doc["weights"] is None and doc["set"].startswith("partial: 4 of 50,000")
    assert load_results(results)[0]["full_set"] is False and measured_top1("ghostnet", path=results) is None


def test_partial_eval_is_labeled_in_the_table(ghostnet_case, tmp_path, capsys):  # noqa: F811
    ckpt, data, labels, n = ghostnet_case
    assert main(["eval", "--data", str(data), "--weights", str(ckpt), "--labels", str(labels), "--crop", "64",
                 "--resize", "72", "--limit", "3", "--no-save", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "| PARTIAL |" in captured.out and "partial: 3 of 50,000 images" in captured.out
    assert "recorded as partial" in captured.err


# ---- 10. every option of every command has help with its default and choices -----------------------------------

def _subparsers() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_has_help_with_default_and_choices(monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping: a default or choice is found as one string
    parser = build_parser()
    top = parser.format_help()
    assert "``" not in top
    commands = _subparsers()
    assert set(commands) == {"list", "profile", "structure", "bench", "compare", "eval", "export"}
    for name in commands:
        assert re.search(rf"^\s+{name}\s+\S", top, re.M), f"{name} missing from the top-level help"
    for name, sp in commands.items():
        text = sp.format_help()
        assert sp.description, f"ghostfast {name} has no description"
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"ghostfast {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 10, f"{where}: no help"
            if action.option_strings and not action.required:
                assert "default" in action.help, f"{where}: help does not give the default"
            if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" in action.help:
                shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
                assert f"default: {shown}" in text, f"{where}: default not shown"
            for choice in action.choices or ():
                assert str(choice) in text, f"{where}: choice {choice} not listed"


# ---- 11. README truths; a missing torch is one line, not a traceback -------------------------------------------

def test_readme_says_what_the_main_job_takes_and_documents_isa():
    text = README.read_text()
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "a few minutes" not in first_block
    whole_field = "ghostfast compare --backends native,onnxruntime,openvino,litert,ncnn,mnn --out ghostfast-report"
    assert whole_field in first_block and '".[peers,plot]"' in first_block and "minutes" in first_block
    assert all(opt in first_block for opt in ("--models", "--threads", "--iters"))
    assert "9 min 34 s measured" in text and "16-20 minutes" in text
    assert "GHOSTFAST_ISA" in text and 'isa="avx2"' in text
    assert "(#native-tools-and-arm64)" in text and "\n## Native tools and ARM64\n" in text
    assert "BenchResult(ghostnet_100 on native" in text


def test_readme_command_lines_parse():
    parser = build_parser()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                if part.strip().startswith("ghostfast "):
                    lines.append(part.strip())
    assert len(lines) >= 10
    for line in lines:
        argv = [a.replace("~", "/home") for a in shlex.split(line)[1:]]
        if "--help" in argv:
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README command does not parse: {line}")


_BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, BlockTorch())
from ghostfast.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _without_torch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCK_TORCH, *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["list"], ["profile", "ghostnet"], ["bench", "ghostnet", "--iters", "2"]])
def test_missing_torch_is_one_line_with_the_install_command(argv):
    r = _without_torch(*argv)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"ghostfast {argv[0]}: error:" in r.stderr and "PyTorch" in r.stderr
    assert "pip install -c constraints-cpu.txt torch" in r.stderr


def test_help_works_without_torch():
    r = _without_torch("bench", "--help")
    assert r.returncode == 0, r.stderr
    assert "onnxruntime" in r.stdout and "default: native" in r.stdout


# ---- 12. plot labels: every model named, no two labels overlapping ---------------------------------------------

def _synthetic_records() -> list[dict]:
    """Every zoo model on three backends at 1 and 2 threads, latency ~ MACs^0.85 with seeded scatter."""
    from ghostfast.published import canonical

    rng = np.random.default_rng(0)
    records = []
    for model, entry in canonical().items():
        macs = entry["canonical"]["macs_conv_linear"]
        jitter = float(rng.uniform(0.7, 1.4))
        for backend, k in (("native", 0.018), ("torch", 0.05), ("onnxruntime", 0.024)):
            for t in (1, 2):
                ms = k * (macs / 1e6) ** 0.85 * jitter / (1.6 if t == 2 else 1.0) * float(rng.uniform(0.9, 1.1))
                records.append({"model": model, "backend": backend, "threads": t, "batch": 1, "status": "ok",
                                "macs": macs, "median_ms": ms, "top1_published": entry["published"]["top1"]})
    return records


def _assert_labels_readable(fig, expected: set[str]) -> None:
    from ghostfast.plots import label_boxes

    panels = [ax for ax in fig.axes if any(t.get_gid() == "point-label" for t in ax.texts)]
    assert panels
    for ax in panels:
        boxes = label_boxes(ax)
        assert {t for t, _ in boxes} == expected and len(boxes) == len(expected), ax.get_title()
        overlaps = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[:i] if ba.overlaps(bb)]
        assert not overlaps, f"{ax.get_title()}: overlapping labels {overlaps}"
        frame = ax.bbox.padded(1.0)
        outside = [t for t, b in boxes if not (frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1))]
        assert not outside, f"{ax.get_title()}: labels outside the axes {outside}"


def test_plot_labels_do_not_overlap():
    import matplotlib.pyplot as plt

    from ghostfast.plots import _label, latency_vs_macs_figure, top1_vs_latency_figure
    from ghostfast.published import canonical

    records = _synthetic_records()
    names = {_label(m) for m in canonical()}
    assert len(names) == 20
    for fig in (latency_vs_macs_figure(records), top1_vs_latency_figure(records, threads=1),
                top1_vs_latency_figure(records, threads=2)):
        try:
            _assert_labels_readable(fig, names)
        finally:
            plt.close(fig)
