"""Published ACDC train/validate/test splits for every data setting and cross-validation fold.

``get_ACDC_split_policy(identifier, cval)`` returns the subject lists used in the paper. The random few-shot
subsets reproduce ``sklearn.model_selection.train_test_split(pool, train_size=n, random_state=cval)`` through its
closed form, so scikit-learn is not needed: ``perm = RandomState(cval).permutation(40)`` and the training subjects
are ``pool[perm[40 - n:]]`` in that order (ShuffleSplit takes the first ``40 - n`` permuted indices as the test part).

Some published splits put a subject in both ``train`` and ``validate`` (e.g. ``"10"``/cval 1: 002 and 022). This is
a property of the original split and is kept for comparability with the paper; :func:`train_validate_overlap` lists it
and :func:`get_ACDC_split_policy` logs a warning whenever such a split is requested.
"""

from __future__ import annotations

import logging

import numpy as np

from medseg.utils.cli import UnsupportedInput

logger = logging.getLogger(__name__)

N_FOLDS = 5


def _ids(text: str) -> list[str]:
    return text.split()


TEST_IDS: list[str] = _ids("007 008 009 010 027 028 029 030 047 048 049 050 067 068 069 070 087 088 089 090")

STANDARD_TRAIN_IDS: list[str] = _ids(
    "001 002 003 004 006 011 012 013 014 015 016 017 018 019 021 022 024 025 026 031 032 033 034 035 036 038 039 040 "
    "041 043 044 045 051 052 053 054 055 056 057 058 059 060 061 062 063 064 065 071 072 073 074 075 076 077 079 080 "
    "081 083 084 085 086 091 092 093 094 095 096 098 099 100"
)
STANDARD_VALIDATE_IDS: list[str] = _ids("005 020 023 037 042 046 066 078 082 097")

# Labelled pool of the few-shot settings, in the original order (the order matters for the seeded subsets).
LABELLED_POOL: list[str] = _ids(
    "001 002 003 004 005 006 012 013 021 022 023 024 025 026 032 033 041 042 043 044 045 046 052 053 061 062 063 064 "
    "065 066 072 073 081 082 083 084 085 086 092 093"
)
UNLABELLED_IDS: list[str] = [f"{base + k:03d}" for base in (16, 36, 56, 76, 96) for k in range(5)]

BASE_VALIDATE_IDS: list[str] = ["011", "071"]
FOLD_VALIDATE_IDS: dict[int, list[str]] = {
    0: _ids("062 095 082"),
    1: _ids("002 022 095"),
    2: _ids("002 062 095"),
    3: _ids("022 062 095"),
    4: _ids("022 062 082"),
}
ONE_SHOT_TRAIN_IDS: dict[int, list[str]] = {0: ["002"], 1: ["042"], 2: ["022"], 3: ["062"], 4: ["095"]}
ONE_SHOT_EXTRA_VALIDATE_IDS: dict[int, list[str]] = {
    0: ["042", "022"],
    1: ["062"],
    2: ["042"],
    3: ["002", "042"],
    4: ["002", "042"],
}
THREE_SHOT_TRAIN_IDS: dict[int, list[str]] = {
    0: _ids("002 022 042"),
    1: _ids("042 062 082"),
    2: _ids("022 042 082"),
    3: _ids("002 042 082"),
    4: _ids("002 042 095"),
}
SHOT_IDENTIFIERS: tuple[str, ...] = (
    "one_shot",
    "one_shot_upperbound",
    "three_shot",
    "three_shot_upperbound",
    "25_shot_upperbound",
)


def seeded_subset(pool: list[str], n_train: int, seed: int) -> list[str]:
    """``train_test_split(pool, train_size=n_train, random_state=seed)[0]`` in closed form.

    Args:
        pool: subjects to draw from (order matters).
        n_train: number of training subjects, ``1 <= n_train <= len(pool)``.
        seed: the ``random_state`` (the cval fold in the published splits).

    Returns:
        The ``n_train`` selected subjects in sklearn's order (the whole pool, in order, when
        ``n_train == len(pool)``).
    """
    n = len(pool)
    if not 1 <= n_train <= n:
        raise ValueError(f"n_train must be in [1, {n}], got {n_train}")
    if n_train == n:
        return list(pool)
    perm = np.random.RandomState(seed).permutation(n)
    return [pool[i] for i in perm[n - n_train :]]


def _few_shot_validate(cval: int) -> list[str]:
    return BASE_VALIDATE_IDS + FOLD_VALIDATE_IDS[cval]


