"""The experiment's request and its resolved plan: what one call asks for, the run specs, the folders it uses.

Shared by the runner (:mod:`medseg.experiments.runner`), the report writer (:mod:`medseg.experiments.outputs`) and the
training-length trend (:mod:`medseg.experiments.trend`); none of them imports another for these names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.experiments import data as exp_data
from medseg.experiments.budgets import Budget
from medseg.experiments.tasks import RunOptions, RunSpec

ProgressFactory = Callable[..., Any]  # (description, total, initial=0) -> bar with update() and close()


@dataclass
class ExperimentRequest:
    """Everything one call of the experiment needs.

    Attributes:
        budget: the budget (same for both methods).
        data_root: preprocessed layout with ``ACDC/``, ``ACDC-C/``, ``MM/``.
        out_dir: experiment folder.
        config_dir: folder of the method configs (``config/``).
        repo_root: the code's repository (for the commit).
        options: device, loader workers, test chunk size, progress bars.
        max_tasks: stop after this many tasks actually ran (None = all); the next call continues.
        results_md: also write the report here (figures copied to ``<stem>_figures/``, tables to ``<stem>_data/``).
        argv: the command line, recorded in ``experiment.json``.
        progress: progress-bar factory (entry points only).
        jobs: tasks run at once, each in its own process (1: in this process, in order; see
            :mod:`medseg.experiments.parallel`).
        threads: torch threads of each task process when ``jobs`` > 1 (None: the cores shared out).
        bf16_decision: a bf16 decision record (``benchmarks/bf16_decision.py --json``) shown as a report section
            (None: no such section).
    """

    budget: Budget
    data_root: Path
    out_dir: Path
    config_dir: Path
    repo_root: Path
    options: RunOptions = field(default_factory=RunOptions)
    max_tasks: int | None = None
    results_md: Path | None = None
    argv: list[str] = field(default_factory=list)
    progress: ProgressFactory | None = None
    jobs: int = 1
    threads: int | None = None
    bf16_decision: Path | None = None


@dataclass
class Plan:
    """The resolved experiment: run specs, folders, the data that is read."""

    specs: list[RunSpec]
    data_root: Path
    save_dir: Path
    notes: list[str]
    acdc_ids: list[str]
    files: list[Path]

    def pairs(self) -> list[tuple[int, int]]:
        return list(dict.fromkeys((s.cval, s.seed) for s in self.specs))


def config_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"method config {path} not found (budget key 'methods' is relative to config/)")
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def make_plan(request: ExperimentRequest) -> Plan:
    """Check the data and list the run specs (validates everything before any work starts)."""
    budget = request.budget
    acdc_ids = exp_data.acdc_subjects(budget.data_setting, [c for c, _ in budget.runs])
    cvals = [c for c, _ in budget.runs]
    notes = exp_data.check_layout(request.data_root, budget.datasets, acdc_ids)
    notes += exp_data.split_notes(budget.data_setting, cvals)
    files = exp_data.source_files(request.data_root, budget.datasets, acdc_ids)
    specs = [RunSpec(method, request.config_dir / config, cval, seed)
             for cval, seed in budget.runs for method, config in budget.methods.items()]
    data_root = request.data_root
    if budget.resamples:
        data_root = request.out_dir / f"data_{budget.spacing_mm:g}mm"
    return Plan(specs, data_root, request.out_dir / "runs", notes, acdc_ids, files)


def test_dir(out_dir: Path, spec: RunSpec, n_iter: int) -> Path:
    return out_dir / "tests" / spec.method / f"cval{spec.cval}_seed{spec.seed}" / f"iter_{n_iter}"
