"""Compatibility: the published script path ``python medseg/test_ACDC_triplet_segmentation.py``.

The code lives in :mod:`medseg.cli.test`.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import medseg from the checkout
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from medseg.cli.test import CVALS, DEFAULT_DATASETS, build_parser, main  # noqa: E402, F401

__all__ = ["CVALS", "DEFAULT_DATASETS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
