"""``ghostfast.compare``: every model on every backend, measured the same way, as records (a list of dicts).

Method, per model:

1. One model instance with randomized BatchNorm statistics (:func:`ghostfast.parity.randomize_batchnorm`), so
   every backend runs the same weights and the output check means something; one seeded input per batch size.
2. For each thread count and batch size, every backend prepares a runner (export, compile, session); its output
   is checked against torch eager on that input. A backend that cannot run here (no GPU, package missing) is
   recorded as ``skipped`` with the reason; one that fails or disagrees with torch is recorded and not timed.
3. The runners are timed interleaved, A B C A B C ...: ``rounds`` rounds of ``iters / rounds`` iterations each,
   every round preceded by ``warmup`` untimed iterations (and the first by one extra untimed round). Slow phases
   of a shared machine then hit every backend alike, so the ratio to the baseline holds when absolute
   times drift. All backends are timed by the C++ loop (``Runner.time``) on the same input, threads and batch.
   Before each round the process waits until the previous backend's idle pool threads stop spinning
   (:func:`wait_until_cpu_idle`): ONNX Runtime's workers keep a core busy for ~60 ms after every run, which
   would otherwise time-share a core with the next backend's own workers.

Ctrl-C stops the run: runners are closed, the group being measured is dropped, and the records measured so far
are returned with ``result.interrupted = True``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import sys
import time
import warnings
from collections.abc import Iterable

import numpy as np
import torch

from . import env
from .backends import BackendUnavailable, get_backend
from .benchmark import _positive_int
from .models import registry
from .parity import DEFAULT_TOLERANCE, check_output, randomize_batchnorm
from .profiler import input_shape, profile
from .published import published
from .stats import summarize_ns

DEFAULT_BACKENDS = ("native", "torch", "onnxruntime")
DEFAULT_THREADS = (1, 2)
# 50 timed iterations in 5 rounds per cell: all 20 zoo models on the three default backends at 1 and 2 threads
# took 3 minutes on this project's 2 cores when quiet (6-8 with other builds running); torch eager, the slowest
# backend, takes most of the timing, and the ONNX exports (2-4 s per model) most of the preparation.
DEFAULT_ITERS = 50
DEFAULT_ROUNDS = 5
DEFAULT_WARMUP = 2

# Every record has exactly these keys (None where a value does not apply), so a DataFrame or CSV of a run
# with skipped backends has the same columns as one without.
RECORD_KEYS = (
    "model", "backend", "threads", "batch", "input_size", "family", "status", "reason",
    "params", "macs", "weight_bytes_fp32", "weight_bytes_int8", "peak_activation_bytes",
    "median_ms", "p10_ms", "p90_ms", "mean_ms", "min_ms", "std_ms", "round_drift",
    "iters", "rounds", "warmup", "baseline", "ratio_to_baseline", "ms_per_gmac", "images_per_s",
    "check_max_rel_err", "check_top1_agree", "check_ok",
    "top1", "top1_source", "top1_published", "top1_published_source", "top1_measured",
)

STATUSES = ("ok", "skipped", "error", "mismatch")


class Comparison(list):
    """The records of one :func:`compare` run (a plain list of dicts), plus how and where it was measured.

    ``settings``: the arguments after validation; ``environment``: CPU, ISA, library versions, date, command
    line; ``interrupted``: Ctrl-C ended the run early; ``wall_s``: seconds the run took.
    """

    def __init__(self, records=(), settings=None, environment=None, interrupted=False, wall_s=None):
        super().__init__(records)
        self.settings = dict(settings or {})
        self.environment = dict(environment or {})
        self.interrupted = interrupted
        self.wall_s = wall_s


def _as_tuple(value, what: str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int, np.integer)):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(value)
    raise TypeError(f"{what} must be a value or a sequence of values, got {type(value).__name__}")


def _names(models) -> list[str]:
    names = []
    for m in _as_tuple(models, "models") or registry.names():
        if not isinstance(m, str):
            raise TypeError(f"models must be zoo model names (str), got {type(m).__name__}")
        names.append(registry.resolve(m))  # ValueError naming the closest models for an unknown name
    return list(dict.fromkeys(names))


def _measured_top1(name: str) -> dict | None:
    """Measured ImageNet top-1 from ghostfast.accuracy when it has a full validation-set run of ``name``
    (50,000 images, 1,000 classes, loaded weights); a partial run never replaces the published figure."""
    try:
        from .accuracy import measured_top1
    except ImportError:
        return None
    try:
        found = measured_top1(name)
    except Exception as e:  # a broken accuracy cache must not cost a latency run; say so and use published
        warnings.warn(f"measured top-1 for {name} unavailable ({type(e).__name__}: {e}); using published",
                      stacklevel=3)
        return None
    if not found or found.get("top1") is None or found.get("full_set") is not True:
        return None
    return found


@functools.lru_cache(maxsize=None)
def _size_fields(name: str) -> dict:
    # Params, MACs and bytes depend on the architecture only, not on the weights: profile each model once.
    prof = profile(name)
    return {"params": prof.params, "macs": prof.macs, "weight_bytes_fp32": prof.weight_bytes_fp32,
            "weight_bytes_int8": prof.weight_bytes_int8, "peak_activation_bytes": prof.peak_activation_bytes}


def _model_fields(name: str) -> dict:
    pub = published(name)
    measured = _measured_top1(name)
    pub_label = f"published ({pub.get('source', 'unknown source')})"
    if measured is not None:
        top1 = float(measured["top1"])
        source = str(measured.get("source") or "ghostfast eval")
        source = source if source.startswith("measured") else f"measured ({source})"
    else:
        top1, source = pub.get("top1"), pub_label
    return {
        "model": name, "family": registry.spec(name).family, **_size_fields(name),
        "top1": top1, "top1_source": source, "top1_published": pub.get("top1"),
        "top1_published_source": pub.get("source"),
        "top1_measured": None if measured is None else float(measured["top1"]),
    }


def wait_until_cpu_idle(window_s: float = 0.02, busy_fraction: float = 0.25, limit_s: float = 0.5) -> float:
    """Sleep until this process's threads (other backends' spinning thread pools) use less than
    ``busy_fraction`` of one core over a ``window_s`` window, or ``limit_s`` passed; returns the seconds waited.
    The window spans several scheduler ticks: other threads' CPU time reaches the process clock at ticks, so
    a 2 ms window often read 0 while ONNX Runtime's worker was spinning flat out."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        c0 = time.process_time()
        time.sleep(window_s)
        if time.process_time() - c0 < busy_fraction * window_s:
            break
    return time.perf_counter() - start


