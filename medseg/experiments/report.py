"""``RESULTS.md`` of the robustness experiment: setup, headline, tables, statistics, curves, commands, warnings."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.evaluation.aggregate import format_table, main_columns
from medseg.experiments.budgets import Budget

IN_DOMAIN_TOLERANCE = 0.01  # "in-domain accuracy holds": within 1 Dice point


@dataclass
class IterResults:
    """Tables of one ``n_iter``."""

    table: pd.DataFrame
    vendors: pd.DataFrame
    wilcoxon: pd.DataFrame
    relative: pd.DataFrame
    per_run: pd.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
    cvals: list[int] = field(default_factory=list)  # the finished runs (both methods tested) the tables cover


@dataclass
class ReportInputs:
    """Everything the report shows."""

    budget: Budget
    complete: bool
    finished_tasks: int
    total_tasks: int
    per_iter: dict[int, IterResults]
    plateau: pd.DataFrame
    curve_figures: list[tuple[str, Path]]
    seconds: dict[str, float]
    commits: list[str]
    invocations: list[dict[str, Any]]
    data_root: str
    prepared_root: str
    fingerprint: str
    train_command: str
    test_command: str
    files: list[Path]
    notes: list[str]
    # dotted config keys whose resolved values differ between the two methods (the name aside)
    method_difference: tuple[str, ...] = ("learning.latent_DA",)

    @property
    def is_paper_comparison(self) -> bool:
        """Standard vs cooperative training: the two configs differ in ``learning.latent_DA`` alone."""
        return tuple(self.method_difference) == ("learning.latent_DA",)


def _keys(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{k}`" for k in keys) if keys else "nothing but their names"


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def runs_phrase(cvals: Sequence[int], total: int) -> str:
    """``"3 of 3 runs (cvals 0, 1, 2)"``: which finished runs a table covers."""
    listed = ", ".join(str(c) for c in cvals)
    return f"{len(cvals)} of {total} run{'s' if total != 1 else ''} (cval{'s' if len(cvals) != 1 else ''} {listed})"


def spread_phrase(n_runs: int) -> str:
    """How the cells of a table over ``n_runs`` runs read."""
    return "mean ± population std over the runs" if n_runs > 1 else "one run, so no std"


def _mean_std(mean: float, std: float, n_runs: int) -> str:
    return f"{_num(mean)} ± {_num(std)}" if n_runs > 1 else _num(mean)


def _value(table: pd.DataFrame, method: str, column: str) -> tuple[float, float]:
    rows = table[table["method"] == method]
    if rows.empty or column not in table.columns:
        return math.nan, math.nan
    return float(rows.iloc[0][column]), float(rows.iloc[0].get(f"{column}_std", math.nan))


def headline(inputs: ReportInputs, baseline: str, method: str) -> list[str]:
    """Bullet points with the paper's claim checked on the n_iter = 2 (else the largest) results."""
    if not inputs.per_iter:
        return ["No test has finished yet."]
    n_iter = 2 if 2 in inputs.per_iter else max(inputs.per_iter)
    res = inputs.per_iter[n_iter]
    n_runs = len(res.cvals)
    lines = [f"Test setting n_iter = {n_iter}; {runs_phrase(res.cvals, len(inputs.budget.runs))} finished; "
             f"{spread_phrase(n_runs)}:", ""]
    for column in ("ACDC", "avg_all", "avg_ood"):
        (b, bs), (m, ms) = _value(res.table, baseline, column), _value(res.table, method, column)
        rel = res.relative[res.relative["column"] == column]
        rel_text = f"{float(rel.iloc[0]['relative_percent']):+.1f} %" if len(rel) else "n/a"
        lines.append(f"- **{column}**: {baseline} {_mean_std(b, bs, n_runs)}, {method} {_mean_std(m, ms, n_runs)} "
                     f"(difference {_num(m - b)}, relative {rel_text})")
    wil = res.wilcoxon.set_index("column") if len(res.wilcoxon) else pd.DataFrame()
    for column in ("ood", "ACDC"):
        if column in wil.index:
            lines.append(f"- Wilcoxon signed-rank over {int(wil.at[column, 'n_volumes'])} {column} volumes "
                         f"({method} − {baseline}): median difference {_num(wil.at[column, 'median_difference'])}, "
                         f"p = {_p(wil.at[column, 'p_value'])}")
    (b_in, _), (m_in, _) = _value(res.table, baseline, "ACDC"), _value(res.table, method, "ACDC")
    (b_ood, _), (m_ood, _) = _value(res.table, baseline, "avg_ood"), _value(res.table, method, "avg_ood")
    ood_better = m_ood > b_ood
    in_domain_holds = m_in >= b_in - IN_DOMAIN_TOLERANCE
    verdict = "**reproduced**" if ood_better and in_domain_holds else "**not reproduced**"
    if inputs.is_paper_comparison:
        lines += ["", f"The paper's direction ({method} > {baseline} out of domain, in-domain Dice not more than "
                  f"{IN_DOMAIN_TOLERANCE:.2f} lower): {verdict} here ({method} − {baseline}: avg_ood "
                  f"{_num(m_ood - b_ood)}, ACDC {_num(m_in - b_in)})."]
    else:
        lines += ["", f"Not the paper's comparison (the methods differ in {_keys(inputs.method_difference)}, not in "
                  f"`learning.latent_DA` alone): {method} − {baseline}: avg_ood {_num(m_ood - b_ood)}, "
                  f"ACDC {_num(m_in - b_in)}."]
    if n_runs < len(inputs.budget.runs):
        lines.append(f"These numbers cover only {runs_phrase(res.cvals, len(inputs.budget.runs))}; the other runs "
                     "are not finished yet.")
    return lines


