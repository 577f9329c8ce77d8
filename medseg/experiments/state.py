"""What an experiment folder remembers: its identity, which tasks finished, and a log of what each call did.

* ``experiment.json``: the identity (budget, data root and data fingerprint) fixed by the first call, and every
  invocation (command line, commit, time). A later call with another identity is refused with the differences.
* ``state/<task>.json``: the completion marker of one training or test task (written last, atomically), with what
  it depended on (config or checkpoint hash), the commit and the seconds it took. A task with a marker is never redone.
* ``log/tasks.jsonl``: one line per task and call (``started``, ``ran``, ``skipped``; appended), so a reader (and the
  tests) can see what ran.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
MANIFEST = "experiment.json"


class ExperimentMismatch(ValueError):
    """The output folder belongs to an experiment with another budget, data root or data."""


def now() -> str:
    """Local time, ISO format, seconds."""
    return dt.datetime.now().isoformat(timespec="seconds")


def code_version(repo: PathLike) -> str:
    """``git describe``-like commit of ``repo`` (``<sha>`` or ``<sha>+dirty``), ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def hash_files(paths: list[Path]) -> str:
    """SHA-256 over the names and contents of ``paths`` (sorted by name)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to let the experiment redo that step") from err


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        diffs: list[str] = []
        for key in sorted(set(saved) | set(current)):
            diffs += _differences(saved.get(key), current.get(key), f"{prefix}.{key}" if prefix else key)
        return diffs
    return [] if saved == current else [f"{prefix}: {saved!r} in the folder, {current!r} now"]


class ExperimentState:
    """The bookkeeping files of one experiment folder."""

    def __init__(self, out_dir: PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.manifest_path = self.out_dir / MANIFEST
        self.state_dir = self.out_dir / "state"
        self.log_path = self.out_dir / "log" / "tasks.jsonl"

    def open(self, identity: dict[str, Any], invocation: dict[str, Any]) -> dict[str, Any]:
        """Create the manifest, or check ``identity`` against the existing one and record this invocation.

        Raises:
            ExperimentMismatch: listing every difference, if the folder holds another experiment.
        """
        identity = json.loads(json.dumps(identity))  # tuples -> lists, as stored
        if self.manifest_path.is_file():
            manifest = _read_json(self.manifest_path)
            diffs = _differences(manifest.get("identity", {}), identity)
            if diffs:
                raise ExperimentMismatch(
                    f"{self.out_dir} holds an experiment with another budget or data; differences: "
                    + "; ".join(diffs)
                    + f". Use another --out, or delete {self.out_dir} to start this one afresh."
                )
        else:
            manifest = {"identity": identity, "created": now(), "invocations": []}
        manifest["invocations"].append(invocation)
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2) + "\n")
        return manifest

    def manifest(self) -> dict[str, Any]:
        return _read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def marker_path(self, task_id: str) -> Path:
        return self.state_dir / f"{task_id}.json"

    def marker(self, task_id: str) -> dict[str, Any] | None:
        """The completion record of a task, or None if it has not finished."""
        path = self.marker_path(task_id)
        return _read_json(path) if path.is_file() else None

    def mark_done(self, task_id: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.marker_path(task_id), json.dumps({"task": task_id, **record}, indent=2) + "\n")

    def clear(self, task_id: str) -> None:
        """Forget a task's completion (its inputs changed)."""
        self.marker_path(task_id).unlink(missing_ok=True)

    def log(self, task_id: str, action: str, **extra: Any) -> None:
        """Append ``{time, task, action, ...}`` to ``log/tasks.jsonl`` (one ``write`` of a whole line in append mode,
        so task processes running side by side do not lose or interleave lines)."""
        line = json.dumps({"time": now(), "task": task_id, "action": action, **extra}) + "\n"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def log_entries(self) -> list[dict[str, Any]]:
        if not self.log_path.is_file():
            return []
        entries = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: the markers, not the log, decide what is done
                logger.warning("%s: skipping an unreadable line", self.log_path)
        return entries
