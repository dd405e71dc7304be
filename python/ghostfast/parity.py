"""Checks that a backend computes what PyTorch computes, before its latency is worth reporting.

A check compares logits relative to their magnitude: default-initialised zoo models can produce logits near
1e-14 (BN with mean 0 / var 1 lets activations shrink layer by layer), where any absolute tolerance passes.
:func:`randomize_batchnorm` gives every BN layer random statistics and affine parameters first, so the logits
are O(0.01-10) and folding BN into the weights is exercised with non-trivial values.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

# fp32 runtimes that reorder sums land around 1e-6 of max |logit|; tf32 / bf16 / fp16 paths land at 1e-3 and
# above. The default tolerance sits between, so a silently reduced-precision backend fails the check.
DEFAULT_TOLERANCE = 1e-4


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm layer of ``model`` random running statistics and affine parameters (in place).

    The draws are deterministic for a given ``seed`` and layer order. Returns ``model`` in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


def check_output(output, reference, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """How far ``output`` is from ``reference`` (both (N, classes)): a dict for the records.

    ``check_max_rel_err``: max |output - reference| / max |reference|; ``check_top1_agree``: the fraction of
    rows whose arg-max class matches; ``check_ok``: the error is within ``tolerance``. Top-1 agreement is
    reported but does not decide: with random weights two logits can tie to within fp32 rounding, and a flip
    there says nothing about the backend that the error bound has not already said.
    """
    out = np.asarray(output, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if out.shape != ref.shape:
        return {"check_max_rel_err": None, "check_top1_agree": 0.0, "check_ok": False,
                "check_note": f"output shape {out.shape} != torch's {ref.shape}"}
    if not np.isfinite(out).all():
        return {"check_max_rel_err": None, "check_top1_agree": 0.0, "check_ok": False,
                "check_note": "output has NaN or Inf"}
    scale = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max()) / scale if scale > 0 else float(np.abs(out).max())
    agree = float((out.reshape(len(out), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1)).mean())
    return {"check_max_rel_err": err, "check_top1_agree": agree, "check_ok": err <= tolerance}
