"""Numerical precision of training and inference: ``fp32`` (default), ``bf16`` or ``fp16`` mixed precision.

Lower precision is *mixed* precision: parameters, optimiser states, BatchNorm running statistics, losses and the
latent-masking gradient scores stay in fp32; convolutions (and the element-wise layers between them) run in the
lower type under :func:`torch.autocast`. The networks enter autocast themselves (see
:func:`medseg.nn.blocks.set_compute_precision`) and return fp32 outputs, so every loss, softmax and mask is
computed in fp32.

* ``bf16``: CUDA, or a CPU with native bf16 instructions (AVX512-BF16 or AMX); bf16 has the fp32 exponent range, so
  no loss scaling is needed.
* ``bf16_emulated``: the same bf16 mixed precision on a CPU *without* native bf16, for measuring what bf16 does to
  accuracy there. Every bf16 convolution (forward and backward) is computed as the fp32 convolution of its bf16
  operands and rounded to bf16 (:func:`emulated_bf16`): what a native bf16 convolution computes (exact bf16
  products, fp32 sums, a bf16 result), up to the order of the fp32 sums; matrix products likewise. Everything else
  runs the same bf16 kernels as ``bf16``. Without it, PyTorch's own bf16 convolutions on such a CPU take about 12x as
  long as fp32 (measured on an AVX2 CPU, batch 20 x 96^2: 25.8 s against 2.17 s per standard iteration) and their
  backward passes are not correctly rounded; emulated, 1.07x (standard) to 1.16x (cooperative) fp32's time.
  The run's config records ``bf16_emulated``, so its results are never mistaken for a native bf16 run's speed.
* ``fp16``: CUDA only, with a :class:`torch.amp.GradScaler` (fp16 gradients would underflow without it).
* ``bf16_where_native`` (training): ``bf16`` where the device computes bf16 natively, ``fp32`` elsewhere, resolved
  when the run starts (:func:`resolve_precision`); the run's ``config.json`` records the resolved precision.
* ``tf32``: CUDA only: fp32 storage and arithmetic, but convolutions and matrix products on the tensor cores of
  Ampere-or-newer GPUs with 10-bit mantissa inputs (TensorFloat-32). PyTorch allows TF32 in cuDNN convolutions by
  default; medseg turns it off (:func:`configure_tf32`) unless ``tf32`` is asked for, so a GPU "fp32" run computes
  what the CPU computes. TF32 rounds the inputs of every convolution to 11 significant bits (relative error up to
  2**-11: fp16's precision, 8x finer than bf16's 2**-8, about 8,000x coarser than fp32's 2**-24; accumulation stays
  fp32). That rounding also reaches the latent-masking gradient probes, which the mixed precisions keep in fp32 and
  ``tf32`` cannot: entries whose scores lie within that error of the masking threshold can change sides. bf16
  probes changed 5-13 % of the masked entries (measured); TF32's are expected to change fewer, and its effect on the
  predicted masks' Dice is expected to stay within seed-to-seed noise; neither is measured (no GPU was available).

Backward passes run outside the autocast region (:func:`backward_outside_autocast`), as PyTorch recommends: each
backward op runs in the type its forward op ran in anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from medseg.utils.device import resolve_device

PRECISIONS = ("fp32", "tf32", "bf16", "bf16_emulated", "fp16")
#: a training precision that names no precision but a rule, resolved per device (:func:`resolve_precision`)
WHERE_NATIVE = "bf16_where_native"
#: what ``learning.precision`` and ``medseg-train --precision`` accept
TRAINING_PRECISIONS = (*PRECISIONS, WHERE_NATIVE)
#: the precisions of testing and prediction (the training-only settings compute as one of these)
INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_COMPUTE = {"tf32": "fp32", "bf16_emulated": "bf16"}


def compute_precision(precision: str) -> str:
    """The networks' compute precision of a training precision: ``tf32`` computes in fp32 (with TF32 allowed),
    ``bf16_emulated`` in bf16 (with its products emulated, see :func:`emulated_bf16`)."""
    return _COMPUTE.get(precision, precision)


def configure_tf32(enabled: bool) -> None:
    """Allow or forbid TF32 in CUDA matrix products and cuDNN convolutions (process-wide; harmless without CUDA)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def backward_outside_autocast(loss: torch.Tensor) -> None:
    """``loss.backward()`` with autocast disabled meanwhile (the cast-weight cache of an enclosing region is kept,
    as a nested region does not clear it)."""
    kind = loss.device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        with torch.autocast(device_type=kind, enabled=False):
            loss.backward()
    else:
        loss.backward()


