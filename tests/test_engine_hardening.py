"""Issue 17, engine side: thread counts, dataflow validation, memory demands, misaligned inputs, fork(), input
dtypes and the error type of ``ghostfast.load``.

Every program here is built by hand (numpy only, no torch), so the file runs in seconds. The cases that hung
before their fix (a partial thread-pool start, fork() during run()) run in a subprocess with a timeout.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ghostfast
from ghostfast import _core
from ghostfast.engine import Engine
from ghostfast.program import OP, ModelFileError, Program, save_program

HANG_TIMEOUT_S = 60


def _conv_weights(rng, out_c, in_c, k):
    return (rng.standard_normal((out_c, in_c, k, k)) * 0.2).astype(np.float32), \
        (rng.standard_normal(out_c) * 0.1).astype(np.float32)


def conv_program(h=8, w=8, c=4, max_batch=2, seed=0) -> Program:
    """input (3, h, w) -> 3x3 conv (c channels, ReLU) -> global average pool -> (c, 1, 1)."""
    wt, b = _conv_weights(np.random.default_rng(seed), c, 3, 3)
    return Program(
        max_batch=max_batch, input_value=0, output_value=2,
        buffers=[(3, h, w), (c, h, w), (c, 1, 1)],
        values=[(0, 0, 3), (1, 0, c), (2, 0, c)],
        ops=[(OP["conv"], [0], 1, [3, 1, 1, 1], [0, 1], "conv"),
             (OP["global_avg_pool"], [1], 2, [], [], "pool")],
        tensors=[wt, b], meta={"model": "conv_program"},
    )


def two_reader_program(h=8, w=8, c=4, max_batch=2) -> Program:
    """Two 3x3 convs of the input, added, then pooled: the input has two readers, so it is converted to NHWC."""
    rng = np.random.default_rng(1)
    w1, b1 = _conv_weights(rng, c, 3, 3)
    w2, b2 = _conv_weights(rng, c, 3, 3)
    return Program(
        max_batch=max_batch, input_value=0, output_value=4,
        buffers=[(3, h, w), (c, h, w), (c, h, w), (c, h, w), (c, 1, 1)],
        values=[(0, 0, 3), (1, 0, c), (2, 0, c), (3, 0, c), (4, 0, c)],
        ops=[(OP["conv"], [0], 1, [3, 1, 1, 0], [0, 1], "conv_a"),
             (OP["conv"], [0], 2, [3, 1, 1, 0], [2, 3], "conv_b"),
             (OP["add"], [1, 2], 3, [0], [], "add"),
             (OP["global_avg_pool"], [3], 4, [], [], "pool")],
        tensors=[w1, b1, w2, b2], meta={"model": "two_reader_program"},
    )


def phantom_program() -> Program:
    """Issue 17 item 2: conv_b reads value 5, declared with the input's buffer and channels but never written."""
    p = two_reader_program()
    p.values = [*p.values, (0, 0, 3)]
    t, ins, out, params, tens, name = p.ops[1]
    p.ops[1] = (t, [5], out, params, tens, name)
    return p


def images(shape, n=1, seed=3):
    return np.random.default_rng(seed).standard_normal((n, *shape), dtype=np.float32)


