"""TorchIO MR artefacts of ACDC-C with every parameter pinned.

The original relied on TorchIO 0.x defaults. Here every argument is written out so that a TorchIO upgrade cannot
silently change the test set:

* ``RandomMotion(degrees=30, translation=10, num_transforms=2, image_interpolation='linear')``;
* ``RandomSpike(num_spikes=(1, 1), intensity=(1, 3))``: the 0.x default ``num_spikes=1`` meant one spike, but some
  versions (and TorchIO 1.2.1) parse a bare ``1`` as the range (0, 1), which can draw 0 spikes (an unchanged image);
  ``(1, 1)`` states the intent;
* ``RandomGhosting(num_ghosts=(4, 10), axes=(0, 1, 2), intensity=(0.5, 1), restore=(0.02, 0.02))``: 0.x used a
  fixed ``restore=0.02``; TorchIO 1.x parses a bare 0.02 as the range (0, 0.02) and samples it, so the fixed value is
  written as a degenerate range. One axis is drawn, which can be the slice axis, as in the original;
* ``RandomBiasField(coefficients=0.5, order=3)``.

All randomness of these transforms comes from torch's global generator; :func:`corrupt_slice_stack` seeds it inside
``torch.random.fork_rng`` so the caller's RNG state is untouched and each case is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchio as tio

from medseg.data.intensity import RESCALE_EPS, rescale_slices  # noqa: F401 (re-exported)



def _motion() -> tio.Transform:
    return tio.RandomMotion(degrees=30, translation=10, num_transforms=2, image_interpolation="linear", p=1)


def _spike() -> tio.Transform:
    return tio.RandomSpike(num_spikes=(1, 1), intensity=(1, 3), p=1)


def _ghosting() -> tio.Transform:
    return tio.RandomGhosting(num_ghosts=(4, 10), axes=(0, 1, 2), intensity=(0.5, 1), restore=(0.02, 0.02), p=1)


def _bias() -> tio.Transform:
    return tio.RandomBiasField(coefficients=0.5, order=3, p=1)


# Output folder name → transform factory (folder names as read by the test script).
ARTEFACTS: dict[str, Callable[[], tio.Transform]] = {
    "RandomBias": _bias,
    "RandomSpike": _spike,
    "RandomGhosting": _ghosting,
    "RandomMotion": _motion,
}


def build_corruption(name: str) -> tio.Transform:
    """The pinned TorchIO transform of artefact ``name`` (one of :data:`ARTEFACTS`)."""
    if name not in ARTEFACTS:
        raise ValueError(f"unknown artefact {name!r}; valid names: {list(ARTEFACTS)}")
    return ARTEFACTS[name]()


def corrupt_slice_stack(stack: np.ndarray, transform: tio.Transform) -> np.ndarray:
    """Apply ``transform`` to a slice stack treated as one 3D volume (slice axis first, unit spacing).

    Args:
        stack: ``(Z, H, W)`` float, per-slice normalised to [0, 1].
        transform: a TorchIO intensity transform (draws from torch's global RNG; seed it beforehand).

    Returns:
        ``(Z, H, W)`` float32, per-slice min–max rescaled to [0, 1] again.
    """
    if stack.ndim != 3:
        raise ValueError(f"expected a (Z, H, W) slice stack, got shape {stack.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[None]  # (1, Z, H, W)
    image = tio.ScalarImage(tensor=tensor, affine=np.eye(4))
    out = transform(image).data[0].numpy()  # (Z, H, W)
    return rescale_slices(out.astype(np.float32))
