"""Experiment configuration: the published JSON schema read into frozen dataclasses, validated once.

The JSON keeps the published key names (``"image code"``, ``latent_DA``, ``save_epoch_every_num_epochs``...) so that
existing experiment files load unchanged; inside the code the fields are snake_case and :func:`from_dict` /
:meth:`ExperimentConfig.to_dict` map between the two. Unknown keys and values of the wrong type are errors that name
the dotted key. Missing keys take the published default. Keys that the original never read (``name``,
``data.image_size``, ``data.label_size``, ``learning.use_gpu``) are accepted and kept, but have no effect.

Command-line overrides (``--set learning.n_epochs=5``) are applied to the raw JSON before validation by
:func:`apply_overrides`; values are parsed as JSON (``5``, ``true``, ``[64,64,1]``, ``"ES"``) and fall back to the
raw string (``--set data.root_dir=data/synthetic/ACDC``); for a text key the raw text is always kept
(``--set data.root_dir=2024`` is the folder ``2024``, not a number).

Beyond types, the loader refuses: non-finite numbers (JSON ``Infinity``/``NaN``, e.g. ``learning.lr``), a key given
twice in one JSON object, ``data.num_classes`` differing from ``segmentation_model.num_classes`` or from the classes
the label setting produces, ``learning.n_epochs``/``max_iteration`` below 1, a ``data.dataset_name`` that is not a
single folder name (it becomes part of the run folder), file-name templates with placeholders other than
``{p_id}`` and ``{frame}``, pad/crop sizes that the transforms cannot use (``[H, W, 1]`` only, crop H and W multiples
of 16 and not above the pad size), an unknown ``data.data_aug_policy``, a ``data.new_spacing`` outside 0.1-20 mm and
an empty ``latent_DA.mask_scope`` with ``learning.latent_DA`` true.

The method-defining keys have no default: a file without a ``learning`` section or without ``learning.latent_DA``
is refused naming the key (the published code reads ``config['learning']['latent_DA']`` and both published configs
set it; a default would silently train one method under the other's name). ``--set learning.latent_DA=false``
supplies it explicitly. The other ``learning`` keys default to the values both published configs share
(``n_epochs`` 600, ``batch_size`` 20, ``lr`` 1e-4, ...). :func:`method_name` names the method a config trains.

medseg extension (not in the published schema; optional): ``learning.on_non_finite`` is ``"stop"`` (default: a
non-finite loss or gradient ends the run with an error before the optimiser step, so no non-finite weights are ever
trained or saved) or ``"skip"`` (that iteration's optimiser step is skipped with a warning and training continues).
``learning.precision`` is ``"fp32"`` (default; on a GPU with TF32 off), ``"tf32"`` (CUDA: fp32 with TensorFloat-32
convolutions), ``"bf16"`` or ``"fp16"`` (mixed precision), ``"bf16_emulated"`` (bf16 on a CPU without native
bf16, to measure its accuracy) or ``"bf16_where_native"`` (bf16 where the device computes it natively, else fp32;
the run's config.json records which); ``learning.sync_batchnorm`` (default false) pools the
BatchNorm statistics of a multi-GPU run over all processes (see :mod:`medseg.training.distributed`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import string
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from medseg.method.mask_options import IMAGE_CODE_OPTIONS, MASK_SCOPES, SHAPE_CODE_OPTIONS, MaskOptionError, MaskOptions

T = TypeVar("T")

FRAMES = ("ED", "ES")
CODE_NAMES = MASK_SCOPES
NETWORK_TYPES = ("FCN_16_standard", "FCN_16_standard_w_o_filter", "FCN_16_standard_share_code")
NON_FINITE_POLICIES = ("stop", "skip")
TEMPLATE_FIELDS = frozenset({"p_id", "frame"})
#: learning.precision (medseg extension): medseg.nn.precision.TRAINING_PRECISIONS, kept here so that reading a config
#: needs no torch
PRECISIONS = ("fp32", "tf32", "bf16", "bf16_emulated", "fp16", "bf16_where_native")
#: plausible in-plane spacings of ``data.new_spacing`` in mm (the range medseg-test accepts for a model's grid): a
#: tiny spacing resamples a slice to millions of pixels, a huge one to less than one
SPACING_RANGE_MM = (0.1, 20.0)
CROP_MULTIPLE = 16  # the networks downsample four times
#: Largest in-plane crop / pad (pixels): 5x the published 192; a 4000 x 4000 slice would only exhaust memory.
MAX_CROP = 1024


def crop_size_problem(value: object) -> str | None:
    """The one rule for an in-plane crop size (``data.crop_size``, ``medseg-test --crop_size``, the crop medseg-predict
    derives from a model's grid): an int, a multiple of :data:`CROP_MULTIPLE`, from 16 to :data:`MAX_CROP`. Returns
    what is expected when ``value`` breaks it, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not (
            CROP_MULTIPLE <= value <= MAX_CROP and value % CROP_MULTIPLE == 0):
        return (f"a multiple of {CROP_MULTIPLE} from {CROP_MULTIPLE} to {MAX_CROP} (the networks downsample four "
                "times; larger slices only exhaust memory)")
    return None


def _key(name: str) -> Any:
    """Field metadata giving the published JSON key of a dataclass field."""
    return {"json_key": name}


def _check(condition: bool, key: str, expectation: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"config key '{key}': expected {expectation}, got {value!r}")


def _check_folder_name(value: str, key: str) -> None:
    separators = ("/", "\\", os.sep) + ((os.altsep,) if os.altsep else ())
    _check(value.strip() not in ("", ".", "..") and not any(sep in value for sep in separators) and "\0" not in value,
           key, "a single folder name (no '/', '\\' or '..'; it is part of the run folder)", value)


def _check_template(value: str, key: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as err:
        raise ValueError(f"config key '{key}': expected a path template such as '{{p_id}}/{{frame}}_img.nii.gz', "
                         f"got {value!r} ({err})") from None
    unknown = sorted(names - TEMPLATE_FIELDS)
    _check(not unknown and "p_id" in names and not Path(value).is_absolute(), key,
           "a relative path template using only the placeholders {p_id} (required) and {frame}"
           + (f" (unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)})" if unknown else ""), value)


@dataclass(frozen=True)
class DataConfig:
    """``data`` section: dataset location, frames, sizes and the augmentation policy.

    ``new_spacing`` (the published dataset keyword, not in the published configs) is the in-plane spacing in mm that
    training and validation volumes are resampled to on load (skipped when they already have it); the published
    default is 1.36719 mm. A coarser spacing lets a smaller crop cover the same field of view.
    """

    dataset_name: str = "ACDC"
    root_dir: str = "data/synthetic/ACDC"
    frame: tuple[str, ...] = ("ES", "ED")
    image_size: tuple[int, ...] = (224, 224, 1)
    label_size: tuple[int, ...] = (224, 224)
    pad_size: tuple[int, ...] = (224, 224, 1)
    crop_size: tuple[int, ...] = (192, 192, 1)
    new_spacing: tuple[float, ...] = (1.36719, 1.36719, -1.0)
    data_aug_policy: str = "ACDC_affine_elastic_intensity"
    image_format_name: str = "{p_id}/{frame}_img.nii.gz"
    label_format_name: str = "{p_id}/{frame}_seg.nii.gz"
    num_classes: int = 4
    use_cache: bool = True
    keep_orig_image_label_pair_for_training: bool = True
    myocardium_only: bool = False
    right_ventricle_only: bool = False

    def __post_init__(self) -> None:
        _check(0 < len(self.frame) <= 2 and all(f in FRAMES for f in self.frame), "data.frame",
               "'ES', 'ED' or a list of at most two of them", list(self.frame))
        _check(len(set(self.frame)) == len(self.frame), "data.frame", "no repeated frame", list(self.frame))
        for name in ("pad_size", "crop_size"):
            value = getattr(self, name)
            _check(len(value) == 3 and all(v > 0 for v in value[:2]) and value[2] == 1, f"data.{name}",
                   "[H, W, 1]: positive H and W and one channel (the slices are single-channel)", list(value))
        crop_problem = next((crop_size_problem(v) for v in self.crop_size[:2] if crop_size_problem(v)), None)
        _check(crop_problem is None, "data.crop_size", f"H and W each {crop_problem}", list(self.crop_size))
        _check(all(v <= MAX_CROP for v in self.pad_size[:2]), "data.pad_size", f"H and W at most {MAX_CROP}",
               list(self.pad_size))
        _check(all(p >= c for p, c in zip(self.pad_size[:2], self.crop_size[:2])), "data.pad_size",
               f"H and W at least those of data.crop_size {list(self.crop_size)} (slices are padded, then cropped)",
               list(self.pad_size))
        self._check_policy()
        _check(self.num_classes >= 2, "data.num_classes", "an int >= 2", self.num_classes)
        low, high = SPACING_RANGE_MM
        _check(len(self.new_spacing) in (2, 3) and all(low <= v <= high for v in self.new_spacing[:2]),
               "data.new_spacing", f"[x, y] or [x, y, z] with in-plane spacings in [{low:g}, {high:g}] mm (z is "
               "ignored)", list(self.new_spacing))
        _check(not (self.myocardium_only and self.right_ventricle_only), "data.myocardium_only",
               "not both myocardium_only and right_ventricle_only", True)
        single = self.myocardium_only or self.right_ventricle_only
        needed = 2 if single else 4
        _check(self.num_classes >= needed, "data.num_classes",
               f"at least {needed} classes for {'a single-structure' if single else 'the BG/LV/MYO/RV'} label setting",
               self.num_classes)
        _check_folder_name(self.dataset_name, "data.dataset_name")
        for name in ("image_format_name", "label_format_name"):
            _check_template(getattr(self, name), f"data.{name}")

    def _check_policy(self) -> None:
        from medseg.data.transforms import POLICIES  # torch and scipy: imported only when a config is built

        _check(self.data_aug_policy in POLICIES, "data.data_aug_policy", f"one of {sorted(POLICIES)}",
               self.data_aug_policy)


@dataclass(frozen=True)
class SegmentationModelConfig:
    """``segmentation_model`` section."""

    network_type: str = "FCN_16_standard"
    num_classes: int = 4

    def __post_init__(self) -> None:
        _check(self.network_type in NETWORK_TYPES, "segmentation_model.network_type", f"one of {NETWORK_TYPES}",
               self.network_type)
        _check(self.num_classes >= 2, "segmentation_model.num_classes", "an int >= 2", self.num_classes)


#: ``learning.lr_schedule``: ``constant`` (the published training) or ``cosine`` (half a cosine from ``lr``
#: at the first iteration to 0 after the run's last, as a function of the global iteration, so resume is exact).
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class LearningConfig:
    """``learning`` section: cooperative (``latent_DA``) vs standard training, the optimisation budget and the
    numerical precision (``precision``: ``'fp32'`` default, ``'tf32'`` (CUDA: fp32 with TensorFloat-32 convolutions),
    ``'bf16'`` or ``'fp16'`` mixed precision, ``'bf16_emulated'``, ``'bf16_where_native'``) and, for multi-GPU runs,
    ``sync_batchnorm`` (BatchNorm statistics over all processes; see :mod:`medseg.training.distributed`)."""

    latent_da: bool = field(default=True, metadata=_key("latent_DA"))
    separate_training: bool = False
    lr: float = 1e-4
    n_epochs: int = 600
    max_iteration: int | None = 50000  # None (JSON null): no iteration cap, stop after n_epochs
    batch_size: int = 20
    use_gpu: bool = True
    on_non_finite: str = "stop"
    precision: str = "fp32"
    lr_schedule: str = "constant"  # published: constant; "cosine": lr -> 0 over the run (short CPU budgets)
    sync_batchnorm: bool = False  # multi-GPU runs: SyncBatchNorm (statistics over all processes)

    def __post_init__(self) -> None:
        _check(self.lr_schedule in LR_SCHEDULES, "learning.lr_schedule", f"one of {list(LR_SCHEDULES)}",
               self.lr_schedule)
        _check(self.precision in PRECISIONS, "learning.precision", f"one of {list(PRECISIONS)}", self.precision)
        _check(math.isfinite(self.lr) and self.lr > 0, "learning.lr", "a finite number > 0", self.lr)
        _check(self.n_epochs >= 1, "learning.n_epochs", "an int >= 1", self.n_epochs)
        _check(self.max_iteration is None or self.max_iteration >= 1, "learning.max_iteration",
               "an int >= 1 or null (no cap)", self.max_iteration)
        _check(self.batch_size >= 1, "learning.batch_size", "an int >= 1", self.batch_size)
        _check(self.on_non_finite in NON_FINITE_POLICIES, "learning.on_non_finite", f"one of {NON_FINITE_POLICIES}",
               self.on_non_finite)


@dataclass(frozen=True)
class LatentDAConfig:
    """``latent_DA`` section: which codes are masked and how."""

    mask_scope: tuple[str, ...] = CODE_NAMES
    image_code: MaskOptions = field(default=IMAGE_CODE_OPTIONS, metadata=_key("image code"))
    shape_code: MaskOptions = field(default=SHAPE_CODE_OPTIONS, metadata=_key("shape code"))

    def __post_init__(self) -> None:
        _check(all(s in CODE_NAMES for s in self.mask_scope) and len(set(self.mask_scope)) == len(self.mask_scope),
               "latent_DA.mask_scope", f"a list of distinct names from {list(CODE_NAMES)}", list(self.mask_scope))


@dataclass(frozen=True)
class OutputConfig:
    """``output`` section."""

    save_epoch_every_num_epochs: int = 100
    #: medseg extension: every N epochs also keep the best model so far as ``model/best_at_<epoch>`` (0: never),
    #: for the training-length trend
    keep_best_every_num_epochs: int = 0

    def __post_init__(self) -> None:
        _check(self.save_epoch_every_num_epochs >= 1, "output.save_epoch_every_num_epochs", "an int >= 1",
               self.save_epoch_every_num_epochs)
        keep = self.keep_best_every_num_epochs
        _check(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0, "output.keep_best_every_num_epochs", "an int >= 0 (0: off)",
               self.keep_best_every_num_epochs)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment file."""

    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    segmentation_model: SegmentationModelConfig = field(default_factory=SegmentationModelConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    latent_da: LatentDAConfig = field(default_factory=LatentDAConfig, metadata=_key("latent_DA"))
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        _check(self.data.num_classes == self.segmentation_model.num_classes, "data.num_classes",
               f"the same value as segmentation_model.num_classes ({self.segmentation_model.num_classes})",
               self.data.num_classes)
        # cooperative training without a code to mask would train "cooperative" with no hard example at all
        _check(not self.learning.latent_da or len(self.latent_da.mask_scope) > 0, "latent_DA.mask_scope",
               f"at least one of {list(CODE_NAMES)} while learning.latent_DA is true (for training without latent "
               "space data augmentation set learning.latent_DA to false)", list(self.latent_da.mask_scope))

    def to_dict(self) -> dict[str, Any]:
        """The config in the published JSON schema (lists, published key names)."""
        return _to_dict(self)

    def to_json(self, indent: int = 2) -> str:
        """The resolved config as published-schema JSON text."""
        return json.dumps(self.to_dict(), indent=indent) + "\n"


def _json_key(f: Any) -> str:
    return f.metadata.get("json_key", f.name)


def _to_dict(obj: Any) -> Any:
    if is_dataclass(obj):
        return {_json_key(f): _to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_dict(v) for v in obj]
    return obj


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert lists to tuples; errors name ``key``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):  # optional value
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(value, inner, key)
    if is_dataclass(hint):
        return _parse_section(hint, value, key)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if item_type is str and isinstance(value, str):  # a single frame / scope name is allowed
            value = [value]
        _check(isinstance(value, list), key, f"a list of {item_type.__name__}", value)
        return tuple(_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        _check(isinstance(value, bool), key, "true or false", value)
    elif hint is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, "an integer", value)
    elif hint is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, "a number", value)
        _check(math.isfinite(value), key, "a finite number", value)
        value = float(value)
    elif hint is str:
        _check(isinstance(value, str), key, "a string", value)
    return value


def _parse_section(cls: type[T], raw: Any, prefix: str) -> T:
    """Build the dataclass ``cls`` from the JSON object ``raw`` (keys named with ``prefix`` in errors)."""
    where = prefix or "<top level>"
    _check(isinstance(raw, Mapping), where, "a JSON object", raw)
    hints = typing.get_type_hints(cls)
    by_key = {_json_key(f): f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(by_key))
    if unknown:
        names = ", ".join(f"'{prefix + '.' if prefix else ''}{k}'" for k in unknown)
        raise ValueError(f"unknown config key(s) {names}; allowed in {where}: {sorted(by_key)}")
    kwargs = {}
    for json_key, value in raw.items():
        f = by_key[json_key]
        if is_dataclass(f.default) and isinstance(value, Mapping):
            # a partial section is completed from the field's own default, not from its type's: a "shape code"
            # section without loss_name probes with cross entropy (the shape code's default), as published
            value = {**_to_dict(f.default), **value}
        kwargs[f.name] = _convert(value, hints[f.name], f"{prefix}.{json_key}" if prefix else json_key)
    try:
        return cls(**kwargs)
    except MaskOptionError as err:  # name the masking section the error came from
        raise ValueError(f"config key '{prefix}.{err.key}': expected {err.expectation}, got {err.value!r}") from None


def from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a published-schema dict and return the frozen config.

    Raises:
        ValueError: for an unknown key, a wrong type or an out-of-range value (the message names the dotted key).
    """
    return _parse_section(ExperimentConfig, raw, "")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=VALUE"`` into the key path and the JSON-decoded value (raw string if it is not JSON).

    Raises:
        ValueError: if there is no ``=`` or the key is empty.
    """
    key, sep, value = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise ValueError(f"--set expects KEY=VALUE with a dotted KEY such as learning.n_epochs=5, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return path, parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``--set`` overrides applied (validation happens later, in :func:`from_dict`).

    A key may use the published name or the snake_case field name (``latent_DA.image_code.max_threshold``).

    Raises:
        ValueError: if ``raw`` is not a JSON object, for a malformed override, or for an override below a key that
            holds a value (naming whether the file or an earlier ``--set`` gave it that value).
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a JSON object at the top level, got {_json_type(raw)}")
    result = copy.deepcopy(dict(raw))
    overridden: set[tuple[str, ...]] = set()  # published key paths given a value by an earlier --set
    for text in overrides:
        path, value = parse_override(text)
        node, cls = result, ExperimentConfig
        keys: list[str] = []  # the published keys of path[:depth + 1]
        for depth, part in enumerate(path):
            parent = cls
            part, cls = _published_key(cls, part)
            keys.append(part)
            if depth == len(path) - 1:
                if _field_hint(parent, part) is str:  # a text key keeps the text: root_dir=2024 is a folder name
                    value = text.partition("=")[2]
                node[part] = value
                overridden.add(tuple(keys))
                break
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(keys)
                if cls is not None and tuple(keys) not in overridden:  # a section that the file gave a value
                    raise ValueError(f"config key '{where}': expected a section (a JSON object), got "
                                     f"{json.dumps(child)} in the file (needed by --set {text!r})")
                raise ValueError(f"--set {text!r}: '{where}' is a value, not a section")
            node = child
    return result


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (``a list`` is ``an array``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array (a list)"
    return type(value).__name__


def _published_key(cls: Any, part: str) -> tuple[str, Any]:
    """Map a snake_case field name to its published key; also return the field's dataclass type (or None)."""
    if cls is None or not is_dataclass(cls):
        return part, None
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if part in (f.name, _json_key(f)):
            hint = hints[f.name]
            return _json_key(f), hint if is_dataclass(hint) else None
    return part, None


def _field_hint(cls: Any, json_key: str) -> Any:
    """Type hint of the field published as ``json_key`` in the dataclass ``cls`` (None if unknown)."""
    if cls is None or not is_dataclass(cls):
        return None
    hints = typing.get_type_hints(cls)
    return next((hints[f.name] for f in fields(cls) if _json_key(f) == json_key), None)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a key given twice in one JSON object (json keeps the last one silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"config key {key!r} appears twice in one JSON object (beside keys {sorted(seen)}); "
                             "expected each key once")
        seen[key] = value
    return seen


#: What ``learning.latent_DA`` selects.
METHOD_NAMES = {True: "cooperative training", False: "standard training"}


def method_name(config: ExperimentConfig) -> str:
    """``'cooperative training'`` (``learning.latent_DA`` true) or ``'standard training'`` (false)."""
    return METHOD_NAMES[bool(config.learning.latent_da)]


def check_method_keys(raw: Mapping[str, Any]) -> None:
    """Require the keys that decide the method: the ``learning`` section and its ``latent_DA``.

    Raises:
        ValueError: naming the missing key and what it selects.
    """
    choice = "true (cooperative training) or false (standard training)"
    learning = raw.get("learning")
    if not isinstance(learning, Mapping):
        raise ValueError(f"config section 'learning' is missing; expected it with 'latent_DA': {choice} (it decides "
                         "the method, so it has no default; see config/ACDC/standard_training.json)")
    if "latent_DA" not in learning:
        raise ValueError(f"config key 'learning.latent_DA' is missing; expected {choice}: it decides the method, so it "
                         "has no default (or pass --set learning.latent_DA=false)")


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read, override and validate a JSON experiment file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        IsADirectoryError: if ``path`` is a folder.
        ValueError: for invalid JSON (with the line), a top level that is not a JSON object, an invalid key/value
            (with the dotted key), or a missing ``learning`` section / ``learning.latent_DA`` (:func:`check_method_keys`).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config file {path}: is a folder, expected a JSON file such as "
                                "config/ACDC/cooperative_training.json (--json_config_path)")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found (pass --json_config_path)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {path} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {path}: expected UTF-8 JSON text, got undecodable bytes ({err})") from err
    except ValueError as err:  # a duplicate key (from _unique_keys)
        raise ValueError(f"{path}: {err}") from err
    try:
        resolved = apply_overrides(raw, overrides)
        config = from_dict(resolved)
        check_method_keys(resolved)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return config


def config_name_from_path(path: str | os.PathLike) -> str:
    """Experiment config name used in the run folder, e.g. ``'ACDC/cooperative_training'``.

    The published rule removes a leading ``./config/`` and the ``.json`` suffix. Here ``config/`` is removed with or
    without ``./`` and, for files outside a ``config`` folder (absolute paths, temporary test files), the part after
    the last ``config`` component or else the file's parent folder and stem are used, so the run folder always stays
    inside ``save_dir``.
    """
    parts = [p for p in PurePosixPath(Path(path).as_posix()).parts if p not in (".", "/")]
    if parts and parts[-1].endswith(".json"):
        parts[-1] = parts[-1][: -len(".json")]
    if "config" in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index("config", 1)
        parts = parts[last + 1:]
    elif Path(path).is_absolute() or ".." in parts:
        parts = parts[-2:]
    return "/".join(p for p in parts if p != "..")
