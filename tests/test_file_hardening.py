"""Hostile and careless files: every malformed engine file is a ModelFileError naming what is wrong, every unreadable
checkpoint a CheckpointError, suspicious weights warn, and a bounded fuzz run of the engine-file loader passes.

Engine files are crafted from the committed tiny engine (cpp/tests/data/tiny.gfe) by editing its JSON header and
writing it back with a valid checksum, so each reaches the check it is about.
"""
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import ghostfast
from ghostfast.checkpoints import CheckpointError, CheckpointMismatch, load_weights, read_state_dict
from ghostfast.program import ModelFileError, load_program, pack_file, split_file

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "cpp" / "tests" / "data" / "tiny.gfe"


def tiny_parts() -> tuple[dict, bytes]:
    head, data = split_file(TINY.read_bytes())
    return json.loads(head), bytes(data)


def write(path: Path, header, data: bytes = b"", raw: bytes | None = None) -> Path:
    """An engine file with ``header`` (or the raw header bytes ``raw``) and a valid checksum."""
    path.write_bytes(pack_file(raw if raw is not None else json.dumps(header).encode(), data))
    return path


# ---- item 4: misaligned tensor data -------------------------------------------------------------------------------
def test_tensor_offset_that_is_not_a_multiple_of_4_is_refused(tmp_path):
    header, data = tiny_parts()
    spec = header["program"]["tensors"][1]  # 8 floats at 864; 866 still lies inside the data section
    spec["offset"] += 2
    bad = write(tmp_path / "misaligned.gfe", header, data)
    with pytest.raises(ModelFileError, match=rf"{bad.name}: tensor 1 offset 866 is not a multiple of 4"):
        ghostfast.load(bad)


# ---- item 6: every malformed file is a ModelFileError naming what is wrong ----------------------------------------
def test_deeply_nested_header_is_a_model_file_error(tmp_path):
    deep = b'{"program":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ModelFileError, match="nests deeper than 32 levels"):
        ghostfast.load(write(tmp_path / "deep.gfe", None, raw=deep))


def test_nesting_is_limited_like_the_cpp_reader(tmp_path):
    """40 levels parse in Python's json, but the C++ reader refuses more than 32: both front ends must agree."""
    header, data = tiny_parts()
    nest: list = []
    for _ in range(40):
        nest = [nest]
    header["meta"]["notes"] = nest
    with pytest.raises(ModelFileError, match="nests deeper than 32 levels"):
        load_program(write(tmp_path / "meta.gfe", header, data))


def test_integer_beyond_pythons_digit_limit_is_a_model_file_error(tmp_path):
    head = b'{"program":{"max_batch":' + b"9" * 5000 + b"}}"
    with pytest.raises(ModelFileError, match="unreadable header"):
        ghostfast.load(write(tmp_path / "digits.gfe", None, raw=head))


def test_long_values_are_cut_short_in_the_message(tmp_path):
    header, data = tiny_parts()
    header["program"]["max_batch"] = int("9" * 4000)  # parses, out of range
    with pytest.raises(ModelFileError, match=r"max_batch must be an integer in \[1, 4096\]") as e:
        load_program(write(tmp_path / "long.gfe", header, data))
    assert len(str(e.value)) < 300


def test_shape_whose_element_count_overflows_int64_is_a_model_file_error(tmp_path):
    header, data = tiny_parts()
    header["program"]["tensors"][0].update(shape=[65536] * 4, nbytes=0)  # np.prod wraps to 0 == nbytes / 4
    with pytest.raises(ModelFileError, match=r"tensor 0 size 0 bytes does not match its shape \[65536, 65536"):
        ghostfast.load(write(tmp_path / "overflow.gfe", header, data))


@pytest.mark.parametrize("edit,match", [
    (lambda h: h["meta"].update(scale=float("nan")), "NaN is not valid JSON"),
    (lambda h: h["program"]["ops"][0].__setitem__(5, "conv\ud800"), r"op 0 name .* is not valid Unicode"),
])
def test_values_python_json_reads_but_json_does_not_allow(tmp_path, edit, match):
    """Python's json reads NaN literals and lone surrogates; the C++ reader and the engine's UTF-8 names do not."""
    header, data = tiny_parts()
    edit(header)
    with pytest.raises(ModelFileError, match=match):
        ghostfast.load(write(tmp_path / "odd.gfe", header, data))


