"""The ghostfast command line."""
import json

import pytest

from ghostfast.cli import main


def test_list(capsys):
    assert main(["list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"ghostnet_100", "efficientnet_lite2"} <= {r["model"] for r in rows}


def test_profile_json(capsys):
    assert main(["profile", "ghostnet", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"] == 5_182_508 and doc["macs"] == 141_150_512 and doc["layers"]


def test_structure(capsys):
    assert main(["structure", "mobilenet_v3_small"]) == 0
    assert "bneck" in capsys.readouterr().out


def test_bench_json(capsys):
    assert main(["bench", "ghostnet_050", "--iters", "3", "--threads", "1", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "ghostnet_050" and doc["iters"] == 3 and doc["median_ms"] > 0


def test_compare_csv(capsys, tmp_path):
    out = tmp_path / "r.csv"
    assert main(["compare", "--models", "ghostnet_050,mobilenet_v3_small", "--backends", "torch", "--threads", "1",
                 "--iters", "2", "--format", "csv", "--no-progress", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("model,backend,threads") and len(lines) == 3


@pytest.mark.parametrize("argv", [["bench", "nosuchnet"], ["bench", "ghostnet", "--iters", "0"],
                                  ["bench", "ghostnet", "--threads", "0"], ["compare", "--backends", "nope"]])
def test_errors_are_reported_not_raised(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_compare_with_peers_prints_the_best_peer(capsys):
    pytest.importorskip("openvino", reason="openvino is not installed")
    pytest.importorskip("MNN", reason="mnn is not installed")
    assert main(["compare", "--models", "ghostnet_050", "--backends", "native,openvino,mnn", "--threads", "1", "2",
                 "--iters", "2", "--rounds", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "native against the best peer runtime" in out and out.count("**geomean**") == 2
    assert "openvino:" in out and "INFERENCE_PRECISION_HINT f32" in out  # the settings, in the environment lines


def test_backend_help_lists_the_peers():
    from ghostfast.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command, option in (("compare", "--backends"), ("bench", "--backend")):
        text = " ".join(sub.choices[command].format_help().split())
        assert all(p in text for p in ("openvino", "litert", "ncnn", "mnn")) and "peers" in text, command
