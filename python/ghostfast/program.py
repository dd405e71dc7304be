"""The engine program (what lowering produces and a compiled-model file holds), and its file format.

This module needs numpy and the standard library only: a saved model loads and runs without torch.

File format, version 1 (all integers little-endian)::

    8 bytes   magic b"GHSTFAST"
    4 bytes   format version (uint32)
    8 bytes   header length H (uint64)
    H bytes   header: UTF-8 JSON {"program": {...}, "meta": {...}}; tensors as {"shape", "offset", "nbytes"}
    padding   zeros up to a multiple of 64 bytes
    D bytes   tensor data: float32, at the header's offsets (relative to the start of this section)
    4 bytes   CRC-32 of every byte before it

Reading is defensive: sizes and offsets are checked against the file before use, the checksum catches
truncation and flipped bytes, the JSON is checked field by field, and the engine re-validates the program's
semantics (indices, shapes, parameters) in C++. Nothing is unpickled.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"GHSTFAST"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIQ")
_MAX_HEADER = 64 << 20

# Op type codes shared with cpp/include/ghostfast/engine.h (OpType).
OP = {"conv": 1, "pointwise": 2, "depthwise": 3, "ghost": 4, "squeeze_excite": 5, "add": 6, "max_pool": 7,
      "avg_pool": 8, "global_avg_pool": 9, "channel_shuffle": 10, "copy": 11, "activation": 12}


class ModelFileError(ValueError):
    """A compiled-model file is truncated, corrupted, of another version, or not a ghostfast file."""


@dataclass
class Program:
    max_batch: int
    input_value: int
    output_value: int
    buffers: list[tuple[int, int, int]]  # (c, h, w) per buffer
    values: list[tuple[int, int, int]]  # (buffer, channel offset, channels) per value
    ops: list[tuple[int, list[int], int, list[int], list[int], str]]  # (type, inputs, output, params, tensors, name)
    tensors: list[np.ndarray]  # float32, shapes as the op types expect
    meta: dict = field(default_factory=dict)

    def core_args(self) -> dict:
        """Keyword arguments of ``_core.Engine``."""
        return {
            "max_batch": self.max_batch, "input_value": self.input_value, "output_value": self.output_value,
            "buffers": list(self.buffers), "values": list(self.values), "ops": list(self.ops),
            "tensors": [(list(t.shape), np.ascontiguousarray(t, dtype=np.float32).reshape(-1)) for t in self.tensors],
        }


def save_program(program: Program, path) -> None:
    data_parts, specs, offset = [], [], 0
    for t in program.tensors:
        raw = np.ascontiguousarray(t, dtype="<f4").tobytes()
        specs.append({"shape": list(map(int, t.shape)), "offset": offset, "nbytes": len(raw)})
        data_parts.append(raw)
        offset += len(raw)
    header = {
        "program": {
            "max_batch": program.max_batch, "input_value": program.input_value,
            "output_value": program.output_value, "buffers": [list(b) for b in program.buffers],
            "values": [list(v) for v in program.values],
            "ops": [[t, list(i), o, list(p), list(ts), n] for t, i, o, p, ts, n in program.ops],
            "tensors": specs,
        },
        "meta": program.meta,
    }
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    body = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head)) + head
    body += b"\0" * (-len(body) % 64) + b"".join(data_parts)
    Path(path).write_bytes(body + struct.pack("<I", zlib.crc32(body)))


def _int(x, what: str, lo: int = 0, hi: int = 2**31 - 1) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        raise ModelFileError(f"corrupted model file: {what} must be an integer in [{lo}, {hi}], got {x!r}")
    return x


def _ints(xs, what: str, length: int | None = None) -> list[int]:
    if not isinstance(xs, list) or (length is not None and len(xs) != length) or len(xs) > 4096:
        raise ModelFileError(f"corrupted model file: {what} must be a list" + (f" of {length}" if length else ""))
    return [_int(x, what, -(2**31)) for x in xs]


def _list(x, what: str) -> list:
    if not isinstance(x, list) or len(x) > 1_000_000:
        raise ModelFileError(f"corrupted model file: {what} must be a list")
    return x


def load_program(path) -> Program:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e}") from e
    if len(blob) < _PREAMBLE.size + 4:
        raise ModelFileError(f"{path} is not a ghostfast model file (only {len(blob)} bytes)")
    magic, version, head_len = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise ModelFileError(f"{path} is not a ghostfast model file (bad magic)")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model-file format version {version}; this ghostfast reads "
                             f"version {FORMAT_VERSION} (recompile the model with this version)")
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    if zlib.crc32(blob[:-4]) != crc:
        raise ModelFileError(f"{path} is truncated or corrupted (checksum mismatch)")
    if head_len > min(_MAX_HEADER, len(blob)):
        raise ModelFileError(f"corrupted model file {path}: header length {head_len} exceeds the file")
    head_end = _PREAMBLE.size + head_len
    data_start = head_end + (-head_end % 64)
    data = memoryview(blob)[data_start:len(blob) - 4]
    try:
        header = json.loads(blob[_PREAMBLE.size:head_end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"corrupted model file {path}: unreadable header ({e})") from e
    if not isinstance(header, dict) or not isinstance(header.get("program"), dict):
        raise ModelFileError(f"corrupted model file {path}: no program in the header")
    p = header["program"]
    tensors = []
    for i, spec in enumerate(_list(p.get("tensors"), "tensors")):
        if not isinstance(spec, dict):
            raise ModelFileError(f"corrupted model file: tensor {i} description")
        shape = _ints(spec.get("shape"), f"tensor {i} shape")
        if not 1 <= len(shape) <= 4 or any(d < 0 for d in shape):
            raise ModelFileError(f"corrupted model file: tensor {i} has an invalid shape {shape}")
        off = _int(spec.get("offset"), f"tensor {i} offset", 0, len(data))
        nbytes = _int(spec.get("nbytes"), f"tensor {i} size", 0, len(data) - off)
        if nbytes != 4 * int(np.prod(shape, dtype=np.int64)):
            raise ModelFileError(f"corrupted model file: tensor {i} size does not match its shape")
        # Read-only views into the file's bytes, not copies: loading holds one copy of the weights, not two.
        tensors.append(np.frombuffer(data, dtype="<f4", count=nbytes // 4, offset=off).reshape(shape))
    ops = []
    for i, op in enumerate(_list(p.get("ops"), "ops")):
        if not isinstance(op, list) or len(op) != 6 or not isinstance(op[5], str):
            raise ModelFileError(f"corrupted model file: op {i} is malformed")
        ops.append((_int(op[0], f"op {i} type"), _ints(op[1], f"op {i} inputs"), _int(op[2], f"op {i} output"),
                    _ints(op[3], f"op {i} params"), _ints(op[4], f"op {i} tensors"), op[5][:256]))
    meta = header.get("meta", {})
    return Program(
        max_batch=_int(p.get("max_batch"), "max_batch", 1, 4096),
        input_value=_int(p.get("input_value"), "input_value"),
        output_value=_int(p.get("output_value"), "output_value"),
        buffers=[tuple(_ints(b, "buffer", 3)) for b in _list(p.get("buffers"), "buffers")],
        values=[tuple(_ints(v, "value", 3)) for v in _list(p.get("values"), "values")],
        ops=ops, tensors=tensors, meta=meta if isinstance(meta, dict) else {},
    )
