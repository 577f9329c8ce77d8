"""Which checkpoints to test: ``--methods NAME=DIR`` specifications and discovery of training runs.

A training run lives at ``save_dir/train_{dataset}_{setting}_n_cls_{n}/{config name}/{cval}/model/best/checkpoints``
(the published run layout). One *method* is one config name; its cross-validation folds are separate :class:`Run`
objects that the aggregate table averages (mean ± std over cvals).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
CHECKPOINT_SUFFIX = ("model", "best", "checkpoints")


@dataclass(frozen=True)
class Run:
    """One checkpoint folder to evaluate.

    Attributes:
        method: method name shown in the tables (the config name for discovered runs).
        checkpoint_dir: folder holding ``<module>.pth`` files.
        cval: cross-validation fold, if known.
    """

    method: str
    checkpoint_dir: Path
    cval: int | None = None

    @property
    def label(self) -> str:
        return self.method if self.cval is None else f"{self.method} (cval {self.cval})"


def cval_from_path(path: PathLike) -> int | None:
    """The fold of a run folder ``.../{cval}/model/best/checkpoints`` (or any purely numeric component), else None."""
    parts = Path(path).parts
    for k in range(len(parts) - 1, -1, -1):
        if parts[k] == "model" and k > 0 and parts[k - 1].isdigit():
            return int(parts[k - 1])
    digits = [p for p in parts if p.isdigit()]
    return int(digits[-1]) if len(digits) == 1 else None


def parse_method_specs(specs: list[str], cvals: list[int] | None = None) -> list[Run]:
    """Parse ``NAME=CHECKPOINT_DIR`` strings.

    ``CHECKPOINT_DIR`` may contain ``{cval}``, which is filled with every value of ``cvals`` (the original script's loop
    over folds); otherwise the fold is read from the path when it has the run layout.

    Raises:
        ValueError: naming the offending specification.
    """
    runs: list[Run] = []
    for spec in specs:
        name, sep, directory = spec.partition("=")
        name, directory = name.strip(), directory.strip()
        if not sep or not name or not directory:
            raise ValueError(f"--methods expects NAME=CHECKPOINT_DIR, got {spec!r}")
        if "{cval}" in directory:
            if not cvals:
                raise ValueError(f"--methods {spec!r} contains '{{cval}}' but no --cval was given")
            runs.extend(Run(name, Path(directory.replace("{cval}", str(c))), c) for c in cvals)
            continue
        cval = cval_from_path(directory)
        if cvals and cval is not None and cval not in cvals:
            logger.info("skipping %s: cval %d not in --cval %s", directory, cval, cvals)
            continue
        runs.append(Run(name, Path(directory), cval))
    check_distinct_runs(runs)
    return runs


def check_distinct_runs(runs: list[Run]) -> None:
    """Each (method, cval) once and each checkpoint folder once: the folds of a method are averaged and each run
    writes its own report folder, so a repeat would be averaged as another fold and overwrite the first's reports.

    Raises:
        ValueError: naming the repeated method/fold or folder.
    """
    seen: dict[tuple[str, int | None], Path] = {}
    folders: dict[Path, Run] = {}
    for run in runs:
        key = (run.method, run.cval)
        if key in seen:
            fold = "with no fold in its path" if run.cval is None else f"for cval {run.cval}"
            raise ValueError(f"--methods: method {run.method!r} is given twice {fold} ({seen[key]} and "
                             f"{run.checkpoint_dir}); give each run its own name")
        seen[key] = run.checkpoint_dir
        folder = run.checkpoint_dir.resolve()
        if folder in folders:
            raise ValueError(f"--methods: checkpoint folder {run.checkpoint_dir} is given twice (as "
                             f"{folders[folder].label} and {run.label}); test each model once")
        folders[folder] = run


def discover_runs(runs_dir: PathLike, cvals: list[int] | None = None) -> list[Run]:
    """Find every ``model/best/checkpoints`` folder under ``runs_dir``.

    The method name is the config-name folder (the parent of the cval folder). When the same config name appears
    under several ``train_*`` folders (e.g. two data settings) the name is prefixed with that folder.

    Raises:
        FileNotFoundError: if ``runs_dir`` does not exist or holds no run.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--runs_dir {root} does not exist or is not a folder")
    found = sorted(p for p in root.rglob("checkpoints") if p.is_dir() and p.parts[-3:] == CHECKPOINT_SUFFIX)
    entries: list[tuple[str, str, Path, int | None]] = []
    for path in found:
        rel = path.relative_to(root).parts[:-3]  # (..., train_x, config, cval)
        cval = int(rel[-1]) if rel and rel[-1].isdigit() else None
        head = rel[:-1] if cval is not None else rel
        config = head[-1] if head else root.name
        group = "/".join(head[:-1])
        if cvals and cval is not None and cval not in cvals:
            continue
        entries.append((config, group, path, cval))
    groups_per_config: dict[str, set[str]] = {}
    for config, group, _, _ in entries:
        groups_per_config.setdefault(config, set()).add(group)
    runs = []
    for config, group, path, cval in entries:
        name = config if len(groups_per_config[config]) == 1 else f"{group}/{config}"
        runs.append(Run(name, path, cval))
    if not runs:
        where = f" with cval in {cvals}" if cvals else ""
        raise FileNotFoundError(f"no run folder '.../model/best/checkpoints'{where} found under {root}")
    logger.info("discovered %d runs under %s", len(runs), root)
    return runs


