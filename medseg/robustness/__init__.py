"""Image corruptions used to build the ACDC-C robustness test set (spec g.1)."""

from medseg.robustness.corruptions import ARTEFACTS, build_corruption, corrupt_slice_stack

__all__ = ["ARTEFACTS", "build_corruption", "corrupt_slice_stack"]
