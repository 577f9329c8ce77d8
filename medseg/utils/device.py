"""Device resolution and seeding, called by entry points only (library code follows its inputs' device)."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


class DeviceUnavailable(ValueError, RuntimeError):
    """The requested device does not exist on this machine: a user error (a ``ValueError``, exit code 2 in the
    command-line tools), still a ``RuntimeError`` for callers that caught the earlier type."""


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``'auto' | 'cpu' | 'cuda' | 'cuda:N'`` into a :class:`torch.device`.

    Raises:
        DeviceUnavailable: (a ``ValueError`` and a ``RuntimeError``) if CUDA is requested explicitly but is not
            available.
        ValueError: for an unknown device name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available on this machine")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                                    "CUDA device(s) (cuda:0 ...)")
        return device
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def seed_everything(seed: int | None, deterministic: bool = False) -> None:
    """Seed Python ``random``, NumPy and torch (all devices).

    Args:
        seed: the seed; ``None`` leaves the generators alone and enables cuDNN autotuning (as the original did).
        deterministic: also ask torch for deterministic algorithms (slower; some ops then raise).
    """
    if seed is None:
        torch.backends.cudnn.benchmark = True
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
