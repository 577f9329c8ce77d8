"""Inference copies of the networks with BatchNorm folded into the preceding convolution (eval mode only).

In eval mode BatchNorm is the affine map ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, so a
``Conv2d -> BatchNorm2d`` pair equals one ``Conv2d`` with rescaled weights and a shifted bias (up to floating-point
rounding). :func:`fold_batchnorm` returns such a copy; :class:`FoldedModules` caches the copies of a model's modules
and rebuilds them whenever a parameter or buffer of the originals changes (optimiser step, checkpoint load, running
statistics update, ``.to()``), detected through the tensors' version counters and storage addresses, or when the
networks' ``compute_precision`` changes (the copies keep it, so a bf16 model predicts in bf16).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm)  # the same affine map in eval mode
        and bn.running_mean is not None  # eval-mode BN uses running statistics only when it has them
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
    )


def fold_batchnorm(module: nn.Module, memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """Eval-mode, gradient-free copy of ``module`` in which every ``Conv2d`` directly followed by a ``BatchNorm2d``
    inside an ``nn.Sequential`` is replaced by the equivalent single convolution (the BN slot becomes ``Identity``,
    so module structure and forward code are unchanged). The original is not modified.
    """
    folded = copy.deepcopy(module).eval().requires_grad_(False)
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = seq._modules[conv_name], seq._modules[bn_name]
            if _foldable(conv, bn):
                seq._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                seq._modules[bn_name] = nn.Identity()
    return folded.to(memory_format=memory_format)


def _state_key(modules: Mapping[str, nn.Module], names: Sequence[str]) -> tuple:
    """Identity of the modules, their compute precision and every parameter/buffer value (storage address +
    in-place version counter)."""
    key: list = []
    for name in names:
        module = modules[name]
        key.append(id(module))
        key.extend(getattr(sub, "compute_precision", None) for sub in module.modules())
        key.extend((t.data_ptr(), t._version) for t in itertools.chain(module.parameters(), module.buffers()))
    return tuple(key)


class FoldedModules:
    """Cache of BN-folded eval copies of some modules of a ``{name: module}`` dict.

    :meth:`get` returns ``{name: folded copy}`` and rebuilds them only when the originals changed;
    :meth:`clear` drops the copies.
    """

    def __init__(self, names: Sequence[str], memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.names = tuple(names)
        self.memory_format = memory_format
        self._key: tuple | None = None
        self._folded: dict[str, nn.Module] = {}

    def get(self, modules: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
        key = _state_key(modules, self.names)
        if key != self._key:
            self._folded = {name: fold_batchnorm(modules[name], self.memory_format) for name in self.names}
            self._key = key
        return self._folded

    def clear(self) -> None:
        self._key = None
        self._folded = {}


__all__ = ["FoldedModules", "fold_batchnorm"]