def _parse_numeric(identifier: str) -> tuple[int, str]:
    """Number of training subjects and display name of a numeric identifier (``"10"``, ``"0.25"``).

    The display name is the canonical spelling (``"010"`` and ``"10.0"`` are ``"10"``). A count of at least 1 must be
    a whole number: ``"2.5"`` would silently train 2 subjects under the name ``2.5``.
    """
    try:
        value = float(identifier)
    except ValueError as err:
        raise ValueError(
            f"unsupported data_setting {identifier!r}: expected 'standard', a number of labelled subjects "
            f"('1'..'40'), a fraction in (0, 1), or one of {list(SHOT_IDENTIFIERS)}"
        ) from err
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"unsupported data_setting {identifier!r}: the number of subjects must be positive")
    if value < 1:
        n_train = int(np.floor(value * len(LABELLED_POOL)))
        if n_train < 1:
            raise ValueError(f"data_setting {identifier!r} selects no subject from the pool of {len(LABELLED_POOL)}")
        return n_train, repr(value)
    if value != int(value):
        raise ValueError(f"unsupported data_setting {identifier!r}: expected a whole number of labelled subjects "
                         f"('1'..'{len(LABELLED_POOL)}') or a fraction in (0, 1)")
    n_train = int(value)
    if n_train > len(LABELLED_POOL):
        raise UnsupportedInput(
            f"data_setting {identifier!r}: at most {len(LABELLED_POOL)} labelled subjects are available"
        )
    return n_train, str(n_train)


def _check_shot_identifier(identifier: str) -> None:
    if identifier not in SHOT_IDENTIFIERS:
        raise UnsupportedInput(f"unsupported data_setting {identifier!r}; shot settings: {list(SHOT_IDENTIFIERS)}")


def canonical_data_setting(identifier: str) -> str:
    """The canonical spelling of a data setting, which names the run folder: numbers as :func:`get_ACDC_split_policy`
    prints them (``"010"`` and ``"10.0"`` are ``"10"``, ``".25"`` is ``"0.25"``); other names unchanged.

    Raises:
        ValueError: for an identifier that :func:`get_ACDC_split_policy` refuses (``UnsupportedInput``, also a
            ``NotImplementedError``, where it raises that).
    """
    identifier = str(identifier)
    if identifier == "standard":
        return identifier
    if "shot" in identifier:
        _check_shot_identifier(identifier)
        return identifier
    return _parse_numeric(identifier)[1]


def get_ACDC_split_policy(identifier: str, cval: int) -> dict[str, list[str] | str]:  # noqa: N802 (published name)
    """Subject lists of the ACDC split ``identifier`` for cross-validation fold ``cval``.

    Args:
        identifier: ``'standard'``; a number of labelled subjects ``'1'`` … ``'40'`` or a fraction ``'0.25'``;
            ``'one_shot'``, ``'three_shot'``, their ``'_upperbound'`` variants, or ``'25_shot_upperbound'``.
        cval: fold index, 0 … 4 (ignored by ``'standard'`` but still validated).

    Returns:
        ``{'train', 'validate', 'test', 'unlabelled', 'test+unlabelled': list[str], 'name': str}``.

    Raises:
        ValueError: for a ``cval`` outside 0 … 4, an unparsable identifier or a count that is not a whole number.
        UnsupportedInput: (a ``NotImplementedError`` and a ``ValueError``) for more than 40 subjects or an unknown
            ``*shot*`` identifier.
    """
    identifier = str(identifier)
    if isinstance(cval, bool) or not isinstance(cval, (int, np.integer)) or not 0 <= int(cval) < N_FOLDS:
        raise ValueError(f"cval must be an integer in [0, {N_FOLDS - 1}], got {cval!r}")
    cval = int(cval)
    unlabelled: list[str] = []
    name = f"{identifier}_cv_{cval}"
    if identifier == "standard":
        train, validate = list(STANDARD_TRAIN_IDS), list(STANDARD_VALIDATE_IDS)
    elif "shot" in identifier:
        _check_shot_identifier(identifier)
        unlabelled = list(UNLABELLED_IDS)
        validate = _few_shot_validate(cval)
        if identifier in ("one_shot", "one_shot_upperbound"):
            train = list(ONE_SHOT_TRAIN_IDS[cval])
            validate = validate + [i for i in ONE_SHOT_EXTRA_VALIDATE_IDS[cval] if i not in validate]
        elif identifier in ("three_shot", "three_shot_upperbound"):
            train = list(THREE_SHOT_TRAIN_IDS[cval])
        else:  # "25_shot_upperbound"
            train = seeded_subset(LABELLED_POOL, 25, cval)
        if identifier.endswith("_upperbound"):
            train = train + list(UNLABELLED_IDS)
    else:
        n_train, display = _parse_numeric(identifier)
        unlabelled = list(UNLABELLED_IDS)
        validate = _few_shot_validate(cval)
        train = seeded_subset(LABELLED_POOL, n_train, cval)
        name = f"{display}_cv_{cval}"
    overlap = sorted(set(train) & set(validate))
    if overlap:
        logger.warning(
            "ACDC split %s: subjects %s are in both train and validate (published split, kept for comparability)",
            name,
            overlap,
        )
    return {
        "train": train,
        "validate": validate,
        "test": list(TEST_IDS),
        "unlabelled": unlabelled,
        "test+unlabelled": list(TEST_IDS) + unlabelled,
        "name": name,
    }


def train_validate_overlap(identifier: str, cval: int) -> list[str]:
    """Subjects that the published split ``identifier``/``cval`` puts in both train and validate."""
    split = get_ACDC_split_policy(identifier, cval)
    return sorted(set(split["train"]) & set(split["validate"]))
