"""``RESULTS.md`` of the robustness experiment: setup, headline, tables, statistics, curves, commands, warnings."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.evaluation.aggregate import RESAMPLED_SUFFIX, format_table, main_columns
from medseg.experiments.budgets import Budget
from medseg.experiments.run_stats import format_p, verdict
from medseg.experiments.tables import run_names

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
    runs: list[tuple[int, int]] = field(default_factory=list)  # finished runs (cval, seed), both methods tested
    run_tests: pd.DataFrame = field(default_factory=pd.DataFrame)  # paired t over runs per column (run_stats)
    gain: dict[str, Any] = field(default_factory=dict)  # relative avg_ood gain over runs with its interval
    run_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # per run: ACDC / avg_ood / MM of both methods
    penalties: pd.DataFrame = field(default_factory=pd.DataFrame)  # vendor − ACDC per method
    fold_test: dict[str, Any] = field(default_factory=dict)  # avg_ood with the cval as the unit (seeds averaged)


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
    provenance: list[str] = field(default_factory=list)  # where a rebuilt report's numbers come from
    rebuilt_by: str = ""  # commit of a --report_only call on the experiment folder (the tables' code)
    extra_sections: list[str] = field(default_factory=list)  # Markdown appended before "Files" (e.g. the trend)
    acdc_c_figure: Path | None = None  # the two ACDC-C columns side by side (a resampled copy only)
    figures: list[tuple[str, str, Path]] = field(default_factory=list)  # (heading, text, PNG) sections before "Files"

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
    return format_p(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def runs_phrase(runs: Sequence[tuple[int, int]], total: int) -> str:
    """``"3 of 3 runs (cvals 0, 1, 2)"``: which finished runs (cval, seed) a table covers (the seeds are named when a
    cval repeats)."""
    listed = ", ".join(run_names(runs))
    return f"{len(runs)} of {total} run{'s' if total != 1 else ''} (cval{'s' if len(runs) != 1 else ''} {listed})"


def fold_line(res: IterResults, baseline: str, method: str) -> list[str]:
    """When a cval has several seeds: the avg_ood test with the cval as the unit (its seeds averaged first), the
    conservative check of the run-level test, which treats runs that share their training subjects as independent."""
    folds = {c for c, _ in res.runs}
    test = res.fold_test
    if not test or len(folds) == len(res.runs):
        return []
    note = f"; {test['note']}" if test.get("note") else ""
    return [f"- Conservative check, the cval as the unit ({len(res.runs)} runs share {len(folds)} cvals, i.e. "
            f"training subjects; each cval's seeds averaged first): avg_ood {method} − {baseline} "
            f"{_num(test['mean_difference'])} (95 % CI {_ci(test)}, t = {_num(test['t'], 2)}, df {_int(test['df'])}, "
            f"p = {_p(test['p_value'])}{note})."]


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
    """The paper's claim checked on the n_iter = 2 (else the largest) results, by the paired test over runs."""
    if not inputs.per_iter:
        return ["No test has finished yet."]
    n_iter = 2 if 2 in inputs.per_iter else max(inputs.per_iter)
    res = inputs.per_iter[n_iter]
    n_runs = len(res.runs)
    lines = [f"Test setting n_iter = {n_iter}; {runs_phrase(res.runs, len(inputs.budget.runs))} finished. The "
             f"replication unit is the training run: each line is the paired t-test over the runs of "
             f"{method} − {baseline} (each run's value of the column), with the 95 % t interval of the mean "
             f"difference; values {spread_phrase(n_runs)}.", ""]
    tests = res.run_tests.set_index("column") if len(res.run_tests) else pd.DataFrame()
    for column in ("ACDC", "avg_ood", "MM", "avg_all"):
        (b, bs), (m, ms) = _value(res.table, baseline, column), _value(res.table, method, column)
        if math.isnan(b) and math.isnan(m):
            continue
        text = f"- **{column}**: {baseline} {_mean_std(b, bs, n_runs)}, {method} {_mean_std(m, ms, n_runs)}; "
        if column in tests.index:
            row = tests.loc[column]
            if n_runs > 1:
                text += (f"difference {_num(row['mean_difference'])} (95 % CI {_ci(row)}, t = "
                         f"{_num(row['t'], 2)}, df {_num(row['df'], 0)}, p = {_p(row['p_value'])})")
            else:
                text += f"difference {_num(row['mean_difference'])} (one run: no run-level test)"
        else:
            text += f"difference {_num(m - b)}"
        if column == "avg_ood" and res.gain:
            gain = res.gain
            rel = gain.get("relative_percent", math.nan)
            text += (f"; relative gain {rel:+.1f} %" if not math.isnan(rel) else "") + (
                f" (mean of the per-run gains, 95 % CI [{gain['ci_low_percent']:+.1f}, "
                f"{gain['ci_high_percent']:+.1f}] %)" if not math.isnan(gain.get("ci_low_percent", math.nan)) else "")
        lines.append(text)
    if len(res.run_table):
        names = run_names([(int(c), int(s)) for c, s in zip(res.run_table["cval"], res.run_table["seed"], strict=True)])
        lines.append("- Per run (cval), avg_ood " + "; ".join(
            f"cval {name}: {_num(r[f'avg_ood_{baseline}'])} → {_num(r[f'avg_ood_{method}'])} "
            f"({_num(r['avg_ood_difference'])}, {r['avg_ood_relative_percent']:+.1f} %)"
            for name, (_, r) in zip(names, res.run_table.iterrows(), strict=True)) + ".")
    lines += fold_line(res, baseline, method)
    wil = res.wilcoxon.set_index("column") if len(res.wilcoxon) else pd.DataFrame()
    if "ood" in wil.index:
        w = wil.loc["ood"]
        lines.append(f"- Within-run evidence only (secondary; the volumes are the same subjects in every run, not "
                     f"replications of the training): Wilcoxon signed-rank over {int(w['n_volumes'])} run-averaged "
                     f"out-of-domain volumes, median difference {_num(w['median_difference'])}, "
                     f"{_ties(w)}, p = {_p(w['p_value'])}.")
    lines.append("")
    if inputs.is_paper_comparison:
        _, sentence = verdict(res.run_tests, res.gain, baseline, method, IN_DOMAIN_TOLERANCE)
        lines.append(f"The paper's claim ({method} better out of domain, in-domain Dice not more than "
                     f"{IN_DOMAIN_TOLERANCE:.2f} lower), judged by the run-level tests at p < 0.05: {sentence}")
    else:
        lines.append(f"Not the paper's comparison (the methods differ in {_keys(inputs.method_difference)}, not in "
                     f"`learning.latent_DA` alone), so no verdict: the differences are above.")
    if n_runs < len(inputs.budget.runs):
        lines.append(f"These numbers cover only {runs_phrase(res.runs, len(inputs.budget.runs))}; the other runs "
                     "are not finished yet.")
    return lines


