"""What a data folder was made from: ``<folder>/provenance.json``, so derived data never silently goes stale.

Every step that turns one folder into another (raw → preprocessed ACDC / M&Ms, preprocessed ACDC → ACDC-C, and the
synthetic generator → raw) records in its output folder a ``made_from`` description: the step, its settings, and a
digest (file count, bytes, SHA-256 over relative paths and contents) of the input it read. Before writing into a folder
that already holds data, the step compares that record with what it is about to do:

* same record: the folder is up to date (subjects already complete are skipped, so an interrupted run resumes);
* different record (e.g. the raw data was regenerated with another seed): refused with a message naming both digests,
  unless the caller asked to rebuild (``--overwrite``);
* data but no record (made by an older version or by hand): refused as well, since it cannot be checked.

The record is written before processing (``"complete": false``) and again at the end: ``"complete": true`` only if
every subject was written; otherwise ``"complete": false`` with ``"failed"`` (subject → error) and/or ``"stale"``
(output folder the input does not account for → why it was kept). An incomplete record with the same ``made_from``
still matches, so the next run resumes and retries what failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
PROVENANCE_FILE = "provenance.json"
_CHUNK = 1 << 20


class ProvenanceMismatch(ValueError):
    """A folder holds data made from something else than what is being asked for (the message says what differs)."""


def digest_files(root: PathLike, files: Iterable[PathLike] | None = None) -> dict[str, Any]:
    """``{"files": n, "bytes": total, "sha256": hex}`` over ``files`` (default: every file under ``root``).

    The hash covers each file's path relative to ``root`` and its bytes, in sorted order; ``provenance.json`` files
    are left out (they describe the data, they are not the data).

    Raises:
        FileNotFoundError: if ``root`` (or a listed file) does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"cannot describe {root}: it does not exist")
    paths = sorted(Path(f) for f in files) if files is not None else sorted(p for p in root.rglob("*") if p.is_file())
    sha = hashlib.sha256()
    count = total = 0
    for path in paths:
        if path.name == PROVENANCE_FILE:
            continue
        relative = path.relative_to(root).as_posix()
        sha.update(relative.encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                sha.update(chunk)
                total += len(chunk)
        sha.update(b"\0")
        count += 1
    return {"files": count, "bytes": total, "sha256": sha.hexdigest()}


def made_from(step: str, input_dir: PathLike, settings: Mapping[str, Any] | None = None,
              files: Iterable[PathLike] | None = None) -> dict[str, Any]:
    """The description a step records: its name, settings and the digest of its input."""
    return {"step": step, "settings": dict(settings or {}), "input": digest_files(input_dir, files)}


def read_record(folder: PathLike) -> dict[str, Any] | None:
    """The ``provenance.json`` of ``folder``, or None if there is none.

    Raises:
        ValueError: naming the file if it exists but is not a provenance record.
    """
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable provenance record ({err}); delete it and rebuild {folder}") from err
    if not isinstance(record, dict) or "made_from" not in record:
        raise ValueError(f"{path}: expected a JSON object with a 'made_from' key; delete it and rebuild {folder}")
    return record


def write_record(folder: PathLike, description: Mapping[str, Any], complete: bool, source: PathLike,
                 output: Mapping[str, Any] | None = None, failed: Mapping[str, str] | None = None,
                 stale: Mapping[str, str] | None = None, verified: bool = False) -> Path:
    """Atomically write ``folder/provenance.json``.

    Args:
        output: optional digest of what was written, for checking later that nobody changed it.
        failed: subjects that could not be written (subject → error message), recorded as ``"failed"``.
        stale: output folders the input does not account for and that were kept (name → why), as ``"stale"``.
        verified: every output file was read back whole after it was written (recorded as ``"verified": true``).
    """
    path = Path(folder) / PROVENANCE_FILE
    record = {
        "made_from": dict(description),
        "source": str(source),
        "complete": complete,
        "medseg_version": __version__,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if output is not None:
        record["output"] = dict(output)
    if failed:
        record["failed"] = dict(failed)
    if stale:
        record["stale"] = dict(stale)
    if verified:
        record["verified"] = True
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def holds_data(folder: PathLike) -> bool:
    """True if ``folder`` exists and contains anything besides its provenance record."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name != PROVENANCE_FILE for p in folder.iterdir())


def status(folder: PathLike, description: Mapping[str, Any]) -> str:
    """``"empty"``, ``"match"``, ``"mismatch"`` (recorded something else) or ``"unrecorded"`` (data, no record)."""
    record = read_record(folder)
    if record is None:
        return "unrecorded" if holds_data(folder) else "empty"
    return "match" if record["made_from"] == dict(description) else "mismatch"


def _differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    parts = []
    for key in sorted(set(recorded) | set(wanted)):
        if recorded.get(key) != wanted.get(key):
            parts.append(f"{key}: recorded {recorded.get(key)}, now {wanted.get(key)}")
    return "; ".join(parts)


def guard(folder: PathLike, description: Mapping[str, Any], source: PathLike, overwrite: bool = False) -> str:
    """Check ``folder`` before a step writes ``description``'s output into it, then record the step as started.

    Args:
        folder: the output folder.
        description: :func:`made_from` of the step about to run.
        source: the input folder (recorded for the reader; not compared, the digest is).
        overwrite: the caller rebuilds every subject (``--overwrite``): a different or missing record is accepted.

    Returns:
        The status found (see :func:`status`).

    Raises:
        ProvenanceMismatch: the folder holds data made from something else, or data without a record, and
            ``overwrite`` is off. The message names the folder, what differs, and how to proceed.
    """
    found = status(folder, description)
    if found == "mismatch" and not overwrite:
        recorded = read_record(folder)["made_from"]  # type: ignore[index]
        raise ProvenanceMismatch(
            f"{folder} was made from other data than {source} now holds ({_differences(recorded, description)}); "
            f"its subjects would be out of step with the input. Rebuild it with --overwrite (or delete {folder}), "
            "or write to another output folder"
        )
    if found == "unrecorded" and not overwrite:
        raise ProvenanceMismatch(
            f"{folder} already holds data but no {PROVENANCE_FILE}, so it cannot be checked against {source} "
            f"(made by an older version or by hand). Rebuild it with --overwrite (or delete {folder}), or write to "
            "another output folder"
        )
    if found in ("mismatch", "unrecorded"):
        logger.warning("%s: %s record; rebuilding every subject from %s", folder, found, source)
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_record(folder, description, complete=False, source=source)
    return found


def finish(folder: PathLike, description: Mapping[str, Any], source: PathLike,
           failed: Mapping[str, str] | None = None, stale: Mapping[str, str] | None = None) -> Path:
    """Record the end of the step: complete if nothing ``failed`` and no ``stale`` output was kept, else incomplete
    with the failed subjects and stale folders listed (see :func:`write_record`)."""
    problems = bool(failed) or bool(stale)
    if problems:
        logger.info("%s: recorded as incomplete (%d failed subject(s), %d stale output folder(s))", folder,
                       len(failed or {}), len(stale or {}))
    return write_record(folder, description, complete=not problems, source=source, failed=failed, stale=stale)
