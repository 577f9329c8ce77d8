"""The reference fixtures live in the repository, so every test runs from a plain clone."""

import json
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"


def test_reference_fixtures_are_in_the_repository():
    networks = json.loads((FIXTURES / "fcn16_state_dict.json").read_text())
    assert set(networks["modules"]) == set(networks["module_names_in_checkpoint_files"])
    assert len(networks["modules"]) == 5
    assert all(networks["modules"][name]["state_dict"] for name in networks["modules"])
    splits = json.loads((FIXTURES / "acdc_splits.json").read_text())
    assert {"standard", "one_shot", "three_shot", "10", "40"} <= set(splits)
    assert all(set(folds) == {"0", "1", "2", "3", "4"} for folds in splits.values())


def test_no_test_reads_files_outside_the_repository():
    outside = re.compile(r"""["'](?:\.\./|/work/|/home/)|["']shared["']""")
    offenders = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in TESTS.rglob("*.py")
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line)
    ]
    assert not offenders, offenders