def run_script(*parts: str, timeout: float = HANG_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Runs the parts (each dedented) in a fresh interpreter with this file's helpers importable; a hang fails
    the test."""
    script = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n" + "".join(map(textwrap.dedent, parts))
    try:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the subprocess hung (no exit within {timeout} s); output so far:\n{e.stdout}\n{e.stderr}")


# The child caps its address space a little above what it already uses, so that thread stacks (8 MiB of address
# space each) run out after a few dozen threads: the condition under which a partial pool start used to hang.
_CAP_ADDRESS_SPACE = """
    import resource
    def cap_address_space(headroom):
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + headroom, resource.RLIM_INFINITY))
"""


# ---- item 1: thread counts ---------------------------------------------------------------------------------

def test_max_threads_is_one_bound_for_python_and_cpp():
    assert _core.MAX_THREADS == 256
    program = conv_program()
    for bad in (0, -1, _core.MAX_THREADS + 1, 5000):
        with pytest.raises(ValueError, match=rf"threads must be an int in \[1, {_core.MAX_THREADS}\], got {bad}"):
            Engine(program, threads=bad)
    # the C++ constructor checks the same bound for callers that bypass the Python check
    with pytest.raises(ValueError, match=rf"\[1, {_core.MAX_THREADS}\]"):
        _core.Engine(**program.core_args(), threads=_core.MAX_THREADS + 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space through /proc and RLIMIT_AS")
def test_too_many_threads_fail_before_any_thread_starts():
    """threads=5000 straight to the C++ constructor under a tight address-space cap: it used to start threads
    until one failed, then hang; now it raises ValueError before starting any."""
    r = run_script(_CAP_ADDRESS_SPACE, """
        import threading
        from ghostfast import _core
        from test_engine_hardening import conv_program
        args = conv_program().core_args()
        cap_address_space(256 << 20)
        try:
            _core.Engine(**args, threads=5000)
        except ValueError as e:
            print("ValueError:", e)
        print("threads alive:", threading.active_count())
    """)
    assert r.returncode == 0, r.stderr
    assert "ValueError: threads must be in [1, 256], got 5000" in r.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space through /proc and RLIMIT_AS")
def test_pool_that_cannot_start_its_threads_fails_cleanly():
    """A valid thread count that the process cannot start (the issue's `prlimit --as` reproducer): a clear
    RuntimeError, the started workers joined, and the process still works (a smaller engine runs)."""
    r = run_script(_CAP_ADDRESS_SPACE, """
        import numpy as np
        import ghostfast
        from test_engine_hardening import conv_program, images
        program = conv_program()
        cap_address_space(256 << 20)
        try:
            ghostfast.Engine(program, threads=250)
            print("no error")
        except RuntimeError as e:
            print("RuntimeError:", e)
        engine = ghostfast.Engine(program, threads=2)
        print("after:", engine.run(images((3, 8, 8))).shape)
    """)
    assert r.returncode == 0, r.stderr
    assert "RuntimeError: could not start 249 worker threads (threads=250" in r.stdout
    assert "after: (1, 4)" in r.stdout


# ---- item 2: dataflow ----------------------------------------------------------------------------------------

def test_value_aliasing_the_input_is_a_model_file_error(tmp_path):
    path = tmp_path / "phantom.gfe"
    save_program(phantom_program(), path)
    with pytest.raises(ModelFileError, match=r"phantom\.gfe.*op 1 \(conv_b\) reads value 5.*input"):
        ghostfast.load(path)


def test_writing_over_the_input_through_another_value_is_rejected():
    p = two_reader_program()
    # a copy of conv_a's output into a value that covers the input's channels, then conv_b reads the input
    p.buffers = [(4, 8, 8), *p.buffers[1:]]
    p.values = [*p.values, (0, 0, 4)]
    p.ops = [p.ops[0], (OP["copy"], [1], 5, [], [], "clobber"), *p.ops[1:]]
    with pytest.raises(ValueError, match=r"op 1 \(clobber\) writes value 5 .* over the program input"):
        Engine(p)


def test_valid_aliasing_still_validates():
    """The documented overlaps: producers writing channel slices of one buffer (concat), a slice of the
    concatenated value read as one (chunk), and an in-place activation."""
    rng = np.random.default_rng(4)
    w1, b1 = _conv_weights(rng, 4, 3, 3)
    w2, b2 = _conv_weights(rng, 4, 3, 3)
    p = Program(
        max_batch=1, input_value=0, output_value=5,
        buffers=[(3, 8, 8), (8, 8, 8), (6, 1, 1)],
        # values 1, 2: the two halves of buffer 1; 3: all of it; 4: channels [2, 8), straddling both halves
        values=[(0, 0, 3), (1, 0, 4), (1, 4, 4), (1, 0, 8), (1, 2, 6), (2, 0, 6)],
        ops=[(OP["conv"], [0], 1, [3, 1, 1, 0], [0, 1], "left"),
             (OP["conv"], [0], 2, [3, 1, 1, 0], [2, 3], "right"),
             (OP["activation"], [3], 3, [1], [], "relu_in_place"),
             (OP["global_avg_pool"], [4], 5, [], [], "pool")],
        tensors=[w1, b1, w2, b2],
    )
    x = images((3, 8, 8))
    out = Engine(p).run(x)
    # numpy reference: both convs, concatenated, ReLU, mean of channels 2..7
    pad = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([pad[:, i:i + 8, j:j + 8] for i in range(3) for j in range(3)], axis=1)  # (3, 9, 8, 8)

    def conv(wt, b):
        return np.einsum("ckhw,ock->ohw", cols, wt.reshape(4, 3, 9)) + b[:, None, None]

    ref = np.maximum(np.concatenate([conv(w1, b1), conv(w2, b2)]), 0)[2:].mean(axis=(1, 2))
    np.testing.assert_allclose(out[0], ref, rtol=1e-4, atol=1e-5)


# ---- item 3: memory demands ------------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space through RLIMIT_AS")
def test_file_asking_for_more_memory_than_the_machine_has_is_refused_before_allocating(tmp_path):
    """The issue's 260-byte file: max_batch 4096, a 3x1000x1000 input, one global pool (about 49 GB of
    activations). Under an 8 GiB address-space cap it used to fail in the allocator (MemoryError) or, without
    a cap, allocate and zero-fill 49 GB; now it is a ModelFileError naming both sizes, at once."""
    p = Program(max_batch=4096, input_value=0, output_value=1, buffers=[(3, 1000, 1000), (3, 1, 1)],
                values=[(0, 0, 3), (1, 0, 3)], ops=[(OP["global_avg_pool"], [0], 1, [], [], "pool")], tensors=[])
    path = tmp_path / "huge.gfe"
    save_program(p, path)
    assert path.stat().st_size < 400
    r = run_script(f"""
        import resource, time
        import ghostfast
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.RLIM_INFINITY))
        t0 = time.perf_counter()
        try:
            ghostfast.load({str(path)!r})
            print("loaded")
        except Exception as e:
            print(type(e).__name__ + ":", e)
        print("seconds:", time.perf_counter() - t0)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ModelFileError:"), r.stdout
    assert "huge.gfe" in r.stdout and "max_batch 4096" in r.stdout
    import re
    need = int(re.search(r"needs (\d+) bytes", r.stdout).group(1))
    have = int(re.search(r"has (\d+) bytes available", r.stdout).group(1))
    assert need >= 4096 * 3 * 1000 * 1000 * 4 and have <= 8 << 30
    assert float(r.stdout.split("seconds:")[1]) < 5


