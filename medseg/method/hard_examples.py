"""The hard-example grids of the published notebook, as pure computations (no plotting).

For each masking method (``dropout``, ``channel``, ``spatial``) and fixed masked fraction (0, 0.1, ..., 0.5) a latent
code is masked and decoded with the published call sequence ``fast_predict`` -> ``perturb_latent_code``
(``random_threshold=False``, soft masks) -> ``decoder_inference(eval=False, disable_track_bn_stats=True)``
with every module in eval mode (BatchNorm uses running statistics, no statistic is updated):

* Figure 1: the image code z_i, probed with the MSE to the input through the image decoder -> corrupted images.
* Figure 2: the shape code z_s, probed with the cross entropy to the label map through the segmentation decoder ->
  corrupted segmentations, shown as argmax maps and entropy maps of ``softmax(logits / 2)`` (the STN's input).
* Figure 3: :meth:`get_recon_diff`: ``|image - reconstruction|`` and ``|STN(FTN) - FTN|``.

Each (method, threshold) cell re-seeds torch's RNG with the same seed, so the random draws (dropped channels, soft
mask values) are shared across thresholds: a larger threshold masks a superset of what a smaller one masks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from medseg.method.mask_options import IMAGE_CODE_OPTIONS, PERTURB_TYPES, SHAPE_CODE_OPTIONS
from medseg.method.networks import STN_TEMPERATURE

METHODS: tuple[str, ...] = ("dropout", "channel", "spatial")
THRESHOLDS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
#: Temperature of the softmax that turns segmentation logits into the STN input.
TEMPERATURE = STN_TEMPERATURE
#: Which decoder and probe loss go with each code (as in training: the default masking options' probe losses).
CODE_TARGETS = {"image": ("image_decoder", IMAGE_CODE_OPTIONS.loss_name),
                "shape": ("segmentation_decoder", SHAPE_CODE_OPTIONS.loss_name)}


@dataclass(frozen=True)
class CorruptionGrid:
    """Decoder outputs for every (method, threshold) of one latent code.

    Attributes:
        code: ``'image'`` (z_i -> image decoder) or ``'shape'`` (z_s -> segmentation decoder).
        methods: row labels, e.g. ``('dropout', 'channel', 'spatial')``.
        thresholds: column labels (masked fraction / dropout rate).
        clean: ``(B, C, H, W)`` decoder output of the unmasked code.
        outputs: ``(M, T, B, C, H, W)`` decoder outputs of the masked codes (CPU, float32).
        masked_fraction: ``(M, T)`` fraction of the code's entries the mask changed (mask value < 1).
    """

    code: str
    methods: tuple[str, ...]
    thresholds: tuple[float, ...]
    clean: Tensor
    outputs: Tensor
    masked_fraction: np.ndarray


@dataclass(frozen=True)
class ReconDiff:
    """The difference maps of :meth:`get_recon_diff` for a batch (CPU tensors).

    Attributes:
        image: ``(B, H, W)`` model input.
        reconstruction: ``(B, H, W)`` image decoder output.
        image_error: ``(B, H, W)`` ``|image - reconstruction|``.
        initial: ``(B, H, W)`` argmax of the FTN logits.
        refined: ``(B, H, W)`` argmax of the STN(FTN) logits.
        refinement: ``(B, H, W)`` ``|refined - initial|`` logits, averaged over the classes.
    """

    image: Tensor
    reconstruction: Tensor
    image_error: Tensor
    initial: Tensor
    refined: Tensor
    refinement: Tensor


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with torch's RNG seeded to ``seed`` and restore the caller's RNG state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def masked_fraction(mask: Tensor, code_shape: Sequence[int]) -> float:
    """Fraction of the entries of a ``code_shape`` code that ``mask`` (broadcastable to it) changes (value < 1)."""
    return float((mask.detach() < 1).expand(*code_shape).float().mean())


def segmentation_probabilities(logits: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """``softmax(logits / temperature)`` over the classes: ``(..., C, H, W) -> (..., C, H, W)``."""
    return F.softmax(logits / temperature, dim=-3)


def entropy_map(probabilities: Tensor) -> Tensor:
    """Pixel-wise entropy in bits, ``-sum_c p log2 p``: ``(..., C, H, W) -> (..., H, W)``, in [0, log2 C]."""
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=-3) / math.log(2.0)


def _check_image(image: Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"image must be (B, 1, H, W), got shape {tuple(image.shape)}")
    if image.shape[-2] % 16 or image.shape[-1] % 16:
        raise ValueError(f"image height and width must be multiples of 16, got {tuple(image.shape[-2:])}")


def _perturb_and_decode(
    model, decoder_name: str, code: Tensor, target: Tensor, method: str, threshold: float, loss_type: str
) -> tuple[Tensor, Tensor]:
    """The published notebook's call sequence: ``perturb_latent_code`` with a fixed fraction and soft masks, then
    ``decoder_inference(eval=False, disable_track_bn_stats=True)`` on the eval-mode decoder; returns ``(output, mask)``.
    """
    decoder = model.model[decoder_name]
    masked, mask = model.perturb_latent_code(
        latent_code=code, decoder_function=decoder, label_y=target, perturb_type=method, threshold=threshold,
        if_soft=True, random_threshold=False, loss_type=loss_type,
    )  # fmt: skip
    with torch.no_grad():
        output = model.decoder_inference(decoder=decoder, latent_code=masked, eval=False, disable_track_bn_stats=True)
    return output, mask


def corruption_grid(
    model,
    image: Tensor,
    code: str,
    label: Tensor | None = None,
    methods: Sequence[str] = METHODS,
    thresholds: Sequence[float] = THRESHOLDS,
    seed: int = 0,
) -> CorruptionGrid:
    """Mask one latent code of ``image`` with every method and threshold and decode it (published notebook, cells 4-7).

    The model is switched to eval mode (and left there). The codes come from ``fast_predict``.

    Args:
        model: an :class:`AdvancedTripletReconSegmentationModel`.
        image: ``(B, 1, H, W)`` input in [0, 1], H and W multiples of 16.
        code: ``'image'`` (target: the input, MSE) or ``'shape'`` (target: ``label``, cross entropy).
        label: ``(B, H, W)`` int64 label map, required for ``code='shape'``.
        methods: subset of ``('dropout', 'channel', 'spatial')``.
        thresholds: fixed masked fractions / dropout rates in [0, 1].
        seed: seed of every cell's random draws.

    Returns:
        The :class:`CorruptionGrid`; its outputs are images ``(.., 1, H, W)`` or logits ``(.., C, H, W)``.

    Raises:
        ValueError: for a bad shape, code, method or threshold, or a missing label for the shape code.
    """
    _check_image(image)
    if code not in CODE_TARGETS:
        raise ValueError(f"code must be one of {sorted(CODE_TARGETS)}, got {code!r}")
    unknown = [m for m in methods if m not in PERTURB_TYPES]
    if unknown:
        raise ValueError(f"methods must be among {PERTURB_TYPES}, got {unknown}")
    if any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"thresholds must be in [0, 1], got {list(thresholds)}")
    decoder_name, loss_type = CODE_TARGETS[code]
    model.eval()
    image = image.to(model.device)
    if code == "shape":
        if label is None:
            raise ValueError("code='shape' needs the label map (B, H, W) as the target of the cross-entropy probe")
        if tuple(label.shape) != (image.shape[0], *image.shape[2:]):
            raise ValueError(f"label must be {(image.shape[0], *image.shape[2:])}, got shape {tuple(label.shape)}")
        target = label.to(model.device).long()
    else:
        target = image
    with torch.no_grad():
        (z_i, z_s), logits = model.fast_predict(image)
        latent = z_i if code == "image" else z_s
        if code == "image":
            clean = model.decoder_inference(model.model[decoder_name], z_i, eval=False, disable_track_bn_stats=True)
        else:
            clean = logits
    outputs = torch.empty((len(methods), len(thresholds), *clean.shape), dtype=torch.float32)
    fractions = np.zeros((len(methods), len(thresholds)))
    for i, method in enumerate(methods):
        for j, threshold in enumerate(thresholds):
            with seeded(seed, model.device):
                out, mask = _perturb_and_decode(model, decoder_name, latent, target, method, threshold, loss_type)
            outputs[i, j] = out.float().cpu()
            fractions[i, j] = masked_fraction(mask, latent.shape)
    return CorruptionGrid(code, tuple(methods), tuple(float(t) for t in thresholds), clean.float().cpu(), outputs,
                          fractions)  # fmt: skip


def hard_labels(grid: CorruptionGrid) -> Tensor:
    """Argmax maps of a shape-code grid: ``(M, T, B, H, W)`` int64."""
    return grid.outputs.argmax(dim=-3)


def entropy_maps(grid: CorruptionGrid, temperature: float = TEMPERATURE) -> Tensor:
    """Entropy (bits) of ``softmax(logits / temperature)`` for a shape-code grid: ``(M, T, B, H, W)``."""
    return entropy_map(segmentation_probabilities(grid.outputs, temperature))


def mean_abs_change(grid: CorruptionGrid) -> np.ndarray:
    """How far each cell's output moved from the unmasked one: mean ``|output - clean|``, ``(M, T)``."""
    return (grid.outputs - grid.clean).abs().mean(dim=(2, 3, 4, 5)).numpy()


def label_change(grid: CorruptionGrid) -> np.ndarray:
    """Fraction of pixels whose argmax label differs from the unmasked prediction (shape-code grid), ``(M, T)``."""
    changed = hard_labels(grid) != grid.clean.argmax(dim=-3)  # (M, T, B, H, W)
    return changed.float().mean(dim=(2, 3, 4)).numpy()


def recon_diff(model, image: Tensor) -> ReconDiff:
    """The analysis maps of :meth:`get_recon_diff` (eval mode) for ``image (B, 1, H, W)``."""
    _check_image(image)
    image_error, seg_diff, initial, refined, reconstruction = model.get_recon_diff(image.to(model.device))
    return ReconDiff(
        image=image[:, 0].float().cpu(),
        reconstruction=reconstruction[:, 0].float().cpu(),
        image_error=image_error[:, 0].float().cpu(),
        initial=initial.argmax(dim=1).cpu(),
        refined=refined.argmax(dim=1).cpu(),
        refinement=seg_diff.float().mean(dim=1).cpu(),
    )
