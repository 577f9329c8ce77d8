"""Generate the synthetic data set and preprocess it into the training layout, keeping every folder in step.

``python scripts/prepare_synthetic.py`` runs :func:`medseg.phantom.pipeline.main`, where the code lives
(``pip install -e .`` makes it importable).
"""

import sys

from medseg.phantom.pipeline import (  # noqa: F401
    build_parser,
    check_args,
    generator_settings,
    prepare_raw,
    broken_raw_files,
    rebuilding_stale,
    preprocess,
    main,
    prepare,
)

if __name__ == "__main__":
    sys.exit(main())
