"""Fuzz target for the engine-file loader: mutated engine files into ``parse_program``, then ``Engine`` and one run.

What counts as a finding: anything but a :class:`ghostfast.program.ModelFileError` from the loader, anything but a
``ValueError`` (the engine's own validation) from ``Engine(...)``, any exception from ``run`` on an engine that was
built, a crash (segfault, abort) in the C++ engine, a hang (libFuzzer's ``-timeout``) or memory past libFuzzer's
``-rss_limit_mb``. RecursionError, MemoryError, OverflowError, IndexError, KeyError, TypeError, ... are findings.

The first byte of an input picks how the rest becomes an engine file:

* ``0`` mod 3 -- the bytes as they are. Almost every mutation then fails the CRC-32: this fuzzes the framing
  (magic, version, header length, checksum).
* ``1`` mod 3 -- the bytes with the checksum recomputed, so byte-level mutations of the JSON header and the tensor
  data reach the header parser, its field checks and the engine.
* ``2`` mod 3 -- structure-aware: the rest drives edits of a seed file's parsed header (replace any value with an
  extreme integer, a float, a string, a list, a deep nest, ...; drop or duplicate list items), written back as a
  valid, checksummed file. These reach the engine's semantic validation (indices, shapes, parameters).

Seeds are the committed engine files ``cpp/tests/data/*.gfe`` (valid ones only), each in all three modes; an empty
corpus folder is seeded with them, and without a corpus folder a new one is made (and left) under $TMPDIR.

The target does not build engines whose activation buffers need more than 256 MiB (max_batch x the sum of the
buffers' c*h*w floats): one input must not take a shared machine's memory, and what such files ask for is the
engine's memory check's to refuse, tested on its own. An address-space limit (8 GiB) backs that up, so an
allocation the estimate misses fails as a MemoryError (a finding) instead of swapping.

Short bounded run (the test suite runs one: tests/test_file_hardening.py)::

    python fuzz/fuzz_model_file.py -runs=3000 -seed=1

Longer run, keeping the corpus it grows and any crash files (``crash-*``) in the current folder::

    mkdir -p corpus && python fuzz/fuzz_model_file.py -max_total_time=3600 -timeout=30 corpus/

``GHOSTFAST_FUZZ_STATS=1`` prints how many inputs the loader refused, the engine refused, and ran, at every power of
two inputs. Reproduce a finding: ``python fuzz/fuzz_model_file.py crash-<sha1>`` runs that one input and prints the traceback.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import types
from pathlib import Path

import atheris
import numpy as np

from ghostfast import program as gp
from ghostfast.engine import Engine

# Coverage feedback from the loader's Python code. Instrumented function by function: ghostfast is also imported
# through an editable install's custom loader, which atheris.instrument_imports does not instrument.
for _f in vars(gp).values():
    if isinstance(_f, types.FunctionType) and _f.__module__ == gp.__name__:
        atheris.instrument_func(_f)

SEED_DIR = Path(__file__).resolve().parents[1] / "cpp" / "tests" / "data"
MAX_ARENA_FLOATS = 64 << 20  # 256 MiB of float32
ADDRESS_SPACE = 8 << 30


def _seeds() -> list[bytes]:
    """The committed valid engine files (the bad_*.gfe fixtures fail before the parser, so they add nothing)."""
    files = sorted(p for p in SEED_DIR.glob("*.gfe") if not p.name.startswith("bad_"))
    if not files:
        sys.exit(f"fuzz_model_file: no seed engine files in {SEED_DIR}")
    return [p.read_bytes() for p in files]


SEEDS = _seeds()
# (header as parsed JSON, tensor data section) of every seed, for the structure-aware mode.
SEED_PARTS = [(json.loads(head), bytes(data)) for head, data in map(gp.split_file, SEEDS)]


# Nesting depths to try: just past the readers' limit of 32, past Python's recursion limit, and far past it.
DEEP = [33, 1000, 100_000]


def _deep(depth: int) -> str:
    """A placeholder string that write_file replaces with ``depth`` nested empty lists."""
    return f"\0deep{depth}"


def write_file(header, data: bytes) -> bytes:
    """An engine file around any JSON header."""
    text = json.dumps(header, separators=(",", ":"))
    # Deep nests travel as placeholders: json.dumps itself recurses and would fail on them.
    for depth in DEEP:
        text = text.replace(json.dumps(_deep(depth)), "[" * depth + "]" * depth)
    return gp.pack_file(text.encode("utf-8"), data)


INTERESTING = [0, 1, -1, 2, 3, 4, 7, 64, 255, 4095, 4096, 4097, 65535, 65536, 2**31 - 1, 2**31, -(2**31),
               -(2**31) - 1, 2**32, 2**63, 2**64, 10**30]


def _value(fdp: atheris.FuzzedDataProvider):
    kind = fdp.ConsumeIntInRange(0, 11)
    if kind <= 3:
        return fdp.PickValueInList(INTERESTING)
    if kind <= 5:
        return fdp.ConsumeIntInRange(-(2**31), 2**31 - 1)
    if kind == 6:
        return fdp.ConsumeIntInRange(0, 16)
    if kind == 7:
        return fdp.PickValueInList([1.0, 0.5, float("nan"), True, None, "", "x" * 300, "\ud800", {}, [], [[]]])
    if kind == 8:
        return [fdp.PickValueInList(INTERESTING) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    if kind == 9:
        return [fdp.ConsumeIntInRange(-2, 64) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    if kind == 10:
        return _deep(fdp.PickValueInList(DEEP))
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 20))


def _edit(header, fdp: atheris.FuzzedDataProvider):
    """One edit at a path chosen by ``fdp``: replace the node, or drop / duplicate an item of a list."""
    if fdp.ConsumeIntInRange(0, 31) == 31:
        return _value(fdp)  # rarely the whole header: most files without a program teach nothing new
    parent, key, node = None, None, header
    # Down to a leaf unless told to stop (an exhausted provider gives 0: keep walking, so edits land deep).
    while isinstance(node, (dict, list)) and len(node) and fdp.ConsumeIntInRange(0, 5) != 5:
        keys = list(node) if isinstance(node, dict) else range(len(node))
        key = fdp.PickValueInList(list(keys))
        parent, node = node, node[key]
    if parent is None:
        return header
    action = fdp.ConsumeIntInRange(0, 5)
    if action == 0 and isinstance(parent, list):
        del parent[key]
    elif action == 1 and isinstance(parent, list):
        parent.insert(key, json.loads(json.dumps(node, allow_nan=True)))
    elif action == 2 and isinstance(parent, dict):
        del parent[key]
    else:
        parent[key] = _value(fdp)
    return header


def structured(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    header, tensors = SEED_PARTS[fdp.ConsumeIntInRange(0, len(SEED_PARTS) - 1)]
    header = json.loads(json.dumps(header))  # a copy to edit
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        header = _edit(header, fdp)
    if fdp.ConsumeIntInRange(0, 7) == 7:  # odd-sized, empty or trimmed tensor data
        tensors = tensors[:fdp.ConsumeIntInRange(0, len(tensors))]
    return write_file(header, tensors)


def engine_file(data: bytes) -> bytes:
    mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 1:
        return gp.seal(rest[:-4]) if len(rest) >= 4 else rest
    if mode == 2:
        return structured(rest)
    return rest


def activation_floats(program: gp.Program) -> int:
    # Negative sizes count as 0 here: they are the engine's validation's to refuse.
    return program.max_batch * sum(max(c, 0) * max(h, 0) * max(w, 0) for c, h, w in program.buffers)


# How far inputs get (GHOSTFAST_FUZZ_STATS=1 prints it at every power of two inputs): a fuzzer whose inputs all
# stop at the checksum would pass without testing anything.
STATS = dict.fromkeys(("inputs", "refused by the loader", "too large to build", "refused by the engine", "ran"), 0)


def _count(outcome: str) -> None:
    STATS[outcome] += 1
    if os.environ.get("GHOSTFAST_FUZZ_STATS") and STATS["inputs"] & (STATS["inputs"] - 1) == 0:
        print("fuzz_model_file:", ", ".join(f"{k} {v}" for k, v in STATS.items()), file=sys.stderr)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris's name)
    STATS["inputs"] += 1
    blob = engine_file(data)
    try:
        program = gp.parse_program(blob, "fuzz input")
    except gp.ModelFileError:
        return _count("refused by the loader")
    if activation_floats(program) > MAX_ARENA_FLOATS:
        # See the module docstring: what such files ask for is the engine's memory check's to refuse.
        return _count("too large to build")
    try:
        engine = Engine(program, threads=1)
    except ValueError:
        return _count("refused by the engine")
    x = np.random.default_rng(len(blob)).standard_normal((1, *engine.input_shape), dtype=np.float32)
    out = engine.run(x)
    if out.shape != (1, engine.classes):
        raise AssertionError(f"run returned shape {out.shape}, expected (1, {engine.classes})")
    return _count("ran")


def _with_seed_corpus(argv: list[str]) -> list[str]:
    """argv with a corpus folder that holds the seeds (each as all three modes), creating one if none is given."""
    folders = [a for a in argv[1:] if not a.startswith("-") and os.path.isdir(a)]
    files = [a for a in argv[1:] if not a.startswith("-") and os.path.isfile(a)]
    if files:
        return argv  # reproducing given inputs
    if not folders:
        folders = [tempfile.mkdtemp(prefix="ghostfast-fuzz-")]
        argv = [*argv, folders[0]]
    if not any(Path(folders[0]).iterdir()):
        for i, blob in enumerate(SEEDS):
            for mode in range(3):
                Path(folders[0], f"seed-{i}-{mode}").write_bytes(bytes([mode]) + blob)
    return argv


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > ADDRESS_SPACE:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, hard))
    atheris.Setup(_with_seed_corpus(sys.argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