def report_dir(checkpoint_dir: PathLike, dataset: str) -> Path:
    """``<checkpoint_dir with its 'checkpoints' component replaced by 'report/<dataset>'>``: each method's own folder
    (the published tester wrote every method's report into the last model's folder).

    A folder not named ``checkpoints`` gets ``report/<dataset>`` beside it.
    """
    path = Path(checkpoint_dir)
    if path.name == "checkpoints":
        return path.parent / "report" / dataset
    return path.parent / f"{path.name}_report" / dataset


def recorded_data_folders(folder: PathLike) -> set[str] | None:
    """The test-data folders the reports in ``folder`` were computed on (from their ``iter_*_info.json``).

    Returns:
        None if ``folder`` holds no file at all; an empty set if it holds reports that record no data folder (written
        by another tool); otherwise the recorded folders.
    """
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    found: set[str] = set()
    for info in folder.glob("iter_*_info.json"):
        try:
            recorded = json.loads(info.read_text()).get("data_folder")
        except (OSError, ValueError, AttributeError):
            continue
        if recorded:
            found.add(str(Path(recorded).resolve()))
    return found


def report_location(
    run: Run, dataset: str, data_root: PathLike, data_folder: PathLike, reports_root: PathLike | None = None
) -> Path:
    """Where the per-dataset reports of ``run`` go.

    * With ``reports_root`` (``medseg-test --output_dir``): ``<reports_root>/<method>/<cval>/<dataset>/`` (``<cval>``
      is ``no_cval`` for a run without a fold); nothing is written beside the checkpoints.
    * Otherwise the published place ``.../model/best/report/<dataset>/`` (:func:`report_dir`), unless that folder holds
      reports of another data folder (or reports that do not say which): then
      ``.../report/<dataset>@<data root name>-<hash of the data folder's path>/``, so a test on another data root never
      overwrites earlier reports. Re-testing on the same data folder rewrites its own reports.

    Args:
        run: the tested run.
        dataset: test-set name.
        data_root: the ``--data_root`` (names the alternative folder).
        data_folder: the folder the test set was read from (recorded in ``iter_{n}_info.json``).
        reports_root: ``--output_dir``, or None.
    """
    if reports_root is not None:
        cval = "no_cval" if run.cval is None else str(run.cval)
        return Path(reports_root) / unique_label(run.method) / cval / dataset
    published = report_dir(run.checkpoint_dir, dataset)
    mine = str(Path(data_folder).resolve())
    recorded = recorded_data_folders(published)
    if recorded is None or recorded == {mine}:
        return published
    digest = hashlib.sha1(mine.encode("utf-8")).hexdigest()[:8]
    tag = unique_label(Path(data_root).resolve().name or "data")
    alternative = published.with_name(f"{dataset}@{tag}-{digest}")
    logger.info("%s holds reports of %s; reports of %s on %s go to %s", published,
                ", ".join(sorted(recorded)) or "an unknown data folder", run.label, mine, alternative)
    return alternative


def unique_label(name: str) -> str:
    """A file-name-safe version of a method name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"
