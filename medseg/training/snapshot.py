"""Run snapshots: everything needed to continue a training run exactly where it stopped; the one snapshot format.

A snapshot is one ``torch.save``d dict (loadable with ``weights_only=True``) in the published snapshot format
(``network_type``, ``epoch``, ``model_state`` and ``optimizer_state`` per module, so the published code reads it
too) extended with ``format`` (:data:`SNAPSHOT_FORMAT`), the
global iteration, the position inside an interrupted epoch, the best validation score, the running epoch sums,
the seeds, the RNG states (Python, NumPy, torch CPU/CUDA and every named ``torch.Generator``) of every rank, and a
fingerprint of the training-relevant configuration. ``epoch`` is the epoch at which training continues; with
``batches_done > 0`` the first ``batches_done`` batches of that epoch were already trained on. It also records the
device type and the precision the run trained in, the device of every named generator, and the fp16 gradient
scaler's state (so an fp16 run continues with the loss scale it had reached, not 2**16 again), and ``extra``, a
caller's own weights-only-loadable values.

One writer, :func:`save_snapshot`, serves ``medseg-train`` (every counter, the RNG states, the config fingerprint)
and the published model API's ``save_snapshots`` (which knows only the epoch: the other counters, the RNG states
and the fingerprint are left out, and a reader takes their defaults). One reader, :func:`load_snapshot` with
:func:`restore_training_state`, serves both and also reads the snapshots the published code wrote (the four published
keys only): a missing counter is 0 (the best score -10000), missing RNG states restart the streams, and a missing
fingerprint is not checked. The per-module checkpoint folders (``best/``, ``<epoch>/`` with ``<module>.pth``) are
another thing, the published checkpoint format: :mod:`medseg.io.checkpoint`.

Snapshots are device-independent: :func:`load_snapshot` always reads to the CPU (RNG states must be CPU tensors, and
Adam's ``step`` counters must stay CPU tensors: on a GPU every optimiser step would otherwise read them back to the
host twice per parameter), and :func:`restore_training_state` moves the weights and optimiser moments onto the
modules' devices. A snapshot written on the CPU continues on CUDA and the reverse; only the step RNG streams are
re-seeded then (a CUDA generator's state is not a CPU generator's).

Snapshots are written atomically (a kill never leaves a truncated file) to
``model_dir/last/checkpoints/{network_type}.pkl`` at the end of every epoch and when a run is interrupted.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.config import ExperimentConfig
from medseg.io.checkpoint import check_finite_state, plain_state_dict, safe_load
from medseg.io.atomic import atomic_torch_save

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "medseg-run-snapshot/1"
SNAPSHOT_FOLDER = "last"

# Keys that may change between a run and its resumption: the budget, the data location, unused keys and the
# non-finite policy (a run stopped by a non-finite step may be continued with "skip").
RESUMABLE_KEYS = frozenset({
    "name", "data.root_dir", "data.use_cache", "data.image_size", "data.label_size",
    "learning.n_epochs", "learning.max_iteration", "learning.use_gpu", "output.save_epoch_every_num_epochs",
    "learning.on_non_finite",
    "learning.precision",  # numerics, not the model: a run may continue in another precision
    "learning.sync_batchnorm",  # how the BatchNorm statistics of a multi-GPU batch are pooled
})
SCHEDULE_KEYS = frozenset({"learning.n_epochs", "learning.max_iteration"})  # fixed on resume under an lr schedule

# Run properties that may change on resume (the number of processes only changes how the slices are split; the
# device type only re-seeds the step RNG streams).
RESUMABLE_RUN_KEYS = frozenset({"world_size", "device"})


@dataclass
class TrainState:
    """Counters of a training run (mutable: the loop updates it after every iteration)."""

    epoch: int = 0
    batches_done: int = 0
    global_iteration: int = 0
    best_score: float = -10000.0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    data_seed: int = 0
    #: wall seconds already spent in epoch ``epoch`` before an interruption (0 between epochs): a resumed epoch's
    #: ``epoch_seconds`` in metrics.csv counts the whole epoch
    epoch_seconds: float = 0.0


def snapshot_path(model_dir: str | Path, network_type: str) -> Path:
    """Where the run's rolling snapshot lives."""
    return Path(model_dir) / SNAPSHOT_FOLDER / "checkpoints" / f"{network_type}.pkl"


def snapshot_best_dir(path: str | Path) -> Path | None:
    """The best checkpoints of the run that wrote the snapshot ``path`` (``<model>/last/checkpoints/x.pkl`` ->
    ``<model>/best/checkpoints``); None if ``path`` is not laid out like that."""
    path = Path(path)
    if len(path.parents) < 3 or path.parent.name != "checkpoints" or path.parents[1].name != SNAPSHOT_FOLDER:
        return None
    return path.parents[2] / "best" / "checkpoints"


