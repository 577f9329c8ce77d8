"""Strict, safe checkpoint I/O for the five modules (the published checkpoint format) and the safe reader of every
torch file medseg loads.

* module checkpoints: ``<dir>/<module>.pth`` holding a plain ``state_dict`` with the published key names, plus
  ``<dir>/manifest.json`` (format :data:`MANIFEST_FORMAT`) with each file's SHA-256 and size and the epoch;
* run snapshots (one ``<network_type>.pkl`` with module and optimiser states and the run's counters) are written and
  read by :mod:`medseg.training.snapshot`, with :func:`safe_load` and :func:`check_finite_state` from here.

Every load uses ``torch.load(..., map_location=device, weights_only=True)`` (a checkpoint cannot execute code) and
every save is atomic (:func:`medseg.io.atomic.atomic_torch_save`). Integrity:

* every torch file is read once; its zip members' CRC-32 are verified (``torch.load`` itself ignores them, so flipped
  bytes would load as wrong weights);
* a module folder is written as a set: first the manifest is replaced by one marked ``"complete": false``, then the
  module files, then the final manifest (atomically, last). On load each file must match the manifest's SHA-256 and
  size, and an incomplete manifest means the writer was killed mid-set (a *torn* set: modules of different epochs).
  Folders without a manifest (published checkpoints) still load, with a logged note;
* weights with NaN/Inf are never written and never loaded (a diverged run).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import os
import pickle
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.io.atomic import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "medseg-checkpoint-set/1"


class CheckpointIntegrityError(ValueError):
    """A checkpoint file or folder is corrupted, torn, unsafe or holds non-finite weights (message names it)."""


def plain_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every tensor detached and in the default (contiguous) memory format."""
    return {key: value.detach().contiguous() for key, value in module.state_dict().items()}


def _verify_archive(data: bytes, path: Path) -> None:
    """Check the CRC-32 of every member of a zip-format torch file (legacy non-zip files have no checksum)."""
    if not data.startswith(b"PK\x03\x04"):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as err:
        raise CheckpointIntegrityError(f"{path}: expected an intact torch checkpoint, got a damaged archive ({err}); "
                                       "restore the file or use another checkpoint") from err
    if bad is not None:
        raise CheckpointIntegrityError(f"{path}: expected an intact torch checkpoint, got corrupted data (member "
                                       f"{bad} fails its CRC-32 check); restore the file or use another checkpoint")


def _load_error(err: BaseException, path: Path) -> CheckpointIntegrityError:
    """A clear error for a failed ``torch.load``, without PyTorch's advice to retry with ``weights_only=False``."""
    text = str(err)
    refused = re.search(r"(Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+|Trying to [^.]*)", text)
    if "WeightsUnpickler" in text or "Weights only load failed" in text:
        detail = refused.group(1) if refused else "objects other than tensors and plain containers"
        return CheckpointIntegrityError(
            f"{path}: expected a weights-only checkpoint (tensors and plain containers), got a file that would import "
            f"or run code when loaded ({detail}); it is refused for safety: use checkpoints written by medseg")
    first = " ".join(text.split())[:200] or type(err).__name__
    return CheckpointIntegrityError(f"{path}: expected a torch checkpoint, got an unreadable file (corrupt, "
                                    f"truncated or another format: {first})")


def safe_load(path: PathLike, device: torch.device | str = "cpu", expected: Mapping[str, Any] | None = None) -> Any:
    """Read a checkpoint once, verify it and ``torch.load`` it with ``weights_only=True``.

    Args:
        path: the file.
        device: ``map_location``.
        expected: ``{'sha256': hex, 'size': int}`` checked before loading; None = the entry of the folder's
            manifest, if the file is listed there (:func:`manifest_entry`).

    Raises:
        FileNotFoundError: naming the file, if it does not exist.
        CheckpointIntegrityError (ValueError): naming the file, if it does not match ``expected``, fails its CRC, is
            not a readable torch file, or contains arbitrary Python objects (refused for safety).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if expected is None:
        expected = manifest_entry(path)
    data = path.read_bytes()
    if expected is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected.get("sha256") or len(data) != expected.get("size"):
            raise CheckpointIntegrityError(
                f"{path}: expected SHA-256 {str(expected.get('sha256'))[:16]}... and {expected.get('size')} bytes "
                f"(from {MANIFEST_NAME}), got {digest[:16]}... and {len(data)} bytes: the file is corrupted or "
                "belongs to another save (a torn set); use another checkpoint or re-run the training that wrote it")
    _verify_archive(data, path)
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, IndexError,
            TypeError, UnicodeDecodeError, zipfile.BadZipFile, struct.error) as err:
        raise _load_error(err, path) from err


def non_finite_entries(state: Mapping[str, Any]) -> list[str]:
    """Names of floating-point tensors of ``state`` holding NaN or Inf."""
    return [key for key, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite_state(state: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointIntegrityError` naming ``source`` and the tensors if any weight is NaN or Inf."""
    bad = non_finite_entries(state)
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise CheckpointIntegrityError(f"{source}: expected finite weights, got NaN/Inf in {len(bad)} of {len(state)} "
                                       f"tensors ({shown}): the model diverged; it cannot be used or saved")


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
    check_finite_state(state, source)
    module.load_state_dict(state, strict=True)