def test_models_that_fit_still_load():
    engine = Engine(conv_program(h=64, w=64, c=16, max_batch=64))
    assert engine.run(images((3, 64, 64), n=64)).shape == (64, 16)


# ---- item 4 (input half): misaligned input arrays -----------------------------------------------------------

def _misaligned(x: np.ndarray) -> np.ndarray:
    y = np.frombuffer(b"\0" + x.tobytes(), dtype=np.float32, offset=1).reshape(x.shape)
    assert y.ctypes.data % 4 != 0 and not y.flags.aligned and y.flags.c_contiguous
    return y


@pytest.mark.parametrize("make", [conv_program, two_reader_program], ids=["stem_reads_input", "input_to_nhwc"])
@pytest.mark.parametrize("isa", _core.kernels.available())
def test_misaligned_input_gives_the_aligned_result(make, isa):
    """A float32 array whose data is not 4-byte aligned: the stem conv reads the caller's array in place (first
    program) or the NCHW->NHWC conversion does (second); both used to read it through a misaligned float*
    (undefined behaviour, reported by UBSan); the binding now copies it to aligned memory first."""
    engine = Engine(make(), isa=isa)
    x = images((3, 8, 8), n=2)
    np.testing.assert_array_equal(engine.run(_misaligned(x)), engine.run(x))
    np.testing.assert_array_equal(engine.time(_misaligned(x), 2).shape, (2,))
    assert len(engine.profile(_misaligned(x), iters=1)["ops"]) == len(engine.program.ops) + 2


