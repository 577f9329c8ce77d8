"""Generate the synthetic cardiac cine MR data set in the raw ACDC and M&Ms formats.

``python scripts/make_synthetic_data.py`` runs :func:`medseg.phantom.make.main`, where the code lives
(``pip install -e .`` makes it importable).
"""

import sys

from medseg.phantom.make import (  # noqa: F401
    PACKAGE_PARENT,
    GENERATOR_CODE,
    MAX_SEED,
    spacing_scale_range,
    parse_args,
    generator_record,
    check_raw_folder,
    main,
    generate,
)

if __name__ == "__main__":
    sys.exit(main())
