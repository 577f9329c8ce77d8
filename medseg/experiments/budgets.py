"""Experiment budgets: how long and at which resolution the robustness experiment trains and tests.

A budget is one JSON file in ``config/experiment/`` (``smoke``, ``first_run``, ``cpu``, ``paper``...) or any file given by
path.
Both methods always share the same budget, data, splits and seeds; the budget only sets the resolution and the
optimisation length. Every key is required except those with a default below; unknown keys are errors naming the file.

========================== ===========================================================================================
key                        meaning
========================== ===========================================================================================
``name``                   short name (default output folder ``results/<name>``)
``description``            one line shown in the report
``spacing_mm``             in-plane spacing of training and testing; if it differs from the data's (1.36719 mm after
                           preprocessing), the runner writes a resampled copy of the data under the output folder
``pad_size``               training pad (square, px) before the centre crop (published 224)
``crop_size``              training crop (square, px; multiple of 16; published 192)
``test_crop_size``         test crop (square, px; multiple of 16; published 192)
``n_epochs``               training epochs (published 600)
``batch_size``             slices per iteration, originals included (published 20)
``lr``                     Adam learning rate of every module (published 1e-4)
``max_iteration``          iteration cap (published 50000)
``lr_schedule``            ``constant`` (default, published) or ``cosine`` (``learning.lr_schedule``: lr falls to 0
                           over the run)
``save_epoch_every_num_epochs``  periodic checkpoints (published 100)
``runs``                   ``[[cval, seed], ...]`` (default the paper's (0, 40), (1, 20), (2, 10))
``data_setting``           labelled training subjects (default ``"10"``)
``methods``                ``{name: config path relative to config/}`` (default standard and cooperative training)
``datasets``               test sets in table order (default ACDC, the four ACDC-C sets, MM)
``n_iter``                 test settings (default ``[1, 2]``: FTN alone, FTN + STN)
``frames``                 test frames (default ``["ED", "ES"]``)
``keep_best_every_num_epochs``  every N epochs keep the best model so far (``model/best_at_<epoch>``) and test it
                           with the last ``n_iter`` once the run is trained: the training-length trend (default 0: off)
``precision``              ``learning.precision`` of both methods (``fp32``, ``bf16``, ``bf16_emulated``, ``fp16``;
                           default: the configs' own), or ``bf16_where_native``: bf16 mixed precision where the device computes bf16
                           natively (a CPU with AVX512-BF16 or AMX, a GPU with bf16), fp32 elsewhere; resolved once
                           per call (:meth:`Budget.resolved`), and the resolved value is part of the experiment's
                           identity
========================== ===========================================================================================
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from medseg.config import LR_SCHEDULES
from medseg.evaluation.aggregate import RESAMPLED_SUFFIX
from medseg.utils.device import resolve_device
from medseg.nn.precision import WHERE_NATIVE, resolve_precision

PathLike = str | os.PathLike
BUDGET_NAMES = ("smoke", "first_run", "cpu", "paper")
#: budget names that no longer exist -> what to use instead (refused with this message)
RENAMED_BUDGETS = {
    "quickstart": "the budget 'quickstart' was renamed: 'cpu_run0' is the 75-epoch run 0 of the cpu budget it was "
                  "(about 2.5 CPU-hours); 'first_run' is what README command (a) runs now (about 26 minutes)",
}
PRECISION_CHOICES = ("fp32", "bf16", "bf16_emulated", "fp16", WHERE_NATIVE)
DEFAULT_RUNS = ((0, 40), (1, 20), (2, 10))
DEFAULT_METHODS = {"standard": "ACDC/standard_training.json", "cooperative": "ACDC/cooperative_training.json"}
DEFAULT_DATASETS = ("ACDC", "RandomBias", "RandomSpike", "RandomGhosting", "RandomMotion", "MM")
NATIVE_SPACING_MM = 1.36719
SPACING_TOLERANCE_MM = 1e-4


@dataclass(frozen=True)
class Budget:
    """One experiment budget (see the module docstring for the keys)."""

    name: str
    description: str
    spacing_mm: float
    pad_size: int
    crop_size: int
    test_crop_size: int
    n_epochs: int
    batch_size: int
    lr: float
    max_iteration: int
    save_epoch_every_num_epochs: int
    lr_schedule: str = "constant"
    runs: tuple[tuple[int, int], ...] = DEFAULT_RUNS
    data_setting: str = "10"
    methods: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_METHODS))
    datasets: tuple[str, ...] = DEFAULT_DATASETS
    n_iter: tuple[int, ...] = (1, 2)
    frames: tuple[str, ...] = ("ED", "ES")
    keep_best_every_num_epochs: int = 0
    precision: str | None = None

    @property
    def resamples(self) -> bool:
        """Whether the data must be resampled to ``spacing_mm`` (it is not the preprocessing spacing)."""
        return abs(self.spacing_mm - NATIVE_SPACING_MM) > SPACING_TOLERANCE_MM

    @property
    def test_datasets(self) -> tuple[str, ...]:
        """The test sets of every test: ``datasets``, plus ``<artefact>_resampled`` after each ACDC-C set when the
        data is resampled (the native-grid corruption resampled, beside the corruption at the grid; see
        :mod:`medseg.experiments.data`)."""
        if not self.resamples:
            return tuple(self.datasets)

        out: list[str] = []
        for name in self.datasets:
            out.append(name)
            if name not in ("ACDC", "MM"):
                out.append(name + RESAMPLED_SUFFIX)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        raw = asdict(self)
        for key, default in (("keep_best_every_num_epochs", 0), ("precision", None)):
            if raw[key] == default:  # keys added later: absent when unused, so earlier folders keep their identity
                del raw[key]
        raw["runs"] = [list(pair) for pair in self.runs]
        for key in ("datasets", "n_iter", "frames"):
            raw[key] = list(raw[key])
        return raw

    def resolved(self, device: str = "auto") -> Budget:
        """This budget with ``precision`` resolved for ``device`` (``auto``, ``cpu``, ``cuda``...):
        ``bf16_where_native`` becomes ``bf16`` where the device computes bf16 natively, else ``fp32``."""
        if self.precision != WHERE_NATIVE:
            return self
        return replace(self, precision=resolve_precision(self.precision, resolve_device(device)))

    def training_overrides(self, acdc_root: PathLike) -> list[str]:
        """``--set KEY=VALUE`` values applied to both methods' configs (same budget for both; ``bf16_where_native``
        resolved for the default device unless :meth:`resolved` was applied first)."""
        s, p, c = self.spacing_mm, self.pad_size, self.crop_size
        precision = self.resolved().precision
        return [
            f"data.root_dir={Path(acdc_root).as_posix()}",
            f"data.new_spacing=[{s},{s},-1]",
            f"data.pad_size=[{p},{p},1]",
            f"data.crop_size=[{c},{c},1]",
            f"learning.n_epochs={self.n_epochs}",
            f"learning.batch_size={self.batch_size}",
            f"learning.lr={self.lr}",
            f"learning.max_iteration={self.max_iteration}",
            f"learning.lr_schedule={self.lr_schedule}",
            f"output.save_epoch_every_num_epochs={self.save_epoch_every_num_epochs}",
        ] + ([f"output.keep_best_every_num_epochs={self.keep_best_every_num_epochs}"]
             if self.keep_best_every_num_epochs else []) + (
            [f"learning.precision={precision}"] if precision is not None else [])


def _fail(path: Path, key: str, expected: str, value: Any) -> None:
    raise ValueError(f"budget file {path}: key '{key}': expected {expected}, got {value!r}")


def _positive_int(path: Path, raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(path, key, "a positive integer", value)
    return value


def _validate(path: Path, raw: dict[str, Any]) -> Budget:
    allowed = {f.name for f in fields(Budget)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"budget file {path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    required = [f.name for f in fields(Budget) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        raise ValueError(f"budget file {path}: missing key(s) {missing}")
    values: dict[str, Any] = dict(raw)
    for key in ("pad_size", "crop_size", "test_crop_size", "n_epochs", "batch_size", "max_iteration",
                "save_epoch_every_num_epochs"):
        values[key] = _positive_int(path, raw, key)
    if "keep_best_every_num_epochs" in raw:
        keep = raw["keep_best_every_num_epochs"]
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            _fail(path, "keep_best_every_num_epochs", "an integer >= 0 (0: off)", keep)
    for key in ("crop_size", "test_crop_size"):
        if values[key] % 16:
            _fail(path, key, "a multiple of 16 (the network downsamples 16x)", values[key])
    if values["pad_size"] < values["crop_size"]:
        _fail(path, "pad_size", f"at least crop_size ({values['crop_size']})", values["pad_size"])
    for key in ("spacing_mm", "lr"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            _fail(path, key, "a positive finite number", value)
        values[key] = float(value)
    if "lr_schedule" in raw:
        if raw["lr_schedule"] not in LR_SCHEDULES:
            _fail(path, "lr_schedule", f"one of {list(LR_SCHEDULES)}", raw["lr_schedule"])
    if "precision" in raw and raw["precision"] not in PRECISION_CHOICES:
        _fail(path, "precision", f"one of {list(PRECISION_CHOICES)}", raw["precision"])
    for key in ("name", "description", "data_setting"):
        if key in raw and not isinstance(raw[key], str):
            _fail(path, key, "a string", raw[key])
    if "runs" in raw:
        runs = raw["runs"]
        if not isinstance(runs, list) or not runs or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
            for r in runs
        ):
            _fail(path, "runs", "a non-empty list of [cval, seed] integer pairs", runs)
        if len({r[0] for r in runs}) != len(runs):
            _fail(path, "runs", "distinct cvals", runs)
        values["runs"] = tuple((int(c), int(s)) for c, s in runs)
    if "methods" in raw:
        methods = raw["methods"]
        if not isinstance(methods, dict) or len(methods) != 2 or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in methods.items()
        ):
            _fail(path, "methods", "an object of two {name: config path} strings (baseline first)", methods)
    for key, kind in (("datasets", str), ("n_iter", int), ("frames", str)):
        if key in raw:
            value = raw[key]
            if not isinstance(value, list) or not value or not all(isinstance(v, kind) for v in value):
                _fail(path, key, f"a non-empty list of {kind.__name__}", value)
            values[key] = tuple(value)
    if any(n < 1 for n in values.get("n_iter", (1,))):
        _fail(path, "n_iter", "values >= 1", raw["n_iter"])
    return Budget(**values)


def budget_path(name_or_path: PathLike, config_dir: PathLike) -> Path:
    """A bare name (``smoke``, ``cpu``, ``paper``, ``calib``...) → ``<config_dir>/experiment/<name>.json``; anything
    with a folder or a ``.json`` suffix is a file path."""
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and not text.endswith(".json"):
        return Path(config_dir) / "experiment" / f"{text}.json"
    return Path(text)


def load_budget(name_or_path: PathLike, config_dir: PathLike) -> Budget:
    """Read and validate a budget.

    Raises:
        FileNotFoundError: the budget file does not exist.
        ValueError: invalid JSON or a bad key/value (naming the file and the key).
    """
    path = budget_path(name_or_path, config_dir)
    if str(name_or_path) in RENAMED_BUDGETS and not path.is_file():
        raise FileNotFoundError(f"budget {name_or_path!r}: {RENAMED_BUDGETS[str(name_or_path)]}")
    if not path.is_file():
        raise FileNotFoundError(f"budget file {path} not found (use --budget {{{','.join(BUDGET_NAMES)}}}, another name "
                                f"of config/experiment/, or a path)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"budget file {path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"budget file {path}: expected a JSON object, got {type(raw).__name__}")
    return _validate(path, raw)
