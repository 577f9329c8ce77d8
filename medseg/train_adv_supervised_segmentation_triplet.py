"""Compatibility: the published script path ``python medseg/train_adv_supervised_segmentation_triplet.py``.

The code lives in :mod:`medseg.cli.train`.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import medseg from the checkout
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from medseg.cli.train import SEED_MAX, N_FOLDS, build_parser, main  # noqa: E402, F401

__all__ = ["SEED_MAX", "N_FOLDS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
