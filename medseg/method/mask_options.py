"""How a latent code is masked: the one options type of the configuration's ``latent_DA`` sections, of the
hard-example generation and of the published DA-config dicts (``IMAGE_CODE_DA_CONFIG``).

Torch-free, so that the configuration can import it without loading torch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: task losses of the gradient probe of targeted masking
MASK_LOSSES = ("mse", "ce", "corr")
#: the masking methods; ``'random'`` draws one of them per call
PERTURB_TYPES = ("dropout", "spatial", "channel")
MASK_TYPES = ("random", *PERTURB_TYPES)
#: the codes that can be masked (the names of the configuration's ``latent_DA`` sections)
MASK_SCOPES = ("image code", "shape code")


class MaskOptionError(ValueError):
    """A masking option out of range; ``key``, ``expectation`` and ``value`` let a caller name where it came from."""

    def __init__(self, key: str, expectation: str, value: Any) -> None:
        self.key, self.expectation, self.value = key, expectation, value
        super().__init__(f"masking option '{key}': expected {expectation}, got {value!r}")


def _check(condition: bool, key: str, expectation: str, value: Any) -> None:
    if not condition:
        raise MaskOptionError(key, expectation, value)


@dataclass(frozen=True)
class MaskOptions:
    """How one latent code is masked.

    Attributes:
        loss_name: task loss of the gradient probe: ``'mse'``, ``'ce'`` or ``'corr'``.
        mask_type: ``'random'`` (uniform choice per call among the three others), ``'dropout'``, ``'spatial'``,
            ``'channel'``.
        max_threshold: dropout rate, or the upper bound of the masked fraction for targeted masking, in [0, 1].
        random_threshold: targeted masking draws the fraction p = U(0, 1) * max_threshold per call.
        if_soft: targeted masking uses soft values 0.5 * U(0, 1) instead of hard zeros.

    Raises:
        MaskOptionError: (a ValueError) naming the option, for a value out of range.
    """

    loss_name: str = "mse"
    mask_type: str = "random"
    max_threshold: float = 0.5
    random_threshold: bool = True
    if_soft: bool = True

    def __post_init__(self) -> None:
        _check(self.loss_name in MASK_LOSSES, "loss_name", f"one of {MASK_LOSSES}", self.loss_name)
        _check(self.mask_type in MASK_TYPES, "mask_type", f"one of {MASK_TYPES}", self.mask_type)
        _check(isinstance(self.max_threshold, (int, float)) and not isinstance(self.max_threshold, bool)
               and 0.0 <= self.max_threshold <= 1.0, "max_threshold", "a number in [0, 1]", self.max_threshold)

    def as_dict(self) -> dict[str, Any]:
        """The options as a DA-config dict (the keys of the configuration's ``latent_DA["image code"]``)."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, options: MaskOptions | Mapping[str, Any] | None, defaults: MaskOptions,
                     name: str) -> MaskOptions:
        """Options from a DA-config dict (missing keys taken from ``defaults``), or ``options`` itself.

        Raises:
            ValueError: naming ``name`` and the key, for a key that is not a masking option.
        """
        if isinstance(options, MaskOptions):
            return options
        merged = defaults.as_dict()
        if options is not None:
            unknown = sorted(set(options) - set(merged))
            if unknown:
                raise ValueError(f"{name}: unknown keys {unknown}; expected a subset of {sorted(merged)}")
            merged.update(options)
        return cls(**merged)


#: masking of the image code z_i (probe: MSE of the reconstructed image) and of the shape code z_s (probe: cross
#: entropy of the segmentation), the published defaults of both
IMAGE_CODE_OPTIONS = MaskOptions()
SHAPE_CODE_OPTIONS = MaskOptions(loss_name="ce")


def mask_scope_flags(mask_scope: Collection[str]) -> tuple[bool, bool]:
    """``mask_scope`` (subset of :data:`MASK_SCOPES`) -> ``(mask the image code, mask the shape code)``.

    Raises:
        ValueError: for an entry outside :data:`MASK_SCOPES`.
    """
    unknown = set(mask_scope) - set(MASK_SCOPES)
    if unknown:
        raise ValueError(f"mask_scope entries must be in {MASK_SCOPES}, got {sorted(unknown)}")
    return "image code" in mask_scope, "shape code" in mask_scope


__all__ = [
    "IMAGE_CODE_OPTIONS",
    "MASK_LOSSES",
    "MASK_SCOPES",
    "MASK_TYPES",
    "PERTURB_TYPES",
    "SHAPE_CODE_OPTIONS",
    "MaskOptionError",
    "MaskOptions",
    "mask_scope_flags",
]