def _ci(row: Any) -> str:
    low, high = row["ci_low"], row["ci_high"]
    if low is None or math.isnan(float(low)):
        return "n/a"
    return f"[{float(low):+.3f}, {float(high):+.3f}]"


def _ties(row: Any) -> str:
    zero = row.get("n_zero", math.nan) if hasattr(row, "get") else math.nan
    tied = row.get("n_tied", math.nan) if hasattr(row, "get") else math.nan
    if zero is None or (isinstance(zero, float) and math.isnan(zero)):
        return "ties not counted"
    return f"{int(zero)} zero differences (left out of the test), {int(tied)} tied non-zero |differences|"


def run_level_markdown(res: IterResults, baseline: str, method: str) -> list[str]:
    """The run-level tests, the per-run table and the vendor penalties of one n_iter."""
    parts: list[str] = []
    n_runs = len(res.runs)
    if len(res.run_tests):
        intro = ("Paired t-test over the runs (the replication unit) of each run's value, "
                 f"{method} − {baseline}; 95 % t interval of the mean difference.")
        if n_runs < 2:
            intro += " **One run: no run-level test is possible** (the differences below describe this run only)."
        parts += [intro, "", markdown_table(
            ["column", "runs", baseline, method, "mean diff", "sd of diff", "95 % CI", "t", "p"],
            [[r.column, int(r.n_runs), _num(r.baseline_mean), _num(r.method_mean), _num(r.mean_difference),
              _num(r.sd_difference), _ci(r._asdict()), _num(r.t, 2), _p(r.p_value) + (f" ({r.note})" if r.note else "")]
             for r in res.run_tests.itertuples()]), ""]
        if res.gain:
            g = res.gain
            parts += [f"Relative avg_ood gain (mean over runs of each run's ({method} − {baseline}) / {baseline}): "
                      f"{_pct(g.get('relative_percent'))}, 95 % t interval "
                      + (f"[{g['ci_low_percent']:+.1f}, {g['ci_high_percent']:+.1f}] %"
                         if not math.isnan(g.get("ci_low_percent", math.nan)) else f"n/a ({g.get('note', '')})")
                      + ".", ""]
        check = fold_line(res, baseline, method)
        parts += [check[0][2:], ""] if check else []
    if len(res.run_table):
        columns = [c for c in ("ACDC", "avg_ood", "MM") if f"{c}_{baseline}" in res.run_table.columns]
        header = ["cval (seed)"] + [f"{c} {name}" for c in columns for name in (baseline, method, "diff")] + \
            ["avg_ood relative"]
        rows = []
        for _, r in res.run_table.iterrows():
            row = [f"{int(r['cval'])} ({int(r['seed'])})"]
            for c in columns:
                row += [_num(r[f"{c}_{baseline}"]), _num(r[f"{c}_{method}"]), _num(r[f"{c}_difference"])]
            row.append(_pct(r["avg_ood_relative_percent"]))
            rows.append(row)
        parts += ["Per run:", "", markdown_table(header, rows), ""]
    if len(res.penalties):
        spread = n_runs > 1
        rows = []
        for _, r in res.penalties.iterrows():
            cells = [str(r["vendor"])]
            for name in (baseline, method):
                mean, std = r[f"{name}_penalty"], r[f"{name}_std"]
                cells.append(f"{mean:+.3f} ± {std:.3f}" if spread else f"{mean:+.3f}")
            cells += [_num(r["difference"]), _ci(r), _p(r["p_value"]) + (f" ({r['note']})" if r["note"] else "")]
            rows.append(cells)
        parts += ["Domain-shift penalty per M&Ms vendor (vendor − ACDC of the same run; "
                  f"{spread_phrase(n_runs)}), and the paired t-test over runs of the penalties' difference "
                  f"({method} − {baseline}; positive: a smaller penalty):", "",
                  markdown_table(["vendor", f"{baseline} penalty", f"{method} penalty", "difference", "95 % CI", "p"],
                                 rows), ""]
    return parts