def render(inputs: ReportInputs, link: Callable[[Path], str]) -> str:
    """The whole report; ``link(path)`` turns an output file into a Markdown link target."""
    budget = inputs.budget
    baseline, method = list(budget.methods)
    whole = sorted(set.intersection(*(set(inputs.per_iter[n].cvals) for n in budget.n_iter))) \
        if all(n in inputs.per_iter for n in budget.n_iter) else []
    status = (f"complete ({inputs.total_tasks} tasks)" if inputs.complete else
              f"**incomplete**: {inputs.finished_tasks} of {inputs.total_tasks} tasks finished, "
              f"{len(whole)} of {len(budget.runs)} runs complete (both methods trained and tested); rerun the "
              "command to continue")
    parts = [f"# Robustness experiment: {baseline} vs {method} training (budget `{budget.name}`)", "",
             f"Status: {status}.", "", budget.description, "", "## Setup", ""]
    runs = ", ".join(f"({c}, {s})" for c, s in budget.runs)
    parts.append(markdown_table(["setting", "value"], [
        ["training subjects (`--data_setting`)", budget.data_setting],
        ["runs (cval, seed)", runs],
        ["in-plane spacing", f"{budget.spacing_mm:g} mm"],
        ["training pad / crop", f"{budget.pad_size} / {budget.crop_size} px"],
        ["test crop", f"{budget.test_crop_size} px ({budget.test_crop_size * budget.spacing_mm:.0f} mm)"],
        ["epochs, batch, lr, max iterations",
         f"{budget.n_epochs}, {budget.batch_size}, {budget.lr:g}, {budget.max_iteration}"],
        ["test sets", ", ".join(budget.datasets)],
        ["test settings", ", ".join(f"n_iter {n}" for n in budget.n_iter)],
        ["methods", ", ".join(f"{k}: `config/{v}`" for k, v in budget.methods.items())],
    ]))
    parts += ["", f"Data: `{inputs.data_root}` (fingerprint `{inputs.fingerprint[:12]}`); tested and trained on "
              f"`{inputs.prepared_root}`. Both methods share the budget, data, splits and seeds (same initial "
              f"weights and the same augmented batches); they differ only in {_keys(inputs.method_difference)}.",
              f"Code: {', '.join(f'`{c}`' for c in inputs.commits) or 'unknown'}.",
              "Compute (wall clock, sum over tasks; a shared machine inflates it): "
              + ", ".join(f"{k} {v / 60:.1f} min" for k, v in inputs.seconds.items()) + ".", "",
              "## Headline", "", *headline(inputs, baseline, method)]
    for n_iter in sorted(inputs.per_iter, reverse=True):
        res = inputs.per_iter[n_iter]
        what = "FTN alone" if n_iter == 1 else "FTN + STN refinement" if n_iter == 2 else f"{n_iter} passes"
        covered = runs_phrase(res.cvals, len(budget.runs))
        parts += ["", f"## Mean Dice per test set, n_iter = {n_iter} ({what})", "",
                  f"**{covered}.** Mean over LV, MYO and RV of the patient-wise 3D Dice; `avg_all` = mean over the "
                  f"test sets, `avg_ood` = mean over the out-of-domain ones; {spread_phrase(len(res.cvals))}.", "",
                  format_table(res.table, main_columns(res.table, list(budget.datasets))), "",
                  "Relative improvement of the run-averaged values:", "",
                  markdown_table(["column", baseline, method, "difference", "relative"],
                                 [[r.column, _num(r.baseline), _num(r.method), _num(r.difference),
                                   f"{r.relative_percent:+.1f} %" if not math.isnan(r.relative_percent) else "n/a"]
                                  for r in res.relative.itertuples()]), "",
                  "Per run (cval): avg_ood " + "; ".join(
                      f"cval {r.cval}: {_num(r.baseline_avg_ood)} → {_num(r.method_avg_ood)} "
                      f"({r.relative_percent:+.1f} %)" for r in res.per_run.itertuples()) + ".", "",
                  f"Paired test over test volumes ({method} − {baseline}, {covered}): each volume's mean Dice is "
                  "averaged over these runs for each method, then the Wilcoxon signed-rank test (two-sided, `scipy.stats.wilcoxon`) "
                  "is applied to the per-volume differences. `all`/`ood` pool the volumes of all / the out-of-domain "
                  "test sets.", "",
                  markdown_table(["column", "volumes", baseline, method, "mean diff", "median diff",
                                  f"share {method} better", "W", "p"],
                                 [[r.column, r.n_volumes, _num(r.baseline_mean), _num(r.method_mean),
                                   _num(r.mean_difference), _num(r.median_difference),
                                   _num(r.share_method_better, 2), _num(r.wilcoxon_statistic, 1),
                                   _p(r.p_value) + (f" ({r.note})" if r.note else "")]
                                  for r in res.wilcoxon.itertuples()]), ""]
        parts += [f"M&Ms per vendor (n_iter = {n_iter}, {covered}): mean Dice over the vendor's volumes, "
                  f"{spread_phrase(len(res.cvals))}.",
                  "", vendor_markdown(res.vendors, [baseline, method])]
        if "png" in res.figures:
            parts += ["", f"![Per-volume Dice, n_iter {n_iter}]({link(res.figures['png'])})"]
    parts += ["", "## Training curves", "",
              "Validation Dice (pooled over the validation slices, mean of LV/MYO/RV, FTN + STN) after every epoch. "
              "`late change` = mean of the last fifth of the epochs minus the mean of the fifth before "
              "(near 0: plateau).", ""]
    if len(inputs.plateau):
        parts.append(markdown_table(
            ["run", "method", "epochs", "iterations", "best", "last", "late change"],
            [[r.run, r.method, int(r.epochs), int(r.iterations), _num(r.best), _num(r.last), _num(r.late_change)]
             for r in inputs.plateau.itertuples()]))
    for title, figure in inputs.curve_figures:
        parts += ["", f"![{title}]({link(figure)})"]
    parts += ["", "## Files", ""] + [f"- [`{link(f)}`]({link(f)}): {_describe(f)}" for f in inputs.files]
    parts += ["", "## Commands", "", "The experiment (each call continues where the previous one stopped):", "",
              "```bash"] + [_invocation(i) for i in inputs.invocations] + ["```", "",
              "Each training is this command (cval, seed and method vary):", "", "```bash", inputs.train_command,
              "```", "", "Each test is equivalent to:", "", "```bash", inputs.test_command, "```", "",
              "## Warnings", ""]
    parts += [f"- {n}" for n in inputs.notes] if inputs.notes else ["None."]
    return "\n".join(parts) + "\n"