def config_fingerprint(config: ExperimentConfig) -> dict[str, Any]:
    """Flat ``{dotted key: value}`` of the config entries that must not change on resume.

    With a non-constant ``learning.lr_schedule`` the run length (``n_epochs``, ``max_iteration``) sets the learning
    rate of every iteration, so it must not change either.
    """
    flat: dict[str, Any] = {}
    resumable = RESUMABLE_KEYS if config.learning.lr_schedule == "constant" else RESUMABLE_KEYS - SCHEDULE_KEYS

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        elif prefix not in resumable:
            flat[prefix] = node

    walk(config.to_dict(), "")
    return flat


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None,
                      cuda_device: torch.device | None = None) -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (CPU, and the CUDA device ``cuda_device`` if given) and ``generators``, as
    weights_only-safe types.

    Only this process's own GPU is saved (``cuda``: a list of one state, ``cuda_device``: its index): each rank of a
    multi-GPU run uses one GPU, and a resume may see fewer GPUs than were visible when the snapshot was written.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(cuda_device)] if _is_cuda(cuda_device) else [],
        "cuda_device": cuda_device.index if _is_cuda(cuda_device) else None,  # type: ignore[union-attr]
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
        "generator_devices": {name: gen.device.type for name, gen in (generators or {}).items()},
    }


