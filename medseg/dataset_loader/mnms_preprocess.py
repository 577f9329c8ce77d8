"""Compatibility: the published script path ``python medseg/dataset_loader/mnms_preprocess.py``.

The code lives in :mod:`medseg.conversion.mnms`.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import medseg from the checkout
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parents[1]))

from medseg.conversion.mnms import (  # noqa: E402, F401
    PathLike,
    SUBJECT_FOLDERS,
    UNLABELED_FOLDER,
    REQUIRED_COLUMNS,
    CSV_PATTERNS,
    VENDOR_COLUMNS,
    VENDORS,
    find_metadata_csv,
    read_metadata,
    find_subjects,
    warn_unmatched_rows,
    preprocess_subject,
    write_vendor_table,
    preprocess_mnms,
    main,
)

__all__ = [
    "PathLike",
    "SUBJECT_FOLDERS",
    "UNLABELED_FOLDER",
    "REQUIRED_COLUMNS",
    "CSV_PATTERNS",
    "VENDOR_COLUMNS",
    "VENDORS",
    "find_metadata_csv",
    "read_metadata",
    "find_subjects",
    "warn_unmatched_rows",
    "preprocess_subject",
    "write_vendor_table",
    "preprocess_mnms",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
