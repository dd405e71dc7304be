"""GPU backends: PyTorch on CUDA ("torch-cuda") and ONNX Runtime's CUDA provider ("onnxruntime-cuda").

Both run fp32 with TF32 off, so their outputs pass the same check against torch on the CPU as every other
backend (TF32 convolutions, cuDNN's default, land near 1e-3 relative). An iteration ends with a device
synchronization, so the C++ loop's wall-clock sample covers the whole inference, not just the kernel launches.
``threads`` does not apply on a GPU; the record keeps the value asked for so rows line up with the CPU runs.

Without a GPU, ``check_available`` raises :class:`BackendUnavailable` with the reason, and ``compare`` records
a skip instead of failing.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .base import Backend, BackendUnavailable, Runner, register_backend
from .onnxruntime import export_onnx, import_onnxruntime, session_options


def _require_cuda_torch() -> None:
    if torch.version.cuda is None:
        raise BackendUnavailable(f"no CUDA: this torch ({torch.__version__}) is a CPU-only build; install a CUDA "
                                 f"build of torch on a machine with an NVIDIA GPU")
    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA GPU visible to torch (torch.cuda.is_available() is False: no device, "
                                 "no driver, or CUDA_VISIBLE_DEVICES hides it)")


class TorchCudaRunner(Runner):
    backend = "torch-cuda"

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        self.threads = threads or 1
        self._saved_tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            # A copy on the GPU: the caller's module stays on the CPU for the other backends.
            self.model = _device_copy(model)
            self.x = x.to("cuda")
        except BaseException:
            self.close()
            raise

    def _forward(self) -> torch.Tensor:
        return self.model(self.x)

    def __call__(self) -> None:
        with torch.inference_mode():
            self._forward()
        torch.cuda.synchronize()

    def output(self) -> np.ndarray:
        with torch.inference_mode():
            return self._forward().float().cpu().numpy()

    def close(self) -> None:
        torch.backends.cudnn.allow_tf32 = self._saved_tf32
        self.model = self.x = None
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _device_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("cuda").eval()


class TorchCuda(Backend):
    name = "torch-cuda"
    description = "PyTorch eager on CUDA (fp32, TF32 off), synchronized per iteration"

    def check_available(self) -> None:
        _require_cuda_torch()

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        self.check_available()
        return TorchCudaRunner(model, x, threads)


class OrtCudaRunner(Runner):
    backend = "onnxruntime-cuda"

    def __init__(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> None:
        ort = import_onnxruntime()
        self.threads = threads or 1
        provider = ("CUDAExecutionProvider", {"use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"})
        self.session = ort.InferenceSession(export_onnx(model, x), session_options(ort, threads),
                                            providers=[provider, "CPUExecutionProvider"])
        if self.session.get_providers()[0] != "CUDAExecutionProvider":
            # ORT falls back to the CPU when the CUDA libraries fail to load; timing that would mislabel it.
            raise BackendUnavailable("onnxruntime could not start its CUDA provider (CUDA/cuDNN libraries "
                                     "missing or not matching this onnxruntime-gpu build)")
        name_in, name_out = self.session.get_inputs()[0].name, self.session.get_outputs()[0].name
        self.x = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x.numpy()), "cuda", 0)
        self.binding = self.session.io_binding()
        self.binding.bind_ortvalue_input(name_in, self.x)
        self.binding.bind_output(name_out, "cuda", 0)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def output(self) -> np.ndarray:
        self()
        return self.binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        self.binding = self.session = self.x = None


class OnnxRuntimeCuda(Backend):
    name = "onnxruntime-cuda"
    description = "ONNX Runtime CUDA provider (fp32, TF32 off), IOBinding on the device, synchronized"

    def check_available(self) -> None:
        ort = import_onnxruntime()
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable("this onnxruntime has no CUDA provider (install onnxruntime-gpu on a machine "
                                     "with an NVIDIA GPU); providers here: "
                                     + ", ".join(ort.get_available_providers()))
        _require_cuda_torch_or_driver()

    def prepare(self, model: nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        self.check_available()
        return OrtCudaRunner(model, x, threads)


def _require_cuda_torch_or_driver() -> None:
    # onnxruntime-gpu lists its CUDA provider even on machines without a GPU; torch (when it is a CUDA build)
    # is the cheapest way to ask whether a device exists. With a CPU-only torch, session creation decides.
    if torch.version.cuda is not None and not torch.cuda.is_available():
        raise BackendUnavailable("onnxruntime has a CUDA provider but no CUDA GPU is visible")


register_backend(TorchCuda())
register_backend(OnnxRuntimeCuda())