def _has_resampled_columns(inputs: ReportInputs) -> bool:
    """Whether the results hold a ``*_resampled`` ACDC-C column (a copy that draws ACDC-C at the grid)."""
    return any(str(c).endswith(RESAMPLED_SUFFIX) for res in inputs.per_iter.values() for c in res.table.columns)


def _int(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(int(value))


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):+.1f} %"


def render(inputs: ReportInputs, link: Callable[[Path], str]) -> str:
    """The whole report; ``link(path)`` turns an output file into a Markdown link target."""
    budget = inputs.budget
    baseline, method = list(budget.methods)
    whole = sorted(set.intersection(*(set(inputs.per_iter[n].runs) for n in budget.n_iter))) \
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
        ["test sets", ", ".join(budget.test_datasets if _has_resampled_columns(inputs) or not inputs.per_iter
                                else budget.datasets)],
        ["test settings", ", ".join(f"n_iter {n}" for n in budget.n_iter)],
        ["precision (training; testing)", f"{budget.precision}; fp32" if budget.precision else
         "the method configs' `learning.precision` (default fp32); fp32"],
        ["methods", ", ".join(f"{k}: `config/{v}`" for k, v in budget.methods.items())],
    ]))
    parts += ["", f"Data: `{inputs.data_root}` (fingerprint `{inputs.fingerprint[:12] or 'not recorded'}`); tested "
              "and trained on "
              f"`{inputs.prepared_root}`. Both methods share the budget, data, splits and seeds (same initial "
              f"weights and the same augmented batches); they differ only in {_keys(inputs.method_difference)}.",
              f"Code: {', '.join(f'`{c}`' for c in inputs.commits) or 'not recorded here'}"
              + (f" (training and testing); the tables, statistics and figures were rebuilt from the folder's "
                 f"finished tests by commit `{inputs.rebuilt_by}` (`--report_only`)." if inputs.rebuilt_by else "."),
              "Compute (wall clock, sum over tasks; a shared machine inflates it): "
              + (", ".join(f"{k} {v / 60:.1f} min" for k, v in inputs.seconds.items()) or "not recorded") + ".",
              *([""] + [f"- {line}" for line in inputs.provenance] if inputs.provenance else []), "",
              "## Headline", "", *headline(inputs, baseline, method)]
    for n_iter in sorted(inputs.per_iter, reverse=True):
        res = inputs.per_iter[n_iter]
        what = "FTN alone" if n_iter == 1 else "FTN + STN refinement" if n_iter == 2 else f"{n_iter} passes"
        covered = runs_phrase(res.runs, len(budget.runs))
        parts += ["", f"## Mean Dice per test set, n_iter = {n_iter} ({what})", "",
                  f"**{covered}.** Mean over LV, MYO and RV of the patient-wise 3D Dice; `avg_all` = mean over the "
                  f"test sets, `avg_ood` = mean over the out-of-domain ones; {spread_phrase(len(res.runs))}.", "",
                  format_table(res.table, main_columns(res.table, list(budget.test_datasets))), "",
                  "Relative improvement of the run-averaged values:", "",
                  markdown_table(["column", baseline, method, "difference", "relative"],
                                 [[r.column, _num(r.baseline), _num(r.method), _num(r.difference),
                                   f"{r.relative_percent:+.1f} %" if not math.isnan(r.relative_percent) else "n/a"]
                                  for r in res.relative.itertuples()]), "",
                  f"### Run-level tests, n_iter = {n_iter} (primary)", "",
                  *run_level_markdown(res, baseline, method),
                  f"### Volume-level Wilcoxon, n_iter = {n_iter} (secondary: within-run evidence)", "",
                  f"{method} − {baseline}, {covered}: each volume's mean Dice is averaged over these runs for each "
                  "method, then the Wilcoxon signed-rank test (two-sided, `scipy.stats.wilcoxon`) is applied to the "
                  "per-volume differences. The volumes are the same subjects in every run (ED and ES frames, three "
                  "ACDC-C copies of each), so they are not independent replications of the training and these "
                  "p-values say nothing about another training run; zero differences are left out of the test "
                  "(`zero`), tied non-zero |differences| share ranks (`tied`). `all`/`ood` pool the volumes of all / "
                  "the out-of-domain test sets.", "",
                  markdown_table(["column", "volumes", baseline, method, "mean diff", "median diff",
                                  f"share {method} better", "zero", "tied", "W", "p"],
                                 [[r.column, r.n_volumes, _num(r.baseline_mean), _num(r.method_mean),
                                   _num(r.mean_difference), _num(r.median_difference),
                                   _num(r.share_method_better, 2), _int(getattr(r, "n_zero", None)),
                                   _int(getattr(r, "n_tied", None)), _num(r.wilcoxon_statistic, 1),
                                   _p(r.p_value) + (f" ({r.note})" if r.note else "")]
                                  for r in res.wilcoxon.itertuples()]), ""]
        parts += [f"M&Ms per vendor (n_iter = {n_iter}, {covered}): mean Dice over the vendor's volumes, "
                  f"{spread_phrase(len(res.runs))}.",
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
    elif not inputs.curve_figures:
        parts.append("No training curve: the run folders (`log/metrics.csv`) are not in this experiment folder.")
    for title, figure in inputs.curve_figures:
        parts += ["", f"![{title}]({link(figure)})"]
    if inputs.budget.resamples and inputs.per_iter and not _has_resampled_columns(inputs):
        parts += ["", "## ACDC-C at the model's grid", "",
                  "Not in these results: the runs were tested on a copy made before the ACDC-C sets were drawn at the "
                  "test grid, so their ACDC-C columns (RandomBias ... RandomMotion) are the native-grid corruptions "
                  "resampled to the grid (the anti-aliasing filter removes a spike's fine stripes), and `avg_ood` "
                  "averages them. The columns drawn at the grid exist only after the runs are tested again on a "
                  "current copy."]
    elif inputs.budget.resamples:
        parts += ["", "## ACDC-C at the model's grid", "",
                  "The ACDC-C columns (RandomBias ... RandomMotion) are the published corruption recipe drawn at the "
                  f"test grid ({inputs.budget.spacing_mm:g} mm): the same per-case seeds and parameters applied to the "
                  "resampled clean images with the published crop's field of view, so a spike's stripes are at the "
                  "model's resolution. The `*_resampled` columns are the native-grid sets resampled to the test grid "
                  "(the anti-aliasing filter removes a spike's fine stripes and leaves a contrast change); they are a "
                  "second, named column and enter neither `avg_all` nor `avg_ood`."]
        if inputs.acdc_c_figure is not None:
            parts += ["", f"![ACDC-C columns side by side]({link(inputs.acdc_c_figure)})"]
    for heading, text, figure in inputs.figures:
        parts += ["", f"## {heading}", "", text, "", f"![{heading}]({link(figure)})"]
    for section in inputs.extra_sections:
        parts += ["", section]
    parts += ["", "## Files", ""] + [f"- [`{link(f)}`]({link(f)}): {_describe(f)}" for f in inputs.files]
    parts += ["", "## Commands", "", ("This report (rebuilt from saved results):" if inputs.provenance else
                                      "The experiment (each call continues where the previous one stopped):"), "",
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
             "wilcoxon.csv": "volume-level Wilcoxon tests (within-run evidence)",
             "run_level_tests.csv": "paired t-tests over runs (primary)", "per_run.csv": "per-run values",
             "vendor_penalties.csv": "vendor − ACDC penalty per method",
             "relative_improvement.csv": "relative improvement",
             "MM_vendors.csv": "M&Ms vendor of each subject", "trend.csv": "trend: each kept model's values",
             "trend_means.csv": "trend: means over runs and differences per epoch",
             "volumes.csv": "Dice of every test volume, run and n_iter", "plateau.csv": "training-curve summary"}
    return names.get(path.name, path.name)


def _invocation(record: dict[str, Any]) -> str:
    import shlex

    argv = " ".join(shlex.quote(a) for a in record.get("argv", []))
    return f"python scripts/run_robustness_experiment.py {argv}   # {record.get('time')}, commit {record.get('commit')}"
