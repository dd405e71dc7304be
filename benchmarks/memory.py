"""Peak memory of the native engine against ONNX Runtime, each loading its saved model file in a fresh process.

    python benchmarks/memory.py [--models ghostnet_100,mobilenet_v3_large] [--threads 1] [--csv out.csv]

For each model the parent process (with torch) writes the compiled engine (``Engine.save``) and the ONNX export
to a temporary folder. Then one child process per backend imports only its runtime (numpy + ghostfast, or
numpy + onnxruntime), records its resident memory, loads the model file, runs 20 batch-1 inferences and reads
the kernel's peak resident size (``VmHWM``). The figure is that peak minus the resident size before loading:
weights in the runtime's own layout, activation memory, thread stacks, and any transient copies made while
loading. Linux only (``/proc/self/status``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ghostfast import report

CHILD = r"""
import json, sys
import numpy as np

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key)

backend, path, shape, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
if backend == "native":
    import ghostfast
    before = status("VmRSS")
    engine = ghostfast.load(path, threads=threads)
    run = lambda: engine.run(x)
else:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    before = status("VmRSS")
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = lambda: session.run(None, {name: x})
for _ in range(20):
    run()
print(json.dumps({"before": before, "peak": status("VmHWM"), "after": status("VmRSS")}))
"""


def measure(name: str, threads: int, folder: Path) -> list[dict]:
    import torch

    import ghostfast
    from ghostfast.backends.onnxruntime import export_onnx
    from ghostfast.benchmark import prepare_model

    _, module, x = prepare_model(name)
    engine = ghostfast.compile(module, x.shape[1:], threads=1)
    files = {"native": folder / f"{name}.gfast", "onnxruntime": folder / f"{name}.onnx"}
    engine.save(files["native"])
    files["onnxruntime"].write_bytes(export_onnx(module, torch.as_tensor(np.asarray(x))))
    weights = sum(int(np.prod(t.shape)) * 4 for t in engine.program.tensors)
    rows = []
    for backend, path in files.items():
        out = subprocess.run([sys.executable, "-c", CHILD, backend, str(path), json.dumps(list(x.shape)), str(threads)],
                             capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"model": name, "backend": backend, "threads": threads, "weights_MiB": weights / 2**20,
                     "peak_MiB": (m["peak"] - m["before"]) / 2**20, "resident_after_MiB": (m["after"] - m["before"]) / 2**20,
                     "file_MiB": path.stat().st_size / 2**20})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ghostnet_050,ghostnet_100,ghostnet_130,mobilenet_v3_large,mobilenet_v2,efficientnet_b0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", help="also write the rows here")
    args = p.parse_args(argv)
    from ghostfast import models

    names = models.names() if args.models == "all" else [models.resolve(m) for m in args.models.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += measure(name, args.threads, Path(tmp))
    for r in rows:
        base = next(o for o in rows if o["model"] == r["model"] and o["backend"] == "onnxruntime")
        r["peak / ORT"] = r["peak_MiB"] / base["peak_MiB"]
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".2f"))
    if args.csv:
        Path(args.csv).write_text(report.to_csv(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
