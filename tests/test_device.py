"""The phone workflow: ``ghostfast export``, ``ghostfast compare --device adb`` and ARM64 correctness under qemu.

A stand-in ``adb`` (tests/fixtures/fake_adb) is put first on PATH: its "phone" is a folder, and it runs the
pushed aarch64 ``ghostfast-bench`` through ``qemu-aarch64``. The tests that run the binary need it built
(``cmake --preset aarch64 && cmake --build --preset aarch64``, or GHOSTFAST_AARCH64_BENCH=PATH): without it they
skip, saying how to build it, except under CI (env CI set), where a missing binary fails them. Timing is never
asserted: qemu says nothing about ARM speed.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ghostfast
from ghostfast.cli import main
from ghostfast.comparison import reference_input, reference_model, torch_reference
from ghostfast.device import elf_machine
from ghostfast.export import export
from ghostfast.models import registry
from ghostfast.parity import DEFAULT_TOLERANCE, check_output

REPO = Path(__file__).resolve().parents[1]
FAKE_ADB = Path(__file__).resolve().parent / "fixtures" / "fake_adb"
STAND_IN = "native@Stand-in Pixel"
EM_AARCH64 = 183


def _need(reason: str):
    # CI builds the binary before the tests: there a missing binary or emulator is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def aarch64_bench() -> Path:
    """The aarch64 ghostfast-bench (GHOSTFAST_AARCH64_BENCH, else build/aarch64/ghostfast-bench) and qemu."""
    path = Path(os.environ.get("GHOSTFAST_AARCH64_BENCH") or REPO / "build" / "aarch64" / "ghostfast-bench")
    if not path.is_file():
        _need(f"no aarch64 ghostfast-bench at {path}: build it with `cmake --preset aarch64 && cmake --build "
              "--preset aarch64` (or set GHOSTFAST_AARCH64_BENCH=PATH)")
    if elf_machine(path) != EM_AARCH64:
        pytest.fail(f"{path} is not an aarch64 ELF executable")
    if shutil.which("qemu-aarch64") is None:
        _need("qemu-aarch64 not found: install Debian's qemu-user")
    return path


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """The stand-in adb first on PATH, its phone in tmp_path/phone; returns (phone root, call log reader)."""
    bin_dir, root, log = tmp_path / "bin", tmp_path / "phone", tmp_path / "adb.log"
    bin_dir.mkdir()
    root.mkdir()
    adb = bin_dir / "adb"
    # A wrapper so the stand-in runs on this interpreter whatever `python3` is on PATH.
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ADB}" "$@"\n')
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    for name in ("FAKE_ADB_SERIAL", "FAKE_ADB_STATE", "FAKE_ADB_MACHINE", "FAKE_ADB_CORRUPT_OUTPUT"):
        monkeypatch.delenv(name, raising=False)

    def calls():
        return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []

    return root, calls


def _device_argv(bench, out, *extra):
    return ["compare", "--device", "adb", "--device-bench", str(bench), "--models", "ghostnet_100,mobilenet_v3_large",
            "--threads", "1", "--iters", "2", "--rounds", "1", "--no-progress", "--out", str(out), *extra]


# ---- compare --device adb through the stand-in ---------------------------------------------------------------------

def test_compare_on_the_stand_in_device(fake_adb, aarch64_bench, tmp_path, capsys):
    root, calls = fake_adb
    out = tmp_path / "report"
    # Host native rows and the device's rows in one report.
    assert main(_device_argv(aarch64_bench, out, "--backends", "native")) == 0
    doc = json.loads((out / "results.json").read_text())
    records = doc["records"]
    assert [(r["model"], r["backend"]) for r in records] == [
        ("ghostnet_100", "native"), ("ghostnet_100", STAND_IN),
        ("mobilenet_v3_large", "native"), ("mobilenet_v3_large", STAND_IN)]
    for r in records:
        assert r["status"] == "ok", r["reason"]
        assert r["check_ok"] and r["check_max_rel_err"] <= DEFAULT_TOLERANCE and r["check_top1_agree"] == 1.0
        assert r["median_ms"] > 0 and r["iters"] == 2 and r["threads"] == 1
    for r in (r for r in records if r["backend"] == STAND_IN):
        # Timed by the bench in one run; no ratio to the host's baseline, another machine.
        assert r["rounds"] == 1 and r["ratio_to_baseline"] is None and r["min_ms"] <= r["median_ms"]
        assert r["ms_per_gmac"] == pytest.approx(r["median_ms"] / (r["macs"] / 1e9))
    dev = doc["environment"]["device"]
    assert (dev["model"], dev["manufacturer"], dev["soc"], dev["abi"], dev["machine"], dev["serial"]) == (
        "Stand-in Pixel", "Stand-in", "Stand-in SoC 1", "arm64-v8a", "aarch64", "STANDIN01")
    assert dev["cpu"] == "2x Cortex-A55 + 2x Cortex-A76" and dev["cores"] == 4 and "asimd" in dev["features"]
    assert dev["engine_isa"] == ["neon"]  # the bench chose the NEON table by itself on the "phone"
    md = (out / "report.md").read_text()
    assert re.search(r"\| top-1 \(%\)\s+\| native\s+\| native@Stand-in Pixel\s+\|", md)  # one table, both
    assert "- device (native@Stand-in Pixel): Stand-in Pixel, SoC Stand-in SoC 1, CPU 2x Cortex-A55 + 2x " \
           "Cortex-A76, 4 cores, aarch64 / ABI arm64-v8a, Android 14; engine kernels neon" in md
    # What went over adb: the binary pushed and made executable; every run checked before it was timed.
    argvs = [c[2:] if c[:1] == ["-s"] else c for c in calls()]
    assert ["push", str(aarch64_bench), "/data/local/tmp/ghostfast/ghostfast-bench"] in argvs
    assert ["shell", "chmod 755 /data/local/tmp/ghostfast/ghostfast-bench"] in argvs
    runs = [a[1] for a in argvs if a[0] == "shell" and "ghostfast-bench " in a[1]]
    assert len(runs) == 4 and ["--output" in r for r in runs] == [True, False, True, False]
    assert all("--json" in r and "--iters 2" in r for r in runs[1::2])
    # Nothing is left on the phone: model files go after each model, the binary at the end.
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_corrupted_device_output_is_a_mismatch_and_not_timed(fake_adb, aarch64_bench, tmp_path, capsys,
                                                             monkeypatch):
    _, calls = fake_adb
    monkeypatch.setenv("FAKE_ADB_CORRUPT_OUTPUT", "1")
    argv = ["compare", "--device", "adb:STANDIN01", "--device-bench", str(aarch64_bench), "--backends", "none",
            "--models", "ghostnet_100", "--threads", "1", "--iters", "2", "--no-progress", "--format", "json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    [r] = doc["records"]
    assert r["backend"] == STAND_IN and r["status"] == "mismatch" and "differs from torch" in r["reason"]
    assert not r["check_ok"] and r["check_max_rel_err"] > 1.0
    assert r["median_ms"] is None and r["ms_per_gmac"] is None
    assert all(c[:2] == ["-s", "STANDIN01"] for c in calls() if c[0] != "devices")
    assert not [c for c in calls() if "--json" in c[-1]]  # a mismatching output is never timed


# ---- clear errors before anything runs -----------------------------------------------------------------------------

def _fake_elf(path: Path, machine: int) -> Path:
    # Just an ELF header naming the machine: enough for the architecture check, never executed.
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", machine) + bytes(44))
    return path


def test_missing_adb_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no adb anywhere
    bench = _fake_elf(tmp_path / "ghostfast-bench", EM_AARCH64)
    assert main(["compare", "--device", "adb", "--device-bench", str(bench), "--models", "ghostnet_050"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ghostfast compare: error: 'adb' not found on PATH") and "platform-tools" in err
    assert len(err.splitlines()) == 1


def test_missing_bench_is_a_clear_error(fake_adb, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default path, build/aarch64/ghostfast-bench, is relative to here
    assert main(["compare", "--device", "adb", "--models", "ghostnet_050"]) == 2
    err = capsys.readouterr().err
    assert "no ghostfast-bench at build/aarch64/ghostfast-bench" in err
    assert "cmake --preset aarch64 && cmake --build --preset aarch64" in err


def test_bench_for_another_machine_is_a_clear_error(fake_adb, tmp_path, capsys):
    bench = _fake_elf(tmp_path / "ghostfast-bench", 62)  # x86-64: the host preset's build
    assert main(["compare", "--device", "adb", "--device-bench", str(bench), "--models", "ghostnet_050"]) == 2
    err = capsys.readouterr().err
    assert "is built for x86_64, the device is aarch64 (arm64-v8a)" in err and "cmake --preset aarch64" in err


@pytest.mark.parametrize("device,state,message", [
    ("adb", "unauthorized", "accept the USB debugging prompt"),
    ("adb", "offline", "reconnect the cable"),
    ("adb:NOSUCH", "device", "`adb devices` does not list it"),
])
def test_device_not_ready_is_a_clear_error(fake_adb, tmp_path, monkeypatch, capsys, device, state, message):
    monkeypatch.setenv("FAKE_ADB_STATE", state)
    bench = _fake_elf(tmp_path / "ghostfast-bench", EM_AARCH64)
    assert main(["compare", "--device", device, "--device-bench", str(bench), "--models", "ghostnet_050"]) == 2
    err = capsys.readouterr().err
    assert message in err and ("STANDIN01" in err or "NOSUCH" in err)


@pytest.mark.parametrize("argv,message", [
    (["compare", "--device", "usb"], "'adb' or 'adb:SERIAL'"),
    (["compare", "--device", "adb:"], "'adb' or 'adb:SERIAL'"),
    (["compare", "--backends", "none"], "nothing to compare without --device"),
    (["export", "--out", "x", "--models", "ghostnet,mobilenetv3", "--weights", "w.pth"], "one model"),
    (["export", "--out", "x", "--weights-format", "timm:ghostnet_100"], "--weights-format needs --weights"),
    (["export", "--out", "x", "--models", "ghostnet", "--weights", "no/such.pth"], "weights file not found"),
])
def test_bad_device_and_export_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ---- ghostfast export ------------------------------------------------------------------------------------------------

def test_export_files_round_trip(tmp_path, capsys):
    assert main(["export", "--models", "ghostnet_050,mobilenet_v3_small", "--out", str(tmp_path), "--seed", "3",
                 "--no-progress"]) == 0
    assert "ghostnet_050.gfe" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["torch"] == torch.__version__
    assert [m["model"] for m in manifest["models"]] == ["ghostnet_050", "mobilenet_v3_small"]
    for m in manifest["models"]:
        name = m["model"]
        assert m["files"] == {"engine": f"{name}.gfe", "input": f"{name}.input.npy",
                              "torch_output": f"{name}.torch.npy"}
        assert m["bn_randomized"] and m["weights"] is None and m["host_check"]["ok"]
        prof = ghostfast.profile(name)
        assert (m["params"], m["macs"], m["classes"], m["input_shape"]) == (prof.params, prof.macs, 1000,
                                                                           [1, 3, 224, 224])
        x = np.load(tmp_path / m["files"]["input"])
        y_torch = np.load(tmp_path / m["files"]["torch_output"])
        assert x.dtype == np.float32 and x.flags.c_contiguous and y_torch.dtype == np.float32
        # The same instance and input `ghostfast compare --seed 3` measures: BN randomized, seeded input.
        assert np.array_equal(x, reference_input(name, 1, 3).numpy())
        assert np.array_equal(y_torch, torch_reference(reference_model(name, 3), torch.from_numpy(x)))
        assert np.abs(y_torch).max() > 1e-2  # randomized BN keeps the logits large enough for a relative check
        engine = ghostfast.load(tmp_path / m["files"]["engine"])
        assert engine.model == name and engine.max_batch == 1
        assert check_output(engine.run(x), y_torch)["check_ok"]


def test_export_with_weights_loads_them_like_eval(tmp_path):
    src = registry.create("mobilenet_v3_small")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights no fresh zoo instance has
    weights = tmp_path / "mnv3s.pth"
    torch.save(src.state_dict(), weights)
    manifest = export(None, tmp_path / "out", weights=str(weights))  # the model is detected from the file
    [m] = manifest["models"]
    assert m["model"] == "mobilenet_v3_small" and not m["bn_randomized"]
    assert m["weights"]["file"] == str(weights) and len(m["weights"]["sha256"]) == 64 and m["weights"]["format"]
    x = np.load(tmp_path / "out" / m["files"]["input"])
    expected = torch_reference(src.eval(), torch.from_numpy(x))
    assert np.allclose(np.load(tmp_path / "out" / m["files"]["torch_output"]), expected, rtol=1e-5, atol=1e-6)


# ---- the acceptance check: every zoo model, saved on x86, run by the aarch64 binary under qemu ----------------------

@pytest.mark.parametrize("name", registry.names())
def test_x86_engine_files_run_on_aarch64(name, aarch64_bench, tmp_path):
    [m] = export([name], tmp_path)["models"]
    f = {k: tmp_path / v for k, v in m["files"].items()}
    out = tmp_path / "device.npy"
    # One iteration: qemu is 20-50x slower than native, and speed under emulation means nothing anyway.
    proc = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(aarch64_bench), str(f["engine"]),
                           "--input", str(f["input"]), "--output", str(out), "--iters", "1", "--warmup", "0",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["isa"] == "neon" and doc["model"] == name and doc["input_shape"] == m["input_shape"]
    check = check_output(np.load(out), np.load(f["torch_output"]))
    assert check["check_ok"], f"{name}: max rel. error {check['check_max_rel_err']} > {DEFAULT_TOLERANCE}"