def _round_sizes(iters: int, rounds: int) -> list[int]:
    rounds = min(rounds, iters)
    return [iters // rounds + (1 if i < iters % rounds else 0) for i in range(rounds)]


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if not isinstance(e, BackendUnavailable) else str(e)


def checked_fields(output, reference, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The check fields of a record for ``output`` against torch's ``reference``; a failed check adds
    ``status="mismatch"`` and the reason (every backend, host or device, is judged by this one rule)."""
    fields = check_output(output, reference, tolerance)
    note = fields.pop("check_note", None)
    if not fields["check_ok"]:
        note = note or f"max rel. error {fields['check_max_rel_err']:.2e} > tolerance {tolerance:.0e}"
        fields.update(status="mismatch", reason=f"output differs from torch: {note}")
    return fields


def measure_group(model, x: torch.Tensor, reference: np.ndarray, backends: list[str], threads: int, iters: int,
                  rounds: int, warmup: int, tolerance: float = DEFAULT_TOLERANCE, check: bool = True,
                  unavailable: dict[str, str] | None = None) -> dict[str, dict]:
    """Prepare, check and time ``backends`` interleaved on one input and thread count: backend -> fields.

    The fields are the per-backend part of a record (status, reason, check, latency statistics).
    """
    unavailable = unavailable or {}
    out: dict[str, dict] = {}
    runners = {}
    # ExitStack closes runners in reverse order: torch-based runners each restore the thread count they found.
    with contextlib.ExitStack() as stack:
        for name in backends:
            if name in unavailable:
                out[name] = {"status": "skipped", "reason": unavailable[name]}
                continue
            try:
                runner = stack.enter_context(get_backend(name).prepare(model, x, threads))
            except BackendUnavailable as e:
                out[name] = {"status": "skipped", "reason": str(e)}
                continue
            except Exception as e:  # one backend failing on one model must not end the comparison
                out[name] = {"status": "error", "reason": f"prepare failed: {_reason(e)}"}
                continue
            fields: dict = {"threads": runner.threads}
            if check:
                try:
                    fields.update(checked_fields(runner.output(), reference, tolerance))
                except Exception as e:
                    out[name] = {"status": "error", "reason": f"run failed: {_reason(e)}"}
                    continue
                if fields.get("status") == "mismatch":
                    out[name] = fields
                    continue
            out[name] = fields
            runners[name] = runner

        sizes = _round_sizes(iters, rounds)
        samples: dict[str, list[np.ndarray]] = {name: [] for name in runners}
        for i, n in enumerate(sizes):
            for name, runner in list(runners.items()):
                # Before the first round one untimed round more: first calls build caches, profile
                # (TorchScript), spin up thread pools.
                wait_until_cpu_idle()
                try:
                    samples[name].append(np.asarray(runner.time(n, warmup + (n if i == 0 else 0))))
                except Exception as e:
                    out[name] = {**out[name], "status": "error", "reason": f"timing failed: {_reason(e)}"}
                    del runners[name], samples[name]

    for name, rounds_ns in samples.items():
        stats = summarize_ns(np.concatenate(rounds_ns))
        medians = [float(np.median(s)) for s in rounds_ns]
        out[name].update(
            status="ok", reason=None, median_ms=stats["median_ms"], p10_ms=stats["p10_ms"],
            p90_ms=stats["p90_ms"], mean_ms=stats["mean_ms"], min_ms=stats["min_ms"], std_ms=stats["std_ms"],
            round_drift=max(medians) / min(medians), iters=sum(sizes), rounds=len(sizes), warmup=warmup)
    return out


def _resolve_baseline(baseline, backend_list: list[str], unavailable: dict[str, str]) -> str | None:
    if baseline is None:  # onnxruntime when it runs here, else the first backend that runs here
        usable = [b for b in backend_list if b not in unavailable]
        return "onnxruntime" if "onnxruntime" in usable else (usable[0] if usable else None)
    if baseline is False or baseline == "":
        return None
    if not isinstance(baseline, str):
        raise TypeError(f"baseline must be a backend name, got {type(baseline).__name__}")
    name = get_backend(baseline).name
    if name not in backend_list:
        raise ValueError(f"baseline {name!r} is not among the compared backends ({', '.join(backend_list)})")
    return name


def reference_model(name: str, seed: int = 0):
    """The instance :func:`compare` measures: the zoo model ``name`` with BN statistics randomized by ``seed``.

    The zoo's initialisation draws from torch's global generator; it is seeded here too (in a forked generator
    state, so the caller's is untouched), so one seed gives the same weights in every run and ``ghostfast export``
    files can be reproduced from their manifest."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = registry.create(name)
    return randomize_batchnorm(model, seed)


def reference_input(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """The seeded input :func:`compare` feeds ``name`` at batch size ``batch``."""
    shape = (batch, *input_shape(registry.spec(name).input_size)[1:])
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def torch_reference(model, x: torch.Tensor) -> np.ndarray:
    """Torch eager's output on ``x``: what every backend's output is checked against."""
    with torch.inference_mode():
        return model(x).numpy()


def compare(
    models=None,
    backends=DEFAULT_BACKENDS,
    threads=DEFAULT_THREADS,
    batch=(1,),
    iters: int = DEFAULT_ITERS,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int | None = None,
    baseline: str | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    progress: bool = True,
    device=None,
) -> Comparison:
    """Size and latency of ``models`` on ``backends`` at each thread count and batch size; one record each.

    ``models``: zoo names or aliases (default: the whole zoo). ``backends``: names from
    :func:`ghostfast.backends.backend_names`. ``iters``: timed iterations per record, split into ``rounds``
    interleaved rounds (rounds are capped at ``iters``). ``warmup``: untimed iterations before each round
    (default 2). ``baseline``: the backend each record's ``ratio_to_baseline`` divides by (default:
    onnxruntime when compared and installed, else the first backend that runs here; ``False`` for none).
    ``check``: compare each backend's output with torch eager before timing it; ``tolerance`` is the largest
    max |diff| / max |torch| that passes. ``seed``: the zoo initialisation, BN randomization and input.
    ``device``: also run the native engine on a phone over adb (``"adb"``, ``"adb:SERIAL"`` or a
    :class:`ghostfast.device.AdbDevice`): one more record per cell, backend ``native@<device model>``, checked and
    timed there by ``ghostfast-bench`` (no ratio: it is another machine); ``backends`` may then be empty.

    Returns a :class:`Comparison`: a list of dicts with the keys :data:`RECORD_KEYS` (latency fields None for
    records whose ``status`` is not ``"ok"``), plus ``settings`` and ``environment``.
    """
    t_start = time.perf_counter()
    names = _names(models)
    backend_list = list(dict.fromkeys(get_backend(b).name for b in _as_tuple(backends, "backends")))
    thread_list = list(dict.fromkeys(_positive_int(t, "threads") for t in _as_tuple(threads, "threads")))
    batch_list = list(dict.fromkeys(_positive_int(b, "batch") for b in _as_tuple(batch, "batch")))
    iters = _positive_int(iters, "iters")
    rounds = _positive_int(rounds, "rounds")
    warmup = DEFAULT_WARMUP if warmup is None else warmup
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if not ((backend_list or device is not None) and thread_list and batch_list):
        raise ValueError("backends, threads and batch must each name at least one value")
    unavailable: dict[str, str] = {}
    for b in backend_list:
        try:
            get_backend(b).check_available()
        except BackendUnavailable as e:
            unavailable[b] = str(e)
    base = _resolve_baseline(baseline, backend_list, unavailable)

    settings = {"models": names, "backends": backend_list, "threads": thread_list, "batch": batch_list,
                "iters": iters, "rounds": min(rounds, iters), "warmup": int(warmup), "baseline": base,
                "check": check, "tolerance": tolerance, "seed": seed, "unavailable": unavailable}
    environment = {**env.describe(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "command": " ".join(sys.argv), "torch_threads_default": torch.get_num_threads(),
                   "load_average_start": _load_average(), "load_average_end": None,
                   # How each backend is set up (precision, threads), so a report says what was timed.
                   "backends": {b: get_backend(b).description for b in backend_list}}
    dev = None
    if device is not None:
        from .device import open_device

        dev = open_device(device)
        if dev is not device:  # opened here from "adb[:SERIAL]": set up here, closed at the end
            dev.setup()
        settings["device"] = dev.backend
        environment["device"] = dev.describe()
    result = Comparison(settings=settings, environment=environment)

    from tqdm.auto import tqdm

    groups = [(n, b, t) for n in names for b in batch_list for t in thread_list]
    bar = tqdm(total=len(groups), desc="compare", unit="cell", disable=not progress, file=sys.stderr)
    try:
        for name in names:
            model = reference_model(name, seed)
            fields = _model_fields(name)
            for bs in batch_list:
                x = reference_input(name, bs, seed)
                shape = tuple(x.shape)
                reference = torch_reference(model, x)
                if dev is not None:
                    dev.prepare(name, model, x)
                for t in thread_list:
                    bar.set_postfix_str(f"{name} batch {bs} threads {t}")
                    group = measure_group(model, x, reference, backend_list, t, iters, rounds, int(warmup),
                                          tolerance, check, unavailable)
                    result.extend(_records(fields, group, bs, t, shape, base, backend_list))
                    if dev is not None:  # another machine: no ratio to a host baseline
                        on_device = {dev.backend: dev.measure(name, bs, reference, t, iters, int(warmup), tolerance,
                                                              check)}
                        result.extend(_records(fields, on_device, bs, t, shape, None, [dev.backend]))
                    bar.update()
                if dev is not None:
                    dev.release(name, bs)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        if dev is not None and dev is not device:
            dev.close()
    result.wall_s = time.perf_counter() - t_start
    result.environment["load_average_end"] = _load_average()
    if dev is not None:
        result.environment["device"] = dev.describe()  # now with the kernel table the bench reported
    return result


def _load_average() -> list[float] | None:
    # Runnable processes averaged over 1, 5, 15 minutes: above ~0.5 per core, other work shared the CPUs.
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # not on Windows
        return None


def _records(fields: dict, group: dict[str, dict], batch: int, threads: int, shape, baseline: str | None,
             backend_list: list[str]) -> list[dict]:
    base_ms = group.get(baseline, {}).get("median_ms") if baseline else None
    records = []
    for name in backend_list:
        g = group[name]
        rec = dict.fromkeys(RECORD_KEYS)
        rec.update(fields)
        rec.update(backend=name, threads=threads, batch=batch, input_size="x".join(map(str, shape[2:])),
                   baseline=baseline)
        rec.update(g)
        # The record keeps the thread count asked for; a backend that cannot honour it says so in its runner.
        rec["threads"] = threads if g.get("threads") in (None, threads) else g["threads"]
        if rec["status"] == "ok":
            ms = rec["median_ms"]
            rec["ms_per_gmac"] = ms / (rec["macs"] * batch / 1e9)
            rec["images_per_s"] = batch * 1e3 / ms
            rec["ratio_to_baseline"] = ms / base_ms if base_ms else None
        records.append({k: rec[k] for k in RECORD_KEYS})
    return records


BREAKDOWN_MODELS = ("ghostnet_100", "mobilenet_v3_large")


def op_breakdown(models=BREAKDOWN_MODELS, threads: int = 1, iters: int = 30, seed: int = 0) -> dict[str, dict]:
    """Per-op and per-op-type time of ``models`` on the native engine (``Engine.profile``): name -> profile.

    The models get the same BN randomization as in :func:`compare`. Raises BackendUnavailable if the native
    engine cannot run here.
    """
    from .engine import compile as compile_engine

    threads = _positive_int(threads, "threads")
    iters = _positive_int(iters, "iters")
    get_backend("native").check_available()
    out = {}
    for name in _names(models):
        model = reference_model(name, seed)
        engine = compile_engine(model, threads=threads)
        x = torch.randn((1, *engine.input_shape), generator=torch.Generator().manual_seed(seed)).numpy()
        engine.profile(x, max(1, iters // 5))  # warm-up: first runs touch the arena and packed weights
        prof = engine.profile(x, iters)
        _attribute_macs(prof, profile(model).layers)
        out[name] = prof
    return out


def _attribute_macs(prof: dict, layers) -> None:
    """Add ``macs`` to each op of an ``Engine.profile`` result and ``by_type_macs`` (in place).

    A native op is named after the modules it fused ("blocks.1.0.ghost1 + add_1 (call_function add)"); a
    profiler layer belongs to the first op naming it or one of its parent modules. The time share of an op
    type next to its MAC share is what shows where MACs are cheap or dear.
    """
    pending = [(layer.name, layer.macs) for layer in layers if layer.macs]
    by_type: dict[str, int] = {}
    for op in prof["ops"]:
        parts = [c.split(" (")[0].strip() for c in op["op"].split(" + ")]
        mine = [(n, m) for n, m in pending
                if any(n == c or n.startswith(c + ".") or n.startswith(c + "[") for c in parts)]
        op["macs"] = sum(m for _, m in mine)
        pending = [p for p in pending if p not in mine]
        by_type[op["type"]] = by_type.get(op["type"], 0) + op["macs"]
    prof["by_type_macs"] = by_type
    prof["unattributed_macs"] = sum(m for _, m in pending)
