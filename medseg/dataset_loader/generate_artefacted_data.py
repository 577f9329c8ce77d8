"""Compatibility: the published script path ``python medseg/dataset_loader/generate_artefacted_data.py``.

The code lives in :mod:`medseg.conversion.acdc_c`.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import medseg from the checkout
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parents[1]))

from medseg.conversion.acdc_c import (  # noqa: E402, F401
    FRAMES,
    CROP_HW,
    MAX_COPIES,
    MAX_SEED,
    case_seed,
    corrupt_volume,
    grid_crop,
    corrupt_case,
    generate_acdc_c,
    build_parser,
    main,
)

__all__ = [
    "FRAMES",
    "CROP_HW",
    "MAX_COPIES",
    "MAX_SEED",
    "case_seed",
    "corrupt_volume",
    "grid_crop",
    "corrupt_case",
    "generate_acdc_c",
    "build_parser",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