def vendor_markdown(vendors: pd.DataFrame, methods: Sequence[str]) -> str:
    if vendors.empty:
        return "No M&Ms result."
    keys = vendors[["vendor", "vendor_name"]].drop_duplicates().sort_values("vendor")
    header = ["method"] + [f"{v} ({n}, {int(vendors[vendors.vendor == v].n_volumes.max())} vol.)"
                           for v, n in keys.itertuples(index=False)]
    rows = []
    for method in methods:
        part = vendors[vendors["method"] == method].set_index("vendor")
        row = [method]
        for vendor in keys["vendor"]:
            if vendor not in part.index:
                row.append("n/a")
                continue
            mean, std, n_runs = part.at[vendor, "mean"], part.at[vendor, "std"], part.at[vendor, "n_runs"]
            row.append(f"{mean:.3f} ± {std:.3f}" if n_runs > 1 else f"{mean:.3f}")
        rows.append(row)
    return markdown_table(header, rows)


def _describe(path: Path) -> str:
    names = {"summary.csv": "the test script's robustness table (all runs)", "vendors.csv": "per-vendor table",
             "wilcoxon.csv": "paired tests", "relative_improvement.csv": "relative improvement",
             "volumes.csv": "Dice of every test volume, run and n_iter", "plateau.csv": "training-curve summary"}
    return names.get(path.name, path.name)


def _invocation(record: dict[str, Any]) -> str:
    import shlex

    argv = " ".join(shlex.quote(a) for a in record.get("argv", []))
    return f"python scripts/run_robustness_experiment.py {argv}   # {record.get('time')}, commit {record.get('commit')}"
