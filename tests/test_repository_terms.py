"""Comments, docstrings and messages speak in the repository's own terms.

A reader of the repository has only the repository: a comment that points to a section of an outside document
("spec e.3", "fix j.19", "(c.5)", "QUIRK j.11") or to an issue number ("issue 10") tells them nothing. Such places
say what the code does and why instead (e.g. "the published plot swapped Input and GT; we do not"). This test scans
the package, scripts, tests, docs and top-level text files and names every ``file:line`` that still does it.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Folders scanned recursively, and single files, relative to the repository root.
FOLDERS = ("medseg", "scripts", "tests", "visualization", "config", "docs", "benchmarks", ".ci")
FILES = ("README.md", "setup.py", "pyproject.toml")
SUFFIXES = {".py", ".md", ".txt", ".json", ".toml", ".cfg", ".ipynb", ".sh", ""}

#: One alternative per way an outside document was cited.
FORBIDDEN = re.compile(
    r"\b[Ss]pec(s|\.)? ?(§ ?)?[a-k]\b"  # "spec e.3", "spec k", "Spec § c"
    r"|\b[Ss]pec(ification)? (section|§)"  # "spec section ...", "specification § ..."
    r"|§ ?[a-k]\b"  # "§ g.1"
    r"|\b[a-k]\.[0-9]+\b"  # bare section numbers: "(c.5)", "j.19", "g.2/g.3"
    r"|QUIRK"
    r"|\bMETHOD_SPEC\b"
    r"|\b[Ii]ssues? #?[0-9]+"  # "issue 10", "issues 3"
    r"|\b[Ss]ection [a-k]\b"  # "section c"
    r"|\b(per|in|from) the (issue|brief)\b"
)


def _scanned_files() -> list[Path]:
    files = [REPO_ROOT / name for name in FILES if (REPO_ROOT / name).is_file()]
    for folder in FOLDERS:
        root = REPO_ROOT / folder
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES]
    this = Path(__file__).resolve()
    return sorted(p for p in files if p.resolve() != this and "__pycache__" not in p.parts)


def find_outside_references(files: list[Path]) -> list[str]:
    """``'<file>:<line>: <text>'`` for every line of ``files`` that cites an outside document."""
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary file without a telling suffix
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}")
    return hits


def test_pattern_catches_the_known_forms():
    for text in ("(spec e.3)", "fix j.19", "(c.5)", "QUIRK j.11", "issue 10", "see METHOD_SPEC", "spec k names",
                 "spec § g", "g.2/g.3", "section c of it", "as per the issue"):
        assert FORBIDDEN.search(text), text
    for text in ("for spec in plan.specs:", "spec.method", "e.g. the crop", "i.e. one pass", "version 0.4.1",
                 "torch 2.1", "an issue with the file", "the specification of a corruption"):
        assert not FORBIDDEN.search(text), text


def test_no_references_to_outside_documents():
    files = _scanned_files()
    assert len(files) > 100  # the scan really covers the repository
    hits = find_outside_references(files)
    assert not hits, ("say what and why in the repository's own terms instead of citing an outside document "
                      "(spec section, bug number, issue number):\n" + "\n".join(hits))
