"""The five networks of the method as one module, and the BatchNorm switch of the cooperative passes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextlib.contextmanager
def disable_tracking_bn_stats(model: nn.Module) -> Iterator[None]:
    """Run the BatchNorm layers of module ``model`` without running-stat tracking, with frozen affine params.

    On entry every BatchNorm gets ``track_running_stats=False`` and ``weight/bias.requires_grad=False``; on exit both
    flags are restored **separately** to their own previous values (the published code restored gamma/beta from the
    tracking flag, unfreezing parameters frozen beforehand). In train mode the layers then use batch statistics,
    do not update ``running_mean/var``/``num_batches_tracked`` and their gamma/beta are constants.
    """
    saved: list[tuple[_BatchNorm, bool, bool | None, bool | None]] = []
    for sub in model.modules():
        if isinstance(sub, _BatchNorm):
            w_flag = sub.weight.requires_grad if sub.weight is not None else None
            b_flag = sub.bias.requires_grad if sub.bias is not None else None
            saved.append((sub, sub.track_running_stats, w_flag, b_flag))
            sub.track_running_stats = False
            if sub.weight is not None:
                sub.weight.requires_grad_(False)
            if sub.bias is not None:
                sub.bias.requires_grad_(False)
    try:
        yield
    finally:
        for sub, tracking, w_flag, b_flag in saved:
            sub.track_running_stats = tracking
            if w_flag is not None:
                sub.weight.requires_grad_(w_flag)
            if b_flag is not None:
                sub.bias.requires_grad_(b_flag)




__all__ = ["disable_tracking_bn_stats"]
