"""Compatibility: the published module path ``medseg.dataset_loader.ACDC_few_shot_cv_settings``.

The code lives in :mod:`medseg.data.splits`.
"""

from medseg.data.splits import (  # noqa: F401
    N_FOLDS,
    TEST_IDS,
    STANDARD_TRAIN_IDS,
    STANDARD_VALIDATE_IDS,
    LABELLED_POOL,
    UNLABELLED_IDS,
    BASE_VALIDATE_IDS,
    FOLD_VALIDATE_IDS,
    ONE_SHOT_TRAIN_IDS,
    ONE_SHOT_EXTRA_VALIDATE_IDS,
    THREE_SHOT_TRAIN_IDS,
    SHOT_IDENTIFIERS,
    seeded_subset,
    canonical_data_setting,
    get_ACDC_split_policy,
    train_validate_overlap,
)

__all__ = [
    "N_FOLDS",
    "TEST_IDS",
    "STANDARD_TRAIN_IDS",
    "STANDARD_VALIDATE_IDS",
    "LABELLED_POOL",
    "UNLABELLED_IDS",
    "BASE_VALIDATE_IDS",
    "FOLD_VALIDATE_IDS",
    "ONE_SHOT_TRAIN_IDS",
    "ONE_SHOT_EXTRA_VALIDATE_IDS",
    "THREE_SHOT_TRAIN_IDS",
    "SHOT_IDENTIFIERS",
    "seeded_subset",
    "canonical_data_setting",
    "get_ACDC_split_policy",
    "train_validate_overlap",
]