# ---- item 5: fork() while another thread is inside run() --------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("threads", [1, 2])
def test_forked_child_can_run_an_engine_another_thread_was_running(threads):
    """A thread runs the engine in a loop while the main thread forks 12 children, each of which runs the same
    engine once and checks its output. The child used to block forever on the engine's mutex, held at fork
    time by a thread that does not exist in the child (and, at 2 threads, had no pool workers)."""
    r = run_script(f"""
        import os, sys, threading, time, warnings
        import numpy as np
        import ghostfast
        from test_engine_hardening import conv_program, images
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a multi-threaded process
        engine = ghostfast.Engine(conv_program(h=96, w=96, c=32), threads={threads})
        x = images((3, 96, 96))
        want = engine.run(x)
        stop = False
        def loop():
            while not stop:
                engine.run(x)
        t = threading.Thread(target=loop)
        t.start()
        time.sleep(0.05)
        failures = 0
        for i in range(12):
            pid = os.fork()
            if pid == 0:
                ok = np.array_equal(engine.run(x), want) and np.array_equal(engine.run(x), want)
                os._exit(0 if ok else 3)
            deadline = time.monotonic() + 10
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    status = -1
                    break
                time.sleep(0.01)
            if status != 0:
                failures += 1
                print("child", i, "status", status, "(-1: hung)")
            time.sleep(0.01)
        stop = True
        t.join()
        assert np.array_equal(engine.run(x), want)  # the parent's engine is untouched
        print("failures:", failures)
    """, timeout=HANG_TIMEOUT_S * 3)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "failures: 0" in r.stdout, r.stdout


# ---- item 6 (part): input dtypes and the error type of load ---------------------------------------------------

def test_big_endian_input_is_named_with_the_fix():
    engine = Engine(conv_program())
    x = images((3, 8, 8))
    with pytest.raises(TypeError, match=r"big-endian float32.*astype\('<f4'\)"):
        engine.run(x.astype(">f4"))
    np.testing.assert_array_equal(engine.run(x.astype(">f4").astype("<f4")), engine.run(x))


@pytest.mark.parametrize("dtype", ["float64", "float16", "int32", "uint8"])
def test_wrong_dtype_is_named(dtype):
    engine = Engine(conv_program())
    with pytest.raises(TypeError, match=rf"float32.*got {dtype}"):
        engine.run(images((3, 8, 8)).astype(dtype))


def test_non_array_input_is_named():
    engine = Engine(conv_program())
    with pytest.raises(TypeError, match="numpy array or a torch tensor.*got list"):
        engine.run([[1.0]])


def test_engine_validation_errors_of_a_file_are_model_file_errors(tmp_path):
    p = conv_program()
    t, ins, out, params, tens, name = p.ops[0]
    p.ops[0] = (t, ins, out, [3, 1, 7, 1], tens, name)  # padding 7 for a 3x3 kernel
    path = tmp_path / "badpad.gfe"
    save_program(p, path)
    with pytest.raises(ModelFileError, match=r"badpad\.gfe.*op 0 \(conv\) has an invalid kernel"):
        ghostfast.load(path)
    # arguments are not the file's fault: they stay plain ValueErrors
    save_program(conv_program(), tmp_path / "ok.gfe")
    for kwargs in ({"threads": 0}, {"isa": "sse"}):
        with pytest.raises(ValueError) as info:
            ghostfast.load(tmp_path / "ok.gfe", **kwargs)
        assert not isinstance(info.value, ModelFileError)
    assert ghostfast.load(tmp_path / "ok.gfe").run(images((3, 8, 8))).shape == (1, 4)