def test_field_errors_name_the_file(tmp_path):
    header, data = tiny_parts()
    header["program"]["buffers"][1] = [8, 5]
    bad = write(tmp_path / "named.gfe", header, data)
    with pytest.raises(ModelFileError, match=r"corrupted model file .*named\.gfe: buffer must be a list of 3 integers"):
        load_program(bad)


# ---- item 6: checkpoints -------------------------------------------------------------------------------------------
@pytest.fixture
def small_module():
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def _corrupt_checkpoints(module, tmp_path: Path) -> dict[str, Path]:
    sd = module.state_dict()
    torch.save(sd, tmp_path / "zip.pth")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "w.safetensors")
    with zipfile.ZipFile(tmp_path / "random.zip", "w") as z:
        z.writestr("notes.txt", os.urandom(100))
    files = {"random zip": tmp_path / "random.zip"}
    for name in ("zip.pth", "legacy.pth", "w.safetensors"):
        blob = (tmp_path / name).read_bytes()
        for cut in (20, len(blob) // 3, len(blob) * 2 // 3, len(blob) - 1):
            files[f"{name} cut at {cut}"] = tmp_path / f"cut{cut}-{name}"
            files[f"{name} cut at {cut}"].write_bytes(blob[:cut])
    return files


def test_unreadable_checkpoints_raise_checkpoint_error(small_module, tmp_path):
    for what, path in _corrupt_checkpoints(small_module, tmp_path).items():
        with pytest.raises(CheckpointError, match="truncated or corrupted") as e:
            load_weights(small_module, path)
        assert str(path) in str(e.value), what


def test_checkpoint_errors_share_one_type(small_module, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all")
    for source in (junk, tmp_path / "missing.pth", {"epoch": 3}):
        with pytest.raises(CheckpointError):
            read_state_dict(source)
    assert issubclass(CheckpointMismatch, CheckpointError) and issubclass(CheckpointError, ValueError)
    with pytest.raises(CheckpointError):
        load_weights(small_module, {"0.weight": torch.zeros(2, 3)})


def test_weights_cast_from_another_dtype_warn_naming_the_keys(small_module):
    sd = small_module.state_dict()
    sd["0.weight"], sd["0.bias"] = sd["0.weight"].double(), sd["0.bias"].double()
    sd["1.weight"] = sd["1.weight"].half()
    with pytest.warns(UserWarning) as record:
        load_weights(small_module, sd)
    messages = [str(w.message) for w in record]
    assert any("2 tensors in float64 were cast to float32: 0.weight, 0.bias" in m for m in messages), messages
    assert any("1 tensor in float16 was cast to float32: 1.weight" in m for m in messages), messages


def test_nan_and_inf_weights_warn_naming_the_keys(small_module):
    sd = small_module.state_dict()
    sd["0.bias"] = torch.tensor([float("nan"), 0.0])
    sd["1.running_var"] = torch.tensor([1.0, 1e39], dtype=torch.float64)  # finite in float64, inf in float32
    with pytest.warns(UserWarning) as record:
        load_weights(small_module, sd)
    messages = [str(w.message) for w in record]
    assert any("NaN/inf values in 2 tensors: 0.bias, 1.running_var" in m for m in messages), messages


def test_clean_float32_weights_load_without_warnings(small_module):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(small_module, small_module.state_dict())


# ---- item 7: a bounded fuzz run of the engine-file loader ---------------------------------------------------------
def test_bounded_fuzz_run_of_the_engine_file_loader(tmp_path):
    try:
        import atheris  # noqa: F401  (the target imports it in its own process)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("atheris is not installed: CI must run the fuzz target (pip install '.[test]')")
        pytest.skip("atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    cmd = [sys.executable, str(ROOT / "fuzz" / "fuzz_model_file.py"), "-runs=3000", "-seed=1", "-timeout=30",
           f"-artifact_prefix={tmp_path}/", str(corpus)]
    # Through a small launcher process: Linux carries a process's peak RSS over into the program a (v)forked child
    # execs, so a target started straight from this test process would begin at pytest's own peak (2 GB after the
    # peer-runtime tests), and libFuzzer's -rss_limit_mb (which reads that peak) would report it as the target's.
    launcher = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    run = subprocess.run([sys.executable, "-c", launcher, *cmd], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"the fuzz target found a problem (crash file in {tmp_path}):\n{log[-6000:]}"
    assert "Done 3000 runs" in log, log[-3000:]
