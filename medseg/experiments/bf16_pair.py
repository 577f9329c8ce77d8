"""The bf16 pair as a record: which two experiments were compared, whether they are a pair, and the decision.

:func:`medseg.experiments.decisions.bf16_decision` compares numbers; this module makes sure the numbers come from a
pair (the same data, regime, method configs, run and length; fp32 on one side, bf16 or ``bf16_emulated`` on the
other, as each experiment's ``experiment.json`` records them) and writes the decision as a JSON record
(``benchmarks/bf16_decision.py --json``) and as the Markdown section that the experiment report
(``--bf16_decision``) and ``docs/PERFORMANCE.md`` show.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.experiments.decisions import BF16_COLUMNS, Bf16Decision, bf16_verdict
from medseg.experiments.report import markdown_table
from medseg.experiments.state import MANIFEST

#: budget keys the two experiments of a pair must share (their names, lengths, precisions and runs aside)
PAIR_KEYS = ("spacing_mm", "pad_size", "crop_size", "test_crop_size", "batch_size", "lr", "lr_schedule",
             "max_iteration", "data_setting", "methods", "frames")
BF16_PRECISIONS = ("bf16", "bf16_emulated")
RECORD_KEYS = ("fp32", "bf16", "cval", "seed", "n_iter", "tolerance", "differences", "neutral", "checked")


def find_experiment(result_file: Path) -> tuple[Path, dict[str, Any]] | None:
    """The experiment folder a result file belongs to (``volumes.csv`` in it, ``trend/trend.csv`` one below it) and
    its ``experiment.json``; None for a file outside an experiment folder (e.g. a published copy)."""
    for folder in (result_file.parent, result_file.parent.parent):
        path = folder / MANIFEST
        if path.is_file():
            try:
                return folder, json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{path}: unreadable experiment record ({err})") from None
    return None


def side(source: Path, found: tuple[Path, Mapping[str, Any]] | None, epoch: int | None = None) -> dict[str, Any]:
    """One side of the pair: its file, and (from its experiment record) budget, precision, length, data, commits and
    the folder of the prepared (resampled) data it trained and tested on. ``epoch``: the fp32 side is a trend run's
    best model after that many epochs."""
    out: dict[str, Any] = {"source": Path(source).as_posix(), "epoch": epoch}
    if found is None:
        return out
    folder, manifest = found
    identity = manifest.get("identity", {})
    budget = identity.get("budget", {})
    commits = [i.get("commit", "unknown") for i in manifest.get("invocations", [])]
    prepared = folder / f"data_{budget.get('spacing_mm', 0):g}mm"
    out.update(budget=budget.get("name"), precision=budget.get("precision") or "fp32",
               n_epochs=epoch if epoch is not None else budget.get("n_epochs"),
               data_fingerprint=identity.get("data_fingerprint"), method_configs=identity.get("method_configs"),
               regime={k: budget.get(k) for k in PAIR_KEYS}, commits=list(dict.fromkeys(commits)),
               prepared=prepared.as_posix() if prepared.is_dir() else None)
    return out


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compare_data(fp32: Mapping[str, Any], bf16: Mapping[str, Any]) -> tuple[list[str], str]:
    """Whether the two sides trained and tested on the same data: ``(problems, what was compared)``.

    The same data fingerprint (paths, sizes and times of the source files) settles it. Experiments of other runs
    read other subject sets, so their fingerprints differ even on the same data; then the prepared copies they
    trained and tested on (``data_<spacing>mm``, written by the same deterministic resampling) are compared byte
    for byte in every volume both hold.
    """
    if fp32["data_fingerprint"] == bf16["data_fingerprint"]:
        return [], "the same data fingerprint (the same source files, unchanged)"
    if not (fp32.get("prepared") and bf16.get("prepared")):
        return ["the two experiments used different data (data fingerprints differ, and there is no prepared copy "
                "on both sides to compare)"], ""
    roots = Path(fp32["prepared"]), Path(bf16["prepared"])
    names = [{p.relative_to(r) for p in r.rglob("*.nii.gz")} for r in roots]
    common = sorted(names[0] & names[1])
    if not common:
        return ["the two experiments' prepared data share no volume"], ""
    differ = [rel.as_posix() for rel in common if _digest(roots[0] / rel) != _digest(roots[1] / rel)]
    if differ:
        return [f"the prepared data differ in {len(differ)} of the {len(common)} volumes both hold (e.g. "
                f"{', '.join(differ[:3])})"], ""
    return [], (f"the prepared data (the resampled copies both trained and tested on) are byte-identical in all "
                f"{len(common)} volumes both hold")


def pair_problems(fp32: Mapping[str, Any], bf16: Mapping[str, Any]) -> tuple[list[str], str]:
    """Why two sides (:func:`side`) are not a bf16 pair (empty when they are, or when a side has no record to
    check, which :func:`record` notes), and how their data was found to be the same."""
    if "budget" not in fp32 or "budget" not in bf16:
        return [], ""
    problems = []
    if fp32["precision"] != "fp32":
        problems.append(f"the fp32 side ({fp32['source']}) trained in {fp32['precision']}")
    if bf16["precision"] not in BF16_PRECISIONS:
        problems.append(f"the bf16 side ({bf16['source']}) trained in {bf16['precision']}")
    data_problems, same_data = compare_data(fp32, bf16)
    problems += data_problems
    if fp32["method_configs"] != bf16["method_configs"]:
        problems.append("the two experiments trained other method configs")
    differing = [k for k in PAIR_KEYS if fp32["regime"].get(k) != bf16["regime"].get(k)]
    if differing:
        problems.append("their budgets differ in " + ", ".join(
            f"{k} ({fp32['regime'].get(k)} against {bf16['regime'].get(k)})" for k in differing))
    if fp32["n_epochs"] != bf16["n_epochs"]:
        problems.append(f"the fp32 run is {fp32['n_epochs']} epochs long, the bf16 run {bf16['n_epochs']}")
    return problems, same_data


def record(decision: Bf16Decision, fp32: dict[str, Any], bf16: dict[str, Any], values: Mapping[str, Any],
           cval: int, seed: int | None, n_iter: int, same_data: str = "") -> dict[str, Any]:
    """The JSON record of a decision: both sides with their values, how their data was found to be the same, the
    differences and the verdict."""
    fp32 = {**fp32, "values": {m: {c: values["fp32"][m][c] for c in BF16_COLUMNS} for m in decision.differences}}
    bf16 = {**bf16, "values": {m: {c: values["bf16"][m][c] for c in BF16_COLUMNS} for m in decision.differences}}
    checked = "budget" in fp32 and "budget" in bf16
    return {"fp32": fp32, "bf16": bf16, "cval": cval, "seed": seed, "n_iter": n_iter,
            "tolerance": decision.tolerance, "differences": decision.differences, "neutral": decision.neutral,
            "checked": checked, "same_data": same_data}


def read_record(path: Path) -> dict[str, Any]:
    """A decision record written by ``benchmarks/bf16_decision.py --json``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a decision record (naming the file and what is missing).
    """
    if not path.is_file():
        raise FileNotFoundError(f"bf16 decision: {path} not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"bf16 decision {path}: not JSON ({err})") from None
    missing = [k for k in RECORD_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"bf16 decision {path}: not a decision record (no {', '.join(missing)})")
    return data


def _describe(s: Mapping[str, Any]) -> str:
    if "budget" not in s:
        return f"`{s['source']}` (no experiment record beside it)"
    length = f"after {s['epoch']} of its epochs" if s.get("epoch") is not None else f"{s['n_epochs']} epochs"
    return (f"`{s['source']}`: budget `{s['budget']}`, {length}, precision `{s['precision']}`, commit "
            f"{', '.join(s['commits']) or 'unknown'}")


def markdown(data: Mapping[str, Any], heading: str = "##") -> str:
    """The decision as a report section: the two sides, a table of both methods' values and differences, and the
    verdict."""
    run = f"cval {data['cval']}" + ("" if data["seed"] is None else f", seed {data['seed']}")
    rows = [[m, c, f"{data['fp32']['values'][m][c]:.3f}", f"{data['bf16']['values'][m][c]:.3f}", f"{d:+.3f}"]
            for m, cols in data["differences"].items() for c, d in cols.items()]
    worst = max(abs(d) for cols in data["differences"].values() for d in cols.values())
    lines = [f"{heading} bf16 against fp32: the decision", "",
             f"One run ({run}) trained in both precisions and tested with n_iter {data['n_iter']}:", "",
             f"- fp32: {_describe(data['fp32'])};", f"- bf16: {_describe(data['bf16'])}.", "",
             markdown_table(["method", "column", "fp32", "bf16", "bf16 − fp32"], rows), ""]
    if data["checked"]:
        lines.append("The same method configs, grid, batch, learning rate and schedule, run and length on both "
                     f"sides, as the two experiments' records say; the same data: {data.get('same_data') or 'n/a'}.")
    else:
        lines.append("A side without an experiment record: that the two runs share data, regime and length was not "
                     "checked.")
    if data["bf16"].get("precision") == "bf16_emulated":
        lines.append("The bf16 side ran as `bf16_emulated` (a CPU without native bf16): bf16 mixed precision with "
                     "each convolution and matrix product computed as a native bf16 kernel computes it (bf16 "
                     "operands, fp32 sums, one rounding to bf16). It measures what bf16 does to accuracy, not bf16's "
                     "speed.")
    verdict = bf16_verdict(bool(data["neutral"]), bold=True)
    lines += ["", f"Largest |bf16 − fp32|: {worst:.3f} Dice (tolerance {data['tolerance']:g} on "
                  f"{' and '.join(BF16_COLUMNS)}, both methods). {verdict}."]
    return "\n".join(lines) + "\n"

