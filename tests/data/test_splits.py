"""Published ACDC splits: fixture equality for every identifier × cval, fractions, bad identifiers."""

import json
import logging
from pathlib import Path

import pytest

from medseg.data.splits import (
    LABELLED_POOL,
    TEST_IDS,
    UNLABELLED_IDS,
    canonical_data_setting,
    get_ACDC_split_policy,
    train_validate_overlap,
)
from medseg.utils.cli import UnsupportedInput

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "acdc_splits.json"  # the published lists (tests/fixtures)


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_every_identifier_and_cval_matches_fixture():
    reference = _fixture()
    assert len(reference) == 46
    for identifier, folds in reference.items():
        for cval, expected in folds.items():
            split = get_ACDC_split_policy(identifier, int(cval))
            for key in ("train", "validate", "test"):
                assert split[key] == expected[key], (identifier, cval, key)


def test_paper_setting_10_cval0():
    split = get_ACDC_split_policy("10", 0)
    assert split["train"] == "073 061 012 053 046 044 022 092 004 001".split()
    assert split["validate"] == "011 071 062 095 082".split()
    assert split["test"] == TEST_IDS
    assert split["unlabelled"] == UNLABELLED_IDS and len(UNLABELLED_IDS) == 25
    assert split["test+unlabelled"] == TEST_IDS + UNLABELLED_IDS
    assert split["name"] == "10_cv_0"


@pytest.mark.parametrize("fraction,number", [("0.25", "10"), ("0.5", "20"), ("0.1", "4"), ("0.7", "28")])
@pytest.mark.parametrize("cval", range(5))
def test_fraction_equals_floor_count(fraction, number, cval):
    assert get_ACDC_split_policy(fraction, cval)["train"] == get_ACDC_split_policy(number, cval)["train"]


def test_whole_pool_and_standard():
    assert get_ACDC_split_policy("40", 3)["train"] == LABELLED_POOL
    standard = get_ACDC_split_policy("standard", 2)
    assert len(standard["train"]) == 70 and len(standard["validate"]) == 10 and standard["unlabelled"] == []


def test_upperbound_appends_unlabelled():
    assert get_ACDC_split_policy("three_shot_upperbound", 1)["train"] == ["042", "062", "082"] + UNLABELLED_IDS
    assert len(get_ACDC_split_policy("25_shot_upperbound", 0)["train"]) == 50


def test_overlap_is_kept_and_logged(caplog):
    with caplog.at_level(logging.WARNING):
        split = get_ACDC_split_policy("10", 1)
    assert {"002", "022"} <= set(split["train"]) & set(split["validate"])
    assert "002" in caplog.text and "both train and validate" in caplog.text
    assert train_validate_overlap("one_shot", 3) == ["062"]
    assert train_validate_overlap("standard", 0) == []


@pytest.mark.parametrize("cval", [-1, 5, 1.5, "0", True])
def test_bad_cval(cval):
    with pytest.raises(ValueError, match="cval"):
        get_ACDC_split_policy("10", cval)


@pytest.mark.parametrize("identifier", ["ten", "", "0", "-3", "nan"])
def test_bad_identifier_value_error(identifier):
    with pytest.raises(ValueError, match="data_setting"):
        get_ACDC_split_policy(identifier, 0)


@pytest.mark.parametrize("identifier", ["41", "100", "five_shot"])
def test_unsupported_identifier(identifier):
    with pytest.raises(NotImplementedError, match="data_setting"):
        get_ACDC_split_policy(identifier, 0)


@pytest.mark.parametrize("identifier", ["41", "five_shot"])
def test_unsupported_identifier_is_a_user_error(identifier):
    """Still the published NotImplementedError, and a ValueError so that the tools report it as bad input."""
    with pytest.raises(UnsupportedInput) as info:
        get_ACDC_split_policy(identifier, 0)
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("identifier", ["2.5", "10.5", "39.99"])
def test_count_that_is_not_a_whole_number_is_refused(identifier):
    with pytest.raises(ValueError, match=f"data_setting '{identifier}': expected a whole number"):
        get_ACDC_split_policy(identifier, 0)


@pytest.mark.parametrize(("identifier", "canonical"), [
    ("10", "10"), ("010", "10"), ("10.0", "10"), (" 10", "10"), ("1e1", "10"), ("0.25", "0.25"), (".25", "0.25"),
    ("standard", "standard"), ("one_shot", "one_shot"), ("25_shot_upperbound", "25_shot_upperbound"),
])
def test_canonical_data_setting(identifier, canonical):
    assert canonical_data_setting(identifier) == canonical
    if canonical not in ("standard",) and "shot" not in canonical:  # the same subjects under the canonical name
        assert get_ACDC_split_policy(identifier, 2)["train"] == get_ACDC_split_policy(canonical, 2)["train"]
        assert get_ACDC_split_policy(identifier, 2)["name"] == f"{canonical}_cv_2"


@pytest.mark.parametrize(("identifier", "error"), [
    ("41", UnsupportedInput), ("four_shot", UnsupportedInput), ("2.5", ValueError), ("ten", ValueError),
    ("0", ValueError), ("x/y", ValueError),
])
def test_canonical_data_setting_refuses_what_the_splits_refuse(identifier, error):
    with pytest.raises(error, match="data_setting"):
        canonical_data_setting(identifier)
