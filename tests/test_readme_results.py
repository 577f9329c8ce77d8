"""The README's Results section says what docs/RESULTS.md says.

docs/RESULTS.md is written by the experiment runner; the README quotes it by hand. These checks catch a README left
behind when the report is regenerated: every table the Results section shows stands, header and rows, in the report;
every p-value it quotes is one of the report's rounded; its verdict word is the report's headline verdict.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medseg.experiments.trend import LENGTH_WORDS

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
RESULTS = REPO_ROOT / "docs" / "RESULTS.md"

#: The headline verdicts of the report (``run_stats.verdict``), lower case.
VERDICTS = ("not decided", "reproduced", "contradicted")


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def _tables(text: str) -> list[list[str]]:
    """Markdown tables as lists of their lines (header, separator, rows)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def _numbers(pattern: str, text: str) -> list[str]:
    return re.findall(pattern, text.replace("−", "-"))


def _p_columns(text: str) -> list[float]:
    """The values of every table column headed ``p`` or ``... p`` (the run-level test tables)."""
    values = []
    for table in _tables(text):
        header = [cell.strip() for cell in table[0].strip("|").split("|")]
        columns = [i for i, cell in enumerate(header) if cell == "p" or cell.endswith(" p")]
        for row in table[2:]:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            values += [float(cells[i]) for i in columns if i < len(cells) and re.fullmatch(r"[0-9.]+(e-?[0-9]+)?",
                                                                                          cells[i])]
    return values


@pytest.fixture(scope="module")
def texts() -> tuple[str, str]:
    if not RESULTS.is_file():
        pytest.skip("docs/RESULTS.md is not in this checkout")
    return _section(README.read_text(encoding="utf-8"), "Results"), RESULTS.read_text(encoding="utf-8")


def test_tables_of_the_results_section_stand_in_the_report(texts) -> None:
    readme, report = texts
    report_lines = [line.strip() for line in report.splitlines()]
    tables = _tables(readme)
    assert tables, "the README's Results section shows no table of the report"
    for table in tables:
        starts = [i for i, line in enumerate(report_lines) if line == table[0]]
        assert any(report_lines[i:i + len(table)] == table for i in starts), (
            f"README.md Results: the table headed {table[0]!r} is not in docs/RESULTS.md as it stands there "
            "(regenerated report, README not updated?)")


def test_p_values_quoted_by_the_readme_are_the_reports(texts) -> None:
    readme, report = texts
    report_p = [float(p) for p in _numbers(r"\bp = ([0-9.]+(?:e-?[0-9]+)?)", report)] + _p_columns(report)
    quoted = _numbers(r"\bp = ([0-9.]+(?:e-?[0-9]+)?)", readme)
    assert quoted, "the README's Results section quotes no p-value"
    for text in quoted:
        value = float(text)
        if "e" in text:  # scientific: the same mantissa digits
            digits = len(text.split("e")[0].split(".")[-1]) if "." in text else 0
            ok = any(f"{p:.{digits}e}" == f"{value:.{digits}e}" for p in report_p)
        else:
            digits = len(text.split(".")[-1])
            # the report prints three digits; a README rounding 0.595 to 0.60 is right, so half a unit plus slack
            ok = any(abs(p - value) <= 0.5 * 10**-digits + 1e-9 for p in report_p)
        assert ok, f"README.md Results quotes p = {text}, which no p-value of docs/RESULTS.md rounds to"


def test_verdict_word_is_the_reports(texts) -> None:
    readme, report = texts
    headline = _section(report + "\n## end\n", "Headline").lower()
    found = [v for v in VERDICTS if f"**{v}**" in headline]
    assert len(found) == 1, f"docs/RESULTS.md Headline: expected one verdict of {VERDICTS}, found {found}"
    assert f"**{found[0]}**" in readme.lower(), (
        f"the README's Results section does not state the report's verdict **{found[0]}**")


def test_length_verdict_is_the_reports(texts) -> None:
    """A report with a training-length trend states whether the gain grows, holds or vanishes; the README says the
    same."""
    readme, report = texts
    found = [words for words in LENGTH_WORDS.values() if f"**the gain {words}**" in report.lower()]
    if not found:
        assert not any(f"gain {words}" in readme.lower() for words in LENGTH_WORDS.values()), (
            "the README states a length verdict that docs/RESULTS.md does not have")
        return
    assert len(found) == 1, f"docs/RESULTS.md states several length verdicts: {found}"
    words = found[0].split(" (")[0].split(":")[0]
    assert words in readme.lower(), f"the README's Results section does not say that the gain {words}"
