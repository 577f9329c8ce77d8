"""Strict, safe checkpoint I/O for the five modules and for training snapshots (spec c.5, fix j.12/j.14).

* module checkpoints: ``<dir>/<module>.pth`` holding a plain ``state_dict`` with the published key names;
* snapshots: one ``<network_type>.pkl`` with module and optimiser states, the epoch and trainer extras.

Every load uses ``torch.load(..., map_location=device, weights_only=True)`` (a checkpoint cannot execute code) and
every save is atomic (:func:`medseg.utils.io.atomic_torch_save`).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.utils.io import atomic_torch_save

PathLike = str | os.PathLike


def plain_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every tensor detached and in the default (contiguous) memory format."""
    return {key: value.detach().contiguous() for key, value in module.state_dict().items()}


def safe_load(path: PathLike, device: torch.device | str = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``.

    Raises:
        FileNotFoundError: naming the file, if it does not exist.
        ValueError: naming the file, if it is not a readable weights-only checkpoint (corrupt, truncated, or it
            contains arbitrary Python objects).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as err:
        raise ValueError(
            f"cannot load checkpoint {path}: it is not a valid weights-only torch checkpoint "
            f"(corrupt, truncated or containing code/objects that are refused for safety): {err}"
        ) from err


def load_state_strict(module: nn.Module, state: Any, source: str) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes.

    Raises:
        ValueError: naming ``source`` and listing missing, unexpected or mis-shaped keys.
    """
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a state_dict (mapping of name -> tensor), got {type(state).__name__}")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k}: expected {tuple(own[k].shape)}, found {tuple(state[k].shape)}"
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{source} does not match the {type(module).__name__} architecture: "
            f"missing keys {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}, "
            f"shape mismatches {wrong_shape[:10]}{'...' if len(wrong_shape) > 10 else ''}"
        )
    module.load_state_dict(state, strict=True)


def resolve_checkpoint_dir(checkpoint_dir: PathLike, names: tuple[str, ...]) -> Path:
    """Accept ``.../<epoch>/checkpoints`` or its parent ``.../<epoch>``; return the folder holding ``<name>.pth``.

    Raises:
        FileNotFoundError: naming the folder and the first missing file.
    """
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint_dir {directory} does not exist or is not a folder")
    for candidate in (directory, directory / "checkpoints"):
        if all((candidate / f"{name}.pth").is_file() for name in names):
            return candidate
    missing = next(name for name in names if not (directory / f"{name}.pth").is_file())
    raise FileNotFoundError(
        f"checkpoint file {directory / (missing + '.pth')} not found (expected one <module>.pth per module "
        f"{list(names)} in {directory} or {directory / 'checkpoints'})"
    )


def load_modules(modules: Mapping[str, nn.Module], checkpoint_dir: PathLike, device: torch.device) -> Path:
    """Strictly load ``<checkpoint_dir>/<name>.pth`` into every module; returns the folder used."""
    directory = resolve_checkpoint_dir(checkpoint_dir, tuple(modules))
    for name, module in modules.items():
        path = directory / f"{name}.pth"
        load_state_strict(module, safe_load(path, device), f"checkpoint {path}")
    return directory


def save_modules(modules: Mapping[str, nn.Module], directory: PathLike) -> Path:
    """Atomically write ``<directory>/<name>.pth`` (plain state_dict) for every module; returns ``directory``."""
    directory = Path(directory)
    for name, module in modules.items():
        atomic_torch_save(plain_state_dict(module), directory / f"{name}.pth")
    return directory


SNAPSHOT_KEYS = ("network_type", "epoch", "model_state", "optimizer_state")


def save_snapshot(
    path: PathLike,
    network_type: str,
    epoch: int,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``{'network_type', 'epoch', 'model_state', 'optimizer_state', 'extra'}`` to ``path``."""
    snapshot = {
        "network_type": network_type,
        "epoch": int(epoch),
        "model_state": {name: plain_state_dict(module) for name, module in modules.items()},
        "optimizer_state": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "extra": dict(extra) if extra else {},
    }
    atomic_torch_save(snapshot, path)
    return Path(path)


def load_snapshot(
    path: PathLike,
    network_type: str,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    device: torch.device,
) -> dict[str, Any]:
    """Strictly restore modules and optimisers from a snapshot written by :func:`save_snapshot`.

    Returns:
        ``{'epoch': int, 'extra': dict, 'network_type': str}``.

    Raises:
        FileNotFoundError, ValueError: naming the file, for a missing, unsafe or mismatched snapshot.
    """
    snapshot = safe_load(path, device)
    if not isinstance(snapshot, dict) or any(key not in snapshot for key in SNAPSHOT_KEYS):
        raise ValueError(f"snapshot {path} must be a dict with keys {list(SNAPSHOT_KEYS)}")
    if snapshot["network_type"] != network_type:
        raise ValueError(
            f"snapshot {path} was saved for network_type {snapshot['network_type']!r}, model is {network_type!r}"
        )
    for name, module in modules.items():
        if name not in snapshot["model_state"] or name not in snapshot["optimizer_state"]:
            raise ValueError(f"snapshot {path} has no state for module {name!r}")
        load_state_strict(module, snapshot["model_state"][name], f"snapshot {path} [{name}]")
    for name, optimizer in optimizers.items():
        try:
            optimizer.load_state_dict(snapshot["optimizer_state"][name])
        except (ValueError, KeyError, RuntimeError) as err:
            raise ValueError(f"snapshot {path}: optimizer state of {name!r} does not match: {err}") from err
    return {"epoch": int(snapshot["epoch"]), "extra": snapshot.get("extra", {}), "network_type": network_type}
