"""Compatibility: the published script path ``python medseg/dataset_loader/acdc_preprocess.py``.

The code lives in :mod:`medseg.conversion.acdc`.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import medseg from the checkout
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parents[1]))

from medseg.conversion.acdc import (  # noqa: E402, F401
    PathLike,
    PATIENT_PATTERN,
    find_patients,
    scan_patients,
    read_info,
    frame_files,
    preprocess_patient,
    preprocess_acdc,
    main,
)

__all__ = [
    "PathLike",
    "PATIENT_PATTERN",
    "find_patients",
    "scan_patients",
    "read_info",
    "frame_files",
    "preprocess_patient",
    "preprocess_acdc",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
