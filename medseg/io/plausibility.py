"""The one plausibility check of an image volume, shared by every tool that reads images.

Two stages of the pipeline see different intensities, so the rule is stated per stage:

* :data:`RAW_SCAN`: a scanner image before preprocessing (``acdc_preprocess.py``, ``mnms_preprocess.py``,
  ``medseg-predict``, an image file given to the figure script). MR magnitude images are non-negative; their scale is
  the scanner's (int16 0-4000 is typical), so only absurd magnitudes (above :data:`RAW_MAX_INTENSITY`, e.g. a
  ``scl_slope`` of 1e30) are refused.
* :data:`PREPROCESSED`: a volume written by the preprocessing (percentile-normalised to [0, 1] and resampled with
  linear interpolation) or by ACDC-C (rescaled to [0, 1] after the corruption), read by training, validation,
  ``medseg-test``, ACDC-C and the figure script's subject folders. Values outside [0, 1] (beyond a rounding tolerance)
  mean the folder holds raw scans or another normalisation.

At both stages a volume must be finite, not constant (an all-zero or blank image has nothing to segment), hold no
subnormal magnitudes in more than :data:`SUBNORMAL_SHARE` of its non-zero voxels (below :data:`SUBNORMAL_LIMIT`: bytes of
another data type read as floats) and have voxel sizes
of cardiac MR (in-plane :data:`IN_PLANE_SPACING_RANGE`, between slices :data:`SLICE_SPACING_RANGE`; a factor of ten
off is a cm/mm unit error). The stored byte count against the header's dimensions and data type is checked by the
NIfTI reader itself (``medseg.io.nifti_format.check_voxel_bytes``), before any of this.

Each tool decides what a failure means, as before: the preprocessors refuse the subject, ``medseg-predict`` and the
figure script refuse the file, training and validation stop naming the file, ``medseg-test`` skips the volume with a
warning and counts it as skipped.
"""

from __future__ import annotations

import numpy as np

from medseg.io.nifti import Volume

RAW_SCAN = "raw scan"
PREPROCESSED = "preprocessed volume"
STAGES = (RAW_SCAN, PREPROCESSED)

#: Plausible voxel sizes of cardiac cine MR in mm (in-plane, between slices).
IN_PLANE_SPACING_RANGE = (0.25, 8.0)
SLICE_SPACING_RANGE = (0.5, 40.0)
#: Largest magnitude of a raw scan (scanner intensities are stored in 12-16 bits; float exports stay far below).
RAW_MAX_INTENSITY = 1e6
#: The intensity range of a preprocessed volume and the rounding it may carry.
PREPROCESSED_RANGE = (0.0, 1.0)
PREPROCESSED_TOLERANCE = 1e-3
#: Non-zero magnitudes below this are no intensity: the bytes of another data type read as floating point.
SUBNORMAL_LIMIT = 1e-30
#: Share of the non-zero voxels that must be that small before the bytes count as reinterpreted. Integer bytes read
#: as floats make most voxels tiny; arithmetic on a real image (an FFT-based corruption, interpolation) can leave a
#: few isolated values near zero, which are rounding, not a wrong data type.
SUBNORMAL_SHARE = 0.01


class ImplausibleVolume(ValueError):
    """An image volume that cannot be what its stage expects (the message names the file and the rule)."""


def plausibility_problem(volume: Volume, stage: str) -> str | None:
    """What is implausible about ``volume`` at ``stage`` (None when nothing is); see the module docstring."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    array = np.asarray(volume.array)
    if array.size == 0:
        return "expected an image, got an empty volume (no voxel)"
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            return (f"expected finite intensities, got {int(array.size - finite.sum())} NaN or Inf voxel(s) (a "
                    "corrupt file, or a header data type that reinterprets the bytes)")
        magnitude = np.abs(array)
        nonzero = magnitude > 0
        tiny = int(np.count_nonzero(nonzero & (magnitude < SUBNORMAL_LIMIT)))
        if tiny and tiny >= SUBNORMAL_SHARE * int(np.count_nonzero(nonzero)):
            return (f"expected image intensities, got {tiny} voxel(s) of magnitude below {SUBNORMAL_LIMIT:g} (bytes of "
                    "another data type read as floating point: the header's data type does not match the data)")
    low, high = float(array.min()), float(array.max())
    if low == high:
        return f"expected an image with contrast, got a constant volume (every voxel is {low:g})"
    spacing = [abs(float(s)) for s in volume.spacing[:3]]
    for axis, size in zip("xyz", spacing):
        bounds = SLICE_SPACING_RANGE if axis == "z" else IN_PLANE_SPACING_RANGE
        if not bounds[0] <= size <= bounds[1]:
            return (f"voxel size along {axis} is {size:g} mm; expected {bounds[0]:g}..{bounds[1]:g} mm for cardiac MR "
                    "(a factor of 10 off usually means the header holds cm instead of mm, or the reverse)")
    if stage == RAW_SCAN:
        if low < 0:
            return (f"expected a raw MR magnitude image (intensities >= 0), got intensities down to {low:g} (a header "
                    "data type that reinterprets the bytes, or an image that is not a magnitude scan)")
        if high > RAW_MAX_INTENSITY:
            return (f"expected raw scanner intensities up to {RAW_MAX_INTENSITY:g}, got {high:g} (an absurd scl_slope "
                    "in the header, or a data type that reinterprets the bytes)")
        return None
    lo, hi = PREPROCESSED_RANGE
    if low < lo - PREPROCESSED_TOLERANCE or high > hi + PREPROCESSED_TOLERANCE:
        return (f"expected a preprocessed image with intensities in [{lo:g}, {hi:g}], got [{low:g}, {high:g}] (raw "
                "scans or another normalisation: run acdc_preprocess.py / mnms_preprocess.py first)")
    return None


def check_image_volume(volume: Volume, stage: str) -> None:
    """Refuse an implausible image volume.

    Args:
        volume: the image as read (its ``path`` names it in the message).
        stage: :data:`RAW_SCAN` or :data:`PREPROCESSED`.

    Raises:
        ImplausibleVolume (ValueError): ``<file>: <what was expected>, got <what was found>``.
    """
    problem = plausibility_problem(volume, stage)
    if problem is not None:
        raise ImplausibleVolume(f"{volume.name}: {problem}")
