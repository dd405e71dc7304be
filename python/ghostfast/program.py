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

Reading is defensive: sizes and offsets are checked against the file before use (offsets must be multiples of 4,
element counts are exact integers), the checksum catches truncation and flipped bytes, the JSON may nest at most
32 levels and is checked field by field, and the engine re-validates the program's semantics (indices, shapes,
parameters) in C++. Every malformed file raises :class:`ModelFileError` naming the file and what is wrong; the fuzz
target fuzz/fuzz_model_file.py holds the loader to that. Nothing is unpickled.
"""
from __future__ import annotations

import json
import math
import reprlib
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
    Path(path).write_bytes(pack_file(json.dumps(header, separators=(",", ":")).encode("utf-8"), b"".join(data_parts)))


def seal(body: bytes) -> bytes:
    """``body`` (a model file without its checksum) with its CRC-32 appended."""
    return body + struct.pack("<I", zlib.crc32(body))


def pack_file(head: bytes, data: bytes) -> bytes:
    """A model file around any header bytes and tensor data (save_program's layout; tests and the fuzz target
    use it to write files that save_program would not)."""
    body = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head)) + head
    return seal(body + b"\0" * (-len(body) % 64) + data)


def split_file(blob: bytes, name: str = "model file") -> tuple[bytes, memoryview]:
    """The header bytes and the tensor data section of a model file, after its framing and checksum checks."""
    if len(blob) < _PREAMBLE.size + 4:
        raise ModelFileError(f"{name} is not a ghostfast model file (only {len(blob)} bytes)")
    magic, version, head_len = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise ModelFileError(f"{name} is not a ghostfast model file (bad magic)")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{name} has model-file format version {version}; this ghostfast reads "
                             f"version {FORMAT_VERSION} (recompile the model with this version)")
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    if zlib.crc32(memoryview(blob)[:-4]) != crc:
        raise ModelFileError(f"{name} is truncated or corrupted (checksum mismatch)")
    head_end = _PREAMBLE.size + head_len
    data_start = head_end + (-head_end % 64)
    # The header and its padding end before the checksum, as in the C++ reader.
    if head_len > _MAX_HEADER or data_start > len(blob) - 4:
        raise ModelFileError(f"corrupted model file {name}: header length {head_len} exceeds the file")
    return blob[_PREAMBLE.size:head_end], memoryview(blob)[data_start:len(blob) - 4]


def _int(x, what: str, lo: int = 0, hi: int = 2**31 - 1) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        raise ModelFileError(f"{what} must be an integer in [{lo}, {hi}], got {reprlib.repr(x)}")
    return x


def _ints(xs, what: str, length: int | None = None) -> list[int]:
    if not isinstance(xs, list) or (length is not None and len(xs) != length) or len(xs) > 4096:
        raise ModelFileError(f"{what} must be a list of {f'{length} ' if length else ''}integers (at most 4096), "
                             f"got {reprlib.repr(xs)}")
    return [_int(x, what, -(2**31)) for x in xs]


def _list(x, what: str) -> list:
    if not isinstance(x, list) or len(x) > 1_000_000:
        raise ModelFileError(f"{what} must be a list, got {reprlib.repr(x)}")
    return x


# Nothing save_program writes nests deeper than 4 levels; the C++ reader (cpp/src/io/model_file.cpp) refuses more
# than 32, and so does this one, so that both front ends accept the same files.
_MAX_DEPTH = 32


def _reject_constant(name: str):
    # Python's json reads NaN / Infinity, which are not JSON (and which the C++ reader refuses).
    raise ValueError(f"{name} is not valid JSON")


def _parse_header(text: bytes, name: str) -> dict:
    too_deep = f"corrupted model file {name}: the header nests deeper than {_MAX_DEPTH} levels"
    try:
        header = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        # json recurses once per nesting level: a header of a million '[' exhausts the stack before the depth
        # check below could run.
        raise ModelFileError(too_deep) from None
    except ValueError as e:
        # JSONDecodeError, UnicodeDecodeError, NaN / Infinity, and a number with more digits than Python's
        # int-string limit (sys.get_int_max_str_digits) are all ValueErrors.
        raise ModelFileError(f"corrupted model file {name}: unreadable header ({str(e)[:200]})") from None
    # json's own limit (the recursion limit, about 1,000 levels) is far above what a model needs; walk the result
    # without recursion to hold the header to the C++ reader's depth.
    stack = [(header, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ModelFileError(too_deep)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    if not isinstance(header, dict) or not isinstance(header.get("program"), dict):
        raise ModelFileError(f"corrupted model file {name}: no program in the header")
    return header


def _tensor(spec, i: int, data: memoryview) -> np.ndarray:
    if not isinstance(spec, dict):
        raise ModelFileError(f"tensor {i} description must be an object, got {reprlib.repr(spec)}")
    shape = _ints(spec.get("shape"), f"tensor {i} shape")
    if not 1 <= len(shape) <= 4 or any(d < 0 for d in shape):
        raise ModelFileError(f"tensor {i} has an invalid shape {reprlib.repr(shape)}")
    off = _int(spec.get("offset"), f"tensor {i} offset", 0, len(data))
    nbytes = _int(spec.get("nbytes"), f"tensor {i} size", 0, len(data) - off)
    # The data section starts 64-byte aligned and save_program writes whole floats: an offset that is not a multiple
    # of 4 would hand the engine's kernels a misaligned float pointer (undefined behaviour), so it is refused.
    if off % 4:
        raise ModelFileError(f"tensor {i} offset {off} is not a multiple of 4")
    # Python ints: four dimensions of 65536 overflow int64 (np.prod wraps to 0 and matches nbytes 0).
    count = math.prod(shape)
    if 4 * count != nbytes:
        raise ModelFileError(f"tensor {i} size {nbytes} bytes does not match its shape "
                             f"{shape} ({count} float32 values)")
    # Read-only views into the file's bytes, not copies: loading holds one copy of the weights, not two.
    return np.frombuffer(data, dtype="<f4", count=count, offset=off).reshape(shape)


def _op(op, i: int) -> tuple:
    if not isinstance(op, list) or len(op) != 6 or not isinstance(op[5], str):
        raise ModelFileError(f"op {i} must be a list [type, inputs, output, params, tensors, "
                             f"name], got {reprlib.repr(op)}")
    name = op[5][:256]
    try:
        name.encode("utf-8")  # the engine takes names as UTF-8; json reads a lone "\ud800" escape without complaint
    except UnicodeEncodeError:
        raise ModelFileError(f"op {i} name {reprlib.repr(name)} is not valid Unicode") from None
    return (_int(op[0], f"op {i} type"), _ints(op[1], f"op {i} inputs"), _int(op[2], f"op {i} output"),
            _ints(op[3], f"op {i} params"), _ints(op[4], f"op {i} tensors"), name)


def parse_program(blob: bytes, name: str = "model file") -> Program:
    """The program held by the bytes of a compiled-model file (``name`` labels the errors); see :func:`load_program`.

    Every malformed input raises :class:`ModelFileError` saying what is wrong.
    """
    head, data = split_file(blob, name)
    header = _parse_header(head, name)
    p = header["program"]
    try:
        tensors = [_tensor(spec, i, data) for i, spec in enumerate(_list(p.get("tensors"), "tensors"))]
        ops = [_op(op, i) for i, op in enumerate(_list(p.get("ops"), "ops"))]
        meta = header.get("meta", {})
        return Program(
            max_batch=_int(p.get("max_batch"), "max_batch", 1, 4096),
            input_value=_int(p.get("input_value"), "input_value"),
            output_value=_int(p.get("output_value"), "output_value"),
            buffers=[tuple(_ints(b, "buffer", 3)) for b in _list(p.get("buffers"), "buffers")],
            values=[tuple(_ints(v, "value", 3)) for v in _list(p.get("values"), "values")],
            ops=ops, tensors=tensors, meta=meta if isinstance(meta, dict) else {},
        )
    except ModelFileError as e:
        # The field checks name the field; this adds the file.
        raise ModelFileError(f"corrupted model file {name}: {e}") from None


def load_program(path) -> Program:
    """The program of a compiled-model file; any unreadable or malformed file raises :class:`ModelFileError`."""
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e}") from e
    return parse_program(blob, str(path))