def resolve_checkpoint_dir(checkpoint_dir: PathLike, names: tuple[str, ...]) -> Path:
    """The one check of a module checkpoint folder, used by every tool that loads one (training's resume of a folder,
    medseg-test, medseg-predict, the figure script, the notebook): accept ``.../<epoch>/checkpoints`` or its parent
    ``.../<epoch>``; return the folder holding ``<name>.pth``. When the folder has a manifest, it must be complete and
    list every module file (with its SHA-256 and size, checked when each file is read): a manifest that lists nothing
    would let every file through unchecked. A folder without a manifest (published checkpoints) is accepted with a note.

    Raises:
        FileNotFoundError: naming the folder and the first missing file.
        CheckpointIntegrityError (ValueError): a torn set, or a manifest that does not list every module file.
    """
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint_dir {directory} does not exist or is not a folder")
    for candidate in (directory, directory / "checkpoints"):
        if all((candidate / f"{name}.pth").is_file() for name in names):
            manifest = read_manifest(candidate)
            if manifest is None:
                logger.info("%s has no %s (a published or older checkpoint): file hashes are not checked, only the "
                            "files' own CRC-32", candidate, MANIFEST_NAME)
                return candidate
            if not manifest.get("complete"):
                raise _torn(candidate, manifest)
            files = manifest.get("files")
            listed = sorted(files) if isinstance(files, Mapping) else []
            unlisted = [f"{name}.pth" for name in names
                        if not isinstance(files, Mapping) or not isinstance(files.get(f"{name}.pth"), Mapping)]
            if unlisted:
                raise CheckpointIntegrityError(
                    f"{candidate / MANIFEST_NAME}: expected an entry (SHA-256 and size) for every module file, got none "
                    f"for {', '.join(unlisted)} (listed: {listed}); the files cannot be verified: use another "
                    "checkpoint or re-run the training that wrote it")
            return candidate
    missing = next(name for name in names if not (directory / f"{name}.pth").is_file())
    raise FileNotFoundError(
        f"checkpoint file {directory / (missing + '.pth')} not found (expected one <module>.pth per module "
        f"{list(names)} in {directory} or {directory / 'checkpoints'})"
    )


def read_manifest(directory: PathLike) -> dict[str, Any] | None:
    """The manifest of a module folder (None if there is none).

    Raises:
        CheckpointIntegrityError: naming the file if it is unreadable or of another format.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointIntegrityError(
            f"{path}: expected a JSON checkpoint manifest, got unreadable text ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointIntegrityError(f"{path}: expected a manifest of format {MANIFEST_FORMAT!r}, got {found!r}")
    return manifest


def _torn(directory: Path, manifest: Mapping[str, Any]) -> CheckpointIntegrityError:
    return CheckpointIntegrityError(
        f"{directory}: expected a complete checkpoint set, got a torn one: writing it (epoch "
        f"{manifest.get('epoch', '?')}) was interrupted, so its module files may come from different epochs; "
        "resume the training to rewrite it, or use another checkpoint")


def manifest_entry(path: PathLike) -> Mapping[str, Any] | None:
    """The manifest entry of a checkpoint file (None if its folder has no manifest).

    Raises:
        CheckpointIntegrityError: if the folder's manifest marks the set as incomplete (torn) or does not list the
            file (an empty file list would otherwise let every file through unchecked).
    """
    path = Path(path)
    manifest = read_manifest(path.parent)
    if manifest is None:
        return None
    if not manifest.get("complete"):
        raise _torn(path.parent, manifest)
    files = manifest.get("files")
    entry = files.get(path.name) if isinstance(files, Mapping) else None
    if not isinstance(entry, Mapping):
        if path.suffix != ".pth":  # a snapshot beside a module set is not one of its files
            return None
        listed = sorted(files) if isinstance(files, Mapping) else []
        raise CheckpointIntegrityError(f"{path.parent / MANIFEST_NAME}: expected an entry for {path.name}, got none "
                                       f"(listed: {listed}); the file cannot be verified")
    return entry


def load_modules(modules: Mapping[str, nn.Module], checkpoint_dir: PathLike, device: torch.device) -> Path:
    """Strictly load ``<checkpoint_dir>/<name>.pth`` into every module, verified against the folder's manifest.

    Returns:
        The folder used.

    Raises:
        FileNotFoundError: a module file is missing.
        CheckpointIntegrityError (ValueError): a torn set, a file that does not match the manifest or its CRC,
            an unsafe file or non-finite weights (naming the file).
    """
    directory = resolve_checkpoint_dir(checkpoint_dir, tuple(modules))  # torn sets, unlisted files
    for name, module in modules.items():
        path = directory / f"{name}.pth"
        load_state_strict(module, safe_load(path, device), f"checkpoint {path}")  # hash-checked against the manifest
    return directory


def _serialise(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def save_modules(modules: Mapping[str, nn.Module], directory: PathLike,
                 info: Mapping[str, Any] | None = None) -> Path:
    """Write ``<directory>/<name>.pth`` (plain state_dict) for every module as one verifiable set.

    Order: incomplete manifest, module files (each atomic), complete manifest with SHA-256 and sizes (atomic, last).

    Args:
        modules: name → module.
        directory: the checkpoint folder.
        info: extra manifest entries (e.g. ``{'epoch': 12, 'mean_iou': 0.8}``).

    Returns:
        ``directory``.

    Raises:
        CheckpointIntegrityError: if a module holds NaN/Inf (nothing is written then).
    """
    directory = Path(directory)
    states = {name: plain_state_dict(module) for name, module in modules.items()}
    for name, state in states.items():
        check_finite_state(state, f"refusing to write {directory / (name + '.pth')}")
    header = {"format": MANIFEST_FORMAT, **dict(info or {})}
    atomic_write_text(directory / MANIFEST_NAME, json.dumps({**header, "complete": False}, indent=2) + "\n")
    files = {}
    for name, state in states.items():
        data = _serialise(state)
        _write_bytes(directory / f"{name}.pth", data)
        files[f"{name}.pth"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = {**header, "complete": True,
                "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "files": files}
    atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return directory
