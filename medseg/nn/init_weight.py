"""Weight initialisation of the published model.

Two steps, in this order: :func:`normal_init_direct_children` (run by each network constructor) and
:func:`init_weights` with ``'kaiming'`` (run recursively when no checkpoint is loaded).
"""

from __future__ import annotations

from torch import Generator, nn


def normal_init_direct_children(module: nn.Module, std: float = 0.02, generator: Generator | None = None) -> None:
    """Draw N(0, std) weights and zero biases for the *direct* Conv2d/ConvTranspose2d children of ``module``.

    Only direct children are touched (as in the original): in the FCN_16 networks this is each decoder's
    ``final_conv``, whose bias therefore starts at 0.
    """
    for child in module.children():
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(child.weight, mean=0.0, std=std, generator=generator)
            if child.bias is not None:
                nn.init.zeros_(child.bias)


def _init_kaiming(module: nn.Module, generator: Generator | None = None) -> None:
    # ConvTranspose2d is not a Conv2d subclass, so transposed convs keep PyTorch's default init (as published).
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        # Biases are deliberately left alone (PyTorch default U(+-1/sqrt(fan_in)), or 0 from step 1).
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in", generator=generator)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, mean=1.0, std=0.02, generator=generator)
        nn.init.zeros_(module.bias)


def init_weights(module: nn.Module, init_type: str = "kaiming", generator: Generator | None = None) -> None:
    """Initialise ``module`` recursively.

    Args:
        module: network to initialise in place.
        init_type: only ``'kaiming'`` is used by the method: Conv2d/Linear weights ~ kaiming_normal(a=0, fan_in),
            biases untouched; BatchNorm2d weight ~ N(1, 0.02), bias 0.
        generator: optional RNG for reproducible draws.

    Raises:
        NotImplementedError: for another ``init_type``.
    """
    if init_type != "kaiming":
        raise NotImplementedError(f"init_type {init_type!r} is not implemented; only 'kaiming' is used by the method")
    for sub in module.modules():
        _init_kaiming(sub, generator)
