"""Image corruptions used to build the ACDC-C robustness test set."""

from medseg.robustness.corruptions import ARTEFACTS, build_corruption, corrupt_slice_stack

__all__ = ["ARTEFACTS", "build_corruption", "corrupt_slice_stack"]
