"""float32 Linear layers on CPU through oneDNN instead of MKL's sgemm, for inference.

PyTorch sends a float32 ``F.linear`` on CPU to MKL and a bfloat16 one to oneDNN. Measured on an AMD EPYC
(Zen 4, 2 cores), oneDNN's float32 kernels ran the RDT-170M shapes 1.3-1.5x faster than MKL's (67 x 1024 x
1024: 0.80 vs 1.09-1.27 ms; 2187 x 1024 x 2048: 45 vs 58-64 ms), with the same float32 arithmetic
(differences are summation-order rounding). :class:`OneDnnLinear` is a torch function mode that, while it is
active and autograd is off, routes every float32 CPU ``F.linear`` (so every ``nn.Linear``: the denoiser, the
adaptors, the SigLIP tower) to ``torch.ops.mkldnn._linear_pointwise``, the op PyTorch's own compiler uses for
the same purpose. Everything else passes through untouched. :func:`onednn_linear_status` says whether it can
be used in this PyTorch, and if not, why.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["OneDnnLinear", "onednn_linear_status", "onednn_linear_applies"]


def _op():
    return torch.ops.mkldnn._linear_pointwise


@functools.lru_cache(maxsize=1)
def onednn_linear_status() -> tuple[bool, str]:
    """(usable, in words): the op exists in this build and agrees with ``F.linear`` on a probe."""
    if not torch.backends.mkldnn.is_available():
        return False, "PyTorch's default float32 matmul (this build has no oneDNN)"
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=gen) for shape in ((2, 5, 48), (40, 48), (40,)))
        with torch.inference_mode():
            got, want = _op()(x, w, b, "none", [], ""), F.linear(x, w, b)
    except (RuntimeError, AttributeError) as err:
        return False, f"PyTorch's default float32 matmul (oneDNN's linear op failed here: {err})"
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-5, atol=1e-5):
        return False, "PyTorch's default float32 matmul (oneDNN's linear op disagreed with F.linear on a probe)"
    return True, "oneDNN for float32 Linear layers (torch.ops.mkldnn._linear_pointwise)"


def onednn_linear_applies(device, dtype: torch.dtype) -> bool:
    """Whether :class:`OneDnnLinear` would change anything for a model on ``device`` in ``dtype``."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and onednn_linear_status()[0]


class OneDnnLinear(TorchFunctionMode):
    """``with OneDnnLinear(): ...`` runs float32 CPU Linear layers through oneDNN (inference only)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and not torch.is_grad_enabled():
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if (x.dtype == torch.float32 and weight.dtype == torch.float32 and x.device.type == "cpu"
                    and weight.device.type == "cpu" and x.dim() >= 2 and weight.dim() == 2
                    and (bias is None or bias.dtype == torch.float32)):
                return _op()(x, weight, bias, "none", [], "")
        return func(*args, **kwargs)
