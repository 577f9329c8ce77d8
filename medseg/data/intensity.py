"""Min–max intensity normalisation of 2D slices: the one implementation of each of the two forms medseg uses.

* :func:`rescale_slices`: every slice of a stack to [0, 1] as ``(x − min) / (max − min + 1e-20)`` (min and max of
  that slice). The test path's optional per-slice normalisation (``normalize_2D``), the ACDC-C generation (before and
  after the corruption) and the sensitivity sweeps use it; it is scikit-image's ``rescale_intensity`` of the published
  test and ACDC-C code.
* :func:`minmax_normalize`: one slice to [0, 1] as ``a·x + (1 − a·max)`` with ``a = 1 / ((max − min) + 1e-8)``, the
  last step of every training and validation transform (the published percentile normaliser at percentiles 0 and
  100), so also the network input of the hard-example figures.

The two agree to float32 rounding (about 1e-7) on any slice whose range is well above 1e-8, but not bit for bit; they
stay two forms because training and testing were published with these two, and medseg reproduces both exactly. The
whole-volume percentile normalisation of raw scans is :func:`medseg.conversion.preprocessing.normalize_percentile`.
"""

from __future__ import annotations

import numpy as np

#: ``rescale_slices``: added to each slice's intensity range (a constant slice becomes 0, not NaN).
RESCALE_EPS = 1e-20
#: ``minmax_normalize``: added to the slice's intensity range.
NORMALIZE_EPS = 1e-8


def rescale_slices(stack: np.ndarray) -> np.ndarray:
    """Each slice of ``stack (..., H, W)`` (e.g. ``(Z, H, W)``) min–max rescaled to [0, 1]:
    ``(x − min) / (max − min + 1e-20)``, computed in the input's float type and returned as float32."""
    lo = stack.min(axis=(-2, -1), keepdims=True)
    hi = stack.max(axis=(-2, -1), keepdims=True)
    return ((stack - lo) / (hi - lo + RESCALE_EPS)).astype(np.float32)


def minmax_normalize(image: np.ndarray) -> np.ndarray:
    """One slice min–max normalised to [0, 1] as ``a·x + (1 − a·max)`` with ``a = 1 / ((max − min) + 1e-8)`` (the
    training transforms' form; float32)."""
    lo, hi = float(image.min()), float(image.max())
    a = 1.0 / ((hi - lo) + NORMALIZE_EPS)
    return (image * a + (1.0 - a * hi)).astype(np.float32)