def _is_cuda(device: torch.device | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def generators_fit(state: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> list[str]:
    """Names of ``generators`` whose saved state in ``state`` cannot be restored into them: saved on another device
    type, or of another size (a CUDA generator's state is 16 bytes, a CPU one's 5,056), or not saved at all."""
    saved, devices = state.get("generators", {}), state.get("generator_devices", {})
    unfit = []
    for name, gen in generators.items():
        value = saved.get(name)
        if (not isinstance(value, torch.Tensor) or devices.get(name, gen.device.type) != gen.device.type
                or value.numel() != gen.get_state().numel()):
            unfit.append(name)
    return unfit


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None,
                      cuda_device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`; ``state`` must hold CPU tensors (as :func:`load_snapshot` reads them).

    The CUDA state is restored into ``cuda_device`` only (None: not at all). Snapshots of earlier versions hold
    the states of every visible GPU; this process's own one (index ``cuda_device.index``) is taken if it is there.
    Generators that :func:`generators_fit` reports are left alone (the caller re-seeds them).
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = list(state["cuda"] or [])
    if cuda and _is_cuda(cuda_device):
        index = torch.device(cuda_device).index or 0  # type: ignore[arg-type]
        own = cuda[0] if "cuda_device" in state else (cuda[index] if index < len(cuda) else None)
        if own is not None:
            torch.cuda.set_rng_state(own.cpu(), cuda_device)
    unfit = set(generators_fit(state, generators or {}))
    for name, gen in (generators or {}).items():
        if name not in unfit:
            gen.set_state(state["generators"][name].cpu())


def save_snapshot(
    path: str | Path,
    *,
    network_type: str,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    state: TrainState | int,
    config: ExperimentConfig | None = None,
    run_info: Mapping[str, Any] | None = None,
    rng_states: list[dict[str, Any]] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    precision: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write a snapshot (the one format, see the module docstring) and return its path.

    Args:
        state: the run's counters, or the epoch alone (the published ``save_snapshots``: the other counters are not
            written, so a reader takes their defaults).
        config: the run's configuration (its fingerprint is checked on resume); None: no fingerprint.
        run_info: identity of the run (dataset, data setting, cval, device type...) checked on resume; None: none.
        rng_states: one :func:`capture_rng_state` dict per rank (rank order); None: none (a resume restarts them).
        scaler: the fp16 gradient scaler (its scale and growth tracker are saved), None otherwise.
        precision: the precision the run trained in (recorded; None: not recorded).
        extra: the caller's own values (weights-only loadable: tensors, numbers, strings, containers).

    Raises:
        CheckpointIntegrityError: a module holds NaN/Inf (nothing is written then).
    """
    model_state = {name: plain_state_dict(module) for name, module in modules.items()}
    for name, module_state in model_state.items():
        check_finite_state(module_state, f"refusing to write snapshot {path} [{name}]")
    counters: dict[str, Any] = {"epoch": int(state)} if isinstance(state, int) else {
        "epoch": state.epoch,
        "batches_done": state.batches_done,
        "global_iteration": state.global_iteration,
        "best_score": float(state.best_score),
        "epoch_sums": dict(state.epoch_sums),
        "seed": state.seed,
        "data_seed": state.data_seed,
        "epoch_seconds": float(state.epoch_seconds),
    }
    snapshot: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "network_type": network_type,
        **counters,
        "model_state": model_state,
        "optimizer_state": {name: opt.state_dict() for name, opt in optimizers.items()},
    }
    if config is not None:
        snapshot["fingerprint"] = config_fingerprint(config)
    if run_info is not None:
        snapshot["run"] = dict(run_info)
    if rng_states is not None:
        snapshot["rng"] = rng_states
    if precision is not None:
        snapshot["precision"] = precision
    if scaler is not None and scaler.is_enabled():
        snapshot["scaler_state"] = dict(scaler.state_dict())
    snapshot["extra"] = dict(extra) if extra else {}
    atomic_torch_save(snapshot, path)
    logger.info("snapshot written to %s (epoch %d, batch %d, iteration %s)", path, snapshot["epoch"],
                snapshot.get("batches_done", 0), snapshot.get("global_iteration", "not recorded"))
    return Path(path)


RNG_KEYS = ("python", "numpy", "torch", "cuda", "generators")
NUMPY_RNG_KEYS = ("kind", "keys", "pos", "has_gauss", "cached_gaussian")


def load_snapshot(path: str | Path, device: torch.device | str | None = None) -> dict[str, Any]:
    """Read a snapshot with ``weights_only=True`` (its CRC-32 verified) to the CPU and check its structure.

    ``device`` (the device the run will train on) does not change where the snapshot is read to: everything stays
    on the CPU, and :func:`restore_training_state` / :func:`restore_rng_state` put each part where it belongs.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is corrupt, unsafe or not a complete snapshot (names the file and what is missing).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume snapshot {path} not found")
    try:
        snapshot = safe_load(path, "cpu")
    except ValueError as err:
        raise ValueError(f"resume snapshot {err}") from err
    if not isinstance(snapshot, dict):
        raise ValueError(f"resume snapshot {path} holds a {type(snapshot).__name__}, expected a dict")
    missing = [k for k in ("network_type", "epoch", "model_state", "optimizer_state") if k not in snapshot]
    if missing:
        raise ValueError(f"resume snapshot {path} lacks the keys {missing}")
    for key in ("epoch", "batches_done", "global_iteration"):
        if key in snapshot and (isinstance(snapshot[key], bool) or not isinstance(snapshot[key], int)
                                or snapshot[key] < 0):
            raise ValueError(f"resume snapshot {path}: '{key}' must be an int >= 0, got {snapshot[key]!r}")
    if "global_iteration" in snapshot:  # every epoch trains at least one iteration
        trained = snapshot["epoch"] + (1 if snapshot.get("batches_done", 0) else 0)
        if snapshot["global_iteration"] < trained:
            raise ValueError(f"resume snapshot {path}: 'epoch' {snapshot['epoch']} (batch "
                             f"{snapshot.get('batches_done', 0)}) is implausible after 'global_iteration' "
                             f"{snapshot['global_iteration']} (every epoch trains at least one iteration); expected "
                             "a snapshot written by medseg-train")
    for key in ("model_state", "optimizer_state"):
        if not isinstance(snapshot[key], dict):
            raise ValueError(f"resume snapshot {path}: '{key}' must be a dict per module, got "
                             f"{type(snapshot[key]).__name__}")
    _check_rng_states(snapshot.get("rng"), path)
    return snapshot


def _check_rng_states(rng: Any, path: Path) -> None:
    """Every per-rank RNG entry must carry what :func:`restore_rng_state` reads."""
    if rng is None:
        return
    if not isinstance(rng, list):
        raise ValueError(f"resume snapshot {path}: 'rng' must be a list of per-process RNG states, got "
                         f"{type(rng).__name__}")
    for rank, state in enumerate(rng):
        if not isinstance(state, dict):
            raise ValueError(f"resume snapshot {path}: RNG state of process {rank} must be a dict, got "
                             f"{type(state).__name__}")
        missing = [k for k in RNG_KEYS if k not in state]
        missing += [f"numpy.{k}" for k in NUMPY_RNG_KEYS if isinstance(state.get("numpy"), dict)
                    and k not in state["numpy"]]
        if missing or not isinstance(state.get("numpy"), dict) or not isinstance(state.get("python"), list):
            raise ValueError(f"resume snapshot {path}: RNG state of process {rank} is incomplete (missing or "
                             f"malformed: {missing or ['numpy/python']}); expected a snapshot written by medseg-train")


def check_compatible(snapshot: Mapping[str, Any], config: ExperimentConfig, run_info: Mapping[str, Any],
                     path: str | Path) -> None:
    """Refuse a snapshot that was made by another configuration or for another run.

    Raises:
        ValueError: listing every differing key with the snapshot's and the current value.
    """
    if snapshot["network_type"] != config.segmentation_model.network_type:
        raise ValueError(f"resume snapshot {path} is for network {snapshot['network_type']!r}, the config asks for "
                         f"{config.segmentation_model.network_type!r}")
    if "fingerprint" not in snapshot:
        logger.warning("snapshot %s has no config fingerprint (a published snapshot, or one of the published "
                       "save_snapshots): not checked", path)
        return
    current = config_fingerprint(config)
    saved = snapshot["fingerprint"]
    diffs = [f"{k}: snapshot {saved.get(k)!r} vs now {current.get(k)!r}"
             for k in sorted(set(saved) | set(current)) if _normalise(saved.get(k)) != _normalise(current.get(k))]
    saved_run = snapshot.get("run", {})
    diffs += [f"{k}: snapshot {saved_run[k]!r} vs now {v!r}" for k, v in run_info.items()
              if k in saved_run and k not in RESUMABLE_RUN_KEYS and saved_run[k] != v]
    if diffs:
        hint = (" (under learning.lr_schedule the run length sets every iteration's learning rate)"
                if any(d.split(":")[0] in SCHEDULE_KEYS for d in diffs) else "")
        raise ValueError(f"resume snapshot {path} was made with another configuration; differences: "
                         + "; ".join(diffs) + hint)


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def restore_scaler(snapshot: Mapping[str, Any], scaler: torch.amp.GradScaler | None, path: str | Path) -> bool:
    """Restore the fp16 gradient scaler's state if the snapshot has one and this run uses a scaler; returns whether
    it did. A run that changes precision on resume starts a new scaler (or drops the saved one), with a note."""
    saved = snapshot.get("scaler_state")
    if scaler is None or not scaler.is_enabled():
        if saved:
            logger.info("resume snapshot %s holds an fp16 loss scale; this run does not train in fp16: not used", path)
        return False
    if not saved:
        logger.info("resume snapshot %s has no fp16 loss scale (trained in %s): the scaler starts afresh", path,
                    snapshot.get("precision") or "fp32")
        return False
    try:
        scaler.load_state_dict(dict(saved))
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"resume snapshot {path}: the fp16 gradient scaler state does not load: {err}") from err
    return True


def restore_training_state(
    snapshot: Mapping[str, Any],
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    path: str | Path,
) -> TrainState:
    """Load module and optimiser states (strictly) and return the saved counters.

    The snapshot is on the CPU; ``load_state_dict`` copies the weights into the modules' parameters (on their
    device) and moves the optimiser moments to their parameters' device, while Adam's ``step`` counters stay CPU
    tensors, as non-capturable Adam expects.

    A snapshot without the run's counters (the published format, or the published ``save_snapshots``) gives their
    defaults: batch 0, iteration 0, best score -10000, no epoch sums.

    Raises:
        ValueError: if the module or optimiser names do not match, a state does not fit, or weights are NaN/Inf
            (names the file).
    """
    for kind, saved, targets in (("module", snapshot["model_state"], modules),
                                 ("optimizer", snapshot["optimizer_state"], optimizers)):
        if set(saved) != set(targets):
            raise ValueError(f"resume snapshot {path}: {kind} names {sorted(saved)} do not match {sorted(targets)}")
        for name, target in targets.items():
            if kind == "module" and isinstance(saved[name], Mapping):
                check_finite_state(saved[name], f"resume snapshot {path} [{name}]")  # a diverged run's weights
            try:
                if kind == "module":
                    target.load_state_dict(saved[name], strict=True)  # type: ignore[call-arg]
                else:
                    target.load_state_dict(saved[name])
            except (RuntimeError, ValueError, KeyError) as err:
                raise ValueError(f"resume snapshot {path}: {kind} {name!r} does not load: {err}") from err
    return TrainState(
        epoch=int(snapshot["epoch"]),
        batches_done=int(snapshot.get("batches_done", 0)),
        global_iteration=int(snapshot.get("global_iteration", 0)),
        best_score=float(snapshot.get("best_score", -10000.0)),
        epoch_sums={k: float(v) for k, v in snapshot.get("epoch_sums", {}).items()},
        seed=snapshot.get("seed"),
        data_seed=int(snapshot.get("data_seed", 0)),
        epoch_seconds=float(snapshot.get("epoch_seconds", 0.0)),
    )
