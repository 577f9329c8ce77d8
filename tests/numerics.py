"""Tolerances for comparing two fp32 evaluations of the same network function, derived rather than measured.

Two mathematically equal computations (e.g. a BatchNorm-folded network and the plain eval-mode network, or the same
network on a CPU whose oneDNN picks AVX-512 instead of AVX2 kernels) differ only by floating-point rounding. The size of
that difference depends on how the kernels order their sums, which differs between CPUs, so a tolerance fitted to one
machine's observed difference fails on another. Instead we bound it:

* A dot product of ``n`` fp32 terms, summed in any order, has the classical worst-case error
  ``|fl(sum) - sum| <= gamma_n * sum(|terms|)`` with ``gamma_n = n u / (1 - n u)`` and the unit roundoff
  ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., Thm. 3.1 / Lemma 3.4). This holds
  for every summation order, blocking and FMA use, i.e. for every kernel a library may choose.
* A convolution output is such a dot product with ``n`` = its fan-in (``in_channels / groups * kernel area``, the bias
  adds one). Through a chain of layers the first-order errors add, so for a path through several networks ``n`` is
  the sum of the fan-ins of every convolution / linear layer on it (counting all layers of a module is an upper bound
  of the longest path; skip connections only run in parallel). BatchNorm folding adds one rounding per weight, which
  is covered by the ``+ 1`` per layer.
* ``sum(|terms|)`` is unknown at the output; we use the reference's largest magnitude as the scale. That is the one
  approximation here: it is exact for the last layer's positive terms and on the safe side of the probabilistic
  estimate ``sqrt(n) u`` (Higham and Mary, 2019) that the observed differences follow (0.6 to 2.4 times
  ``sqrt(n) u`` for the FTN + STN paths in ``tests/compat/test_model.py``, on AVX2 and on AVX-512 kernels).

For those paths (``n`` about 14 000 to 37 000) the tolerance is 80 to 190 times the observed rounding differences and
still about 700 times below the difference one STN pass more or less makes (the tests assert a margin, so the tolerance
cannot silently become vacuous).
"""

from __future__ import annotations

from torch import Tensor, nn

UNIT_ROUNDOFF_FP32 = 2.0**-24


def accumulation_length(*modules: nn.Module) -> int:
    """Sum of the fan-ins (+ 1 for bias/folding) of every convolution and linear layer in ``modules``."""
    total = 0
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
                area = 1
                for k in layer.kernel_size:
                    area *= k
                total += layer.in_channels // layer.groups * area + 1
            elif isinstance(layer, nn.Linear):
                total += layer.in_features + 1
    return total


def fp32_tolerance(reference: Tensor, *modules: nn.Module) -> float:
    """Absolute tolerance ``gamma_n * max|reference|`` for an fp32 evaluation through ``modules`` (see module doc).

    Args:
        reference: the expected output (any shape).
        modules: every network the computation passes through, repeated once per pass.

    Returns:
        The largest absolute difference two correct fp32 evaluations may show.
    """
    n = accumulation_length(*modules)
    nu = n * UNIT_ROUNDOFF_FP32
    if nu >= 1:
        raise ValueError(f"accumulation length {n} too long for an fp32 error bound (n*u = {nu:.3g} >= 1)")
    return nu / (1 - nu) * float(reference.detach().abs().max())