def precision_dtype(precision: str) -> torch.dtype:
    """``'fp32' | 'tf32' | 'bf16' | 'bf16_emulated' | 'fp16'`` -> the compute dtype (``tf32``: float32,
    ``bf16_emulated``: bfloat16).

    Raises:
        ValueError: for another name.
    """
    precision = compute_precision(precision)
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return _DTYPES[precision]


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), which oneDNN uses for bf16 convolutions.

    Without it bf16 is emulated and slower than fp32, so ``bf16`` is refused on such CPUs.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def precision_problem(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` cannot run on ``device`` (None if it can)."""
    precision_dtype(precision)
    if precision == "tf32" and device.type != "cuda":
        return "tf32 is a setting of CUDA GPUs (Ampere or newer); use fp32 on the CPU"
    if precision == "fp16" and device.type != "cuda":
        return "fp16 needs a CUDA device (use bf16 on the CPU)"
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        return ("this CPU has no native bf16 support (AVX512-BF16 or AMX); use fp32 (in training, bf16_emulated "
                "measures bf16's accuracy at about fp32 speed)")
    if precision == "bf16_emulated" and device.type != "cpu":
        return f"bf16_emulated is for CPUs without native bf16; use bf16 on {device.type}"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"CUDA device {device} does not support bf16; use fp16 or fp32"
    if device.type not in ("cpu", "cuda") and precision not in ("fp32", "tf32"):
        return f"mixed precision is only supported on CPU and CUDA, not {device.type}"
    return None


def resolve_precision(precision: str, device: torch.device) -> str:
    """``bf16_where_native`` becomes ``bf16`` where ``device`` computes bf16 natively (a CUDA device with bf16, a CPU
    with AVX512-BF16 or AMX) and ``fp32`` elsewhere; any other precision is returned as it is."""
    if precision != WHERE_NATIVE:
        return precision
    return "bf16" if precision_problem("bf16", device) is None else "fp32"


def check_precision(precision: str, device: torch.device, key: str = "precision") -> str:
    """Validate ``precision`` for ``device`` and return it.

    Args:
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        device: where the model runs.
        key: name of the option in error messages (``'--precision'`` or ``"config key 'learning.precision'"``).

    Raises:
        ValueError: naming ``key``, for an unknown name or a precision this device cannot run.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"{key}: expected one of {list(PRECISIONS)}, got {precision!r}")
    problem = precision_problem(precision, device)
    if problem is not None:
        raise ValueError(f"{key}: {precision!r} cannot run on {device}: {problem}")
    return precision


def option_error(precision: str, device_name: str, key: str = "--precision") -> str | None:
    """Command-line check: why ``precision`` cannot run on the device named ``device_name`` (None if it can).

    An unusable device name is not reported here: resolving the device later gives that error.
    """
    try:
        device = resolve_device(device_name)
    except (RuntimeError, ValueError):
        return None
    try:
        check_precision(precision, device, key=key)
    except ValueError as err:
        return str(err)
    return None


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Autocast to ``precision`` on ``device``; fp32 leaves autocast as the caller set it.

    Nested regions share one cache of the low-precision weight copies, which lives until the outermost region exits:
    wrap a whole training iteration (but not the optimiser step) to cast each weight once per iteration.
    """
    dtype = precision_dtype(precision)
    if dtype is torch.float32:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


class _Bf16ProductsInFp32(TorchDispatchMode):
    """Computes each convolution or matrix product whose tensors are all bf16 (the operations autocast runs in bf16)
    as the fp32 operation on those values, rounded to bf16 (forward and backward: the backward passes are
    ``convolution_backward`` and matrix products); every other operation runs as it is."""

    _PRODUCTS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default,
                 torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
                 torch.ops.aten.baddbmm.default)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._PRODUCTS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if tensors and all(t.dtype == torch.bfloat16 for t in tensors):
                out = func(*(a.float() if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
                if isinstance(out, torch.Tensor):
                    return out.to(torch.bfloat16)
                return tuple(None if o is None else o.to(torch.bfloat16) for o in out)
        return func(*args, **kwargs)


@contextlib.contextmanager
def emulated_bf16(precision: str) -> Iterator[None]:
    """For ``bf16_emulated``: meanwhile (in this thread), each bf16 convolution and matrix product (forward and
    backward) is computed in fp32 from the bf16 operands and rounded to bf16, as a native bf16 kernel computes it up
    to the order of its fp32 sums. Any other precision: nothing changes.

    The bf16 products are exact in fp32 (8-bit significands), so the emulation differs from a native bf16 kernel only
    in the order of the fp32 sums. Wrap the whole of training (forward, backward and validation).
    """
    if precision != "bf16_emulated":
        yield
        return
    with _Bf16ProductsInFp32():
        yield


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 training (None for fp32 and bf16, which need none)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


__all__ = [
    "INFERENCE_PRECISIONS",
    "PRECISIONS",
    "TRAINING_PRECISIONS",
    "WHERE_NATIVE",
    "autocast",
    "backward_outside_autocast",
    "compute_precision",
    "configure_tf32",
    "check_precision",
    "cpu_supports_bf16",
    "emulated_bf16",
    "make_grad_scaler",
    "option_error",
    "precision_dtype",
    "precision_problem",
    "resolve_precision",
]
