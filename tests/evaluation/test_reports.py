"""Patient-wise evaluation, per-method report files and the aggregate table math."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medseg.evaluation.aggregate import RunResults, aggregate_table, format_table, write_aggregate
from medseg.evaluation.datasets import DatasetUnavailable, build_test_set
from medseg.evaluation.reports import DatasetResult, evaluate_dataset, write_dataset_report
from medseg.evaluation.runs import Run
from medseg.phantom.tiny import write_subjects, write_tiny_mm

CLASS_COLUMNS = ["LV_Dice", "MYO_Dice", "RV_Dice"]


def corrupt_images(test_set, rng_seed=0):
    """Patch the source so that the 'image' equals the label (EchoModel then predicts the label exactly)."""
    source = test_set.source
    original = source.get_patient_data_for_testing

    def patched(index, crop_size=192, normalize_2D=False):  # noqa: N803
        patient = original(index, crop_size, normalize_2D)
        patient.image = patient.label[:, None].float().clone()
        return patient

    source.get_patient_data_for_testing = patched
    return test_set


def result_from(values: dict[str, list[float]], name: str = "ACDC") -> DatasetResult:
    n = len(next(iter(values.values())))
    frame = pd.DataFrame({"patient_id": [f"p{i}_ED" for i in range(n)], "pid": [f"p{i}" for i in range(n)], **values})
    return DatasetResult(name, frame, list(values))


def test_evaluate_and_report_files(tmp_path, echo_model):
    write_tiny_mm(tmp_path / "MM", n_per_vendor=1, vendors="AB", shape=(3, 40, 48))
    test_set = corrupt_images(build_test_set("MM", tmp_path, ("ED", "ES")))
    result = evaluate_dataset(echo_model, test_set.source, "MM", ("Dice", "HD95"), batch_slices=2)
    assert echo_model.calls == [2, 1] * 4  # 4 volumes of 3 slices in chunks of 2
    assert list(result.detailed["patient_id"]) == ["A00X_ED", "B00X_ED", "A00X_ES", "B00X_ES"]
    assert (result.detailed[CLASS_COLUMNS] == 1.0).all().all()
    assert (result.detailed[["LV_HD95", "MYO_HD95", "RV_HD95"]] == 0.0).all().all()

    out = tmp_path / "report"
    written = write_dataset_report(result, out, n_iter=2, info={"method": "m"}, vendors=test_set.vendors)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "iter_2_summary.csv",
            "iter_2_detailed.csv",
            "iter_2_describe.csv",
            "iter_2_vendor_summary.csv",
            "iter_2_vendor_detailed.csv",
            "iter_2_info.json",
        ]
    )
    summary_lines = (out / "iter_2_summary.csv").read_text().splitlines()
    assert summary_lines[0] == "statistic,LV_Dice,MYO_Dice,RV_Dice,LV_HD95,MYO_HD95,RV_HD95"
    assert summary_lines[1].split(",")[:4] == ["mean", "1.000", "1.000", "1.000"]
    assert len(summary_lines) == 3
    detailed = pd.read_csv(out / "iter_2_detailed.csv")
    assert list(detailed.columns) == ["patient_id", *CLASS_COLUMNS, "LV_HD95", "MYO_HD95", "RV_HD95"]
    describe = pd.read_csv(out / "iter_2_describe.csv", index_col=0)
    assert list(describe.index) == ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    vendors = pd.read_csv(out / "iter_2_vendor_summary.csv")
    assert list(vendors["vendor"]) == ["A", "B"] and list(vendors["n"]) == [2, 2]
    info = json.loads((out / "iter_2_info.json").read_text())
    assert info["n_patients"] == 4 and info["method"] == "m"


def test_summary_row_two_is_population_std(tmp_path):
    result = result_from({"LV_Dice": [0.5, 1.0], "MYO_Dice": [0.2, 0.4], "RV_Dice": [0.0, 0.0]})
    write_dataset_report(result, tmp_path, n_iter=1)
    lines = (tmp_path / "iter_1_summary.csv").read_text().splitlines()
    assert lines == ["statistic,LV_Dice,MYO_Dice,RV_Dice", "mean,0.750,0.300,0.000", "std,0.250,0.100,0.000"]


def test_label_classes_the_model_does_not_predict(tmp_path, echo_model):
    write_subjects(tmp_path / "ACDC-C" / "RandomBias", ["001_0"], shape=(3, 40, 48), frames=("ES",))
    seg = tmp_path / "ACDC-C" / "RandomBias" / "001_0" / "ES_seg.nii.gz"
    from medseg.io.nifti import read_volume, write_volume

    label = read_volume(seg)
    array = label.array.copy()
    array[0, :3, :3] = 5  # a class the 4-class model cannot predict
    write_volume(seg, array, label)
    test_set = build_test_set("RandomBias", tmp_path, ("ES",))
    result = evaluate_dataset(echo_model, test_set.source, "RandomBias")
    assert len(result.detailed) == 0  # skipped: voxels of a class outside 0..3 cannot be scored as background
    assert any("[5]" in w and "ES_seg.nii.gz" in w for w in result.warnings)


def test_missing_and_empty_dataset_folders_are_unavailable(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        build_test_set("RandomSpike", tmp_path, ("ED", "ES"))
    (tmp_path / "MM").mkdir()
    (tmp_path / "MM" / "empty_subject").mkdir()
    with pytest.raises(DatasetUnavailable, match="no subject"):
        build_test_set("MM", tmp_path, ("ED", "ES"))


def test_distances_nan_are_counted(echo_model, tmp_path):
    write_subjects(tmp_path / "MM", ["S1"], shape=(3, 40, 48), frames=("ED",))
    test_set = build_test_set("MM", tmp_path, ("ED",))  # EchoModel on raw images: no RV predicted
    result = evaluate_dataset(echo_model, test_set.source, "MM", ("Dice", "ASSD"))
    assert result.nan_counts["RV_ASSD"] == 1
    assert math.isnan(result.detailed["RV_ASSD"].iloc[0])
    assert any("RV_ASSD undefined" in w for w in result.warnings)


def test_aggregate_math_over_cvals_and_ood_average():
    def run_results(cval, acdc, mm, bias):
        entry = RunResults(Run("coop", Path(f"r/{cval}"), cval))
        entry.results["ACDC"] = result_from({"LV_Dice": [acdc[0]], "MYO_Dice": [acdc[1]], "RV_Dice": [acdc[2]]})
        entry.results["MM"] = result_from({"LV_Dice": [mm, mm], "MYO_Dice": [mm, mm], "RV_Dice": [mm, mm]}, "MM")
        entry.results["RandomBias"] = result_from({"LV_Dice": [bias], "MYO_Dice": [bias], "RV_Dice": [bias]})
        return entry

    entries = [run_results(0, (0.9, 0.6, 0.6), 0.5, 0.3), run_results(1, (0.9, 0.9, 0.9), 0.7, 0.5)]
    single = RunResults(Run("standard", Path("s/0"), 0))
    single.results["ACDC"] = result_from({"LV_Dice": [0.8], "MYO_Dice": [0.8], "RV_Dice": [0.8]})
    table = aggregate_table([*entries, single], ["ACDC", "RandomBias", "RandomSpike", "MM"])
    coop = table.set_index("method").loc["coop"]
    assert coop["ACDC"] == pytest.approx(0.8)  # mean of 0.7 and 0.9
    assert coop["ACDC_std"] == pytest.approx(0.1)  # population std over cvals
    assert coop["ACDC_MYO_Dice"] == pytest.approx(0.75)
    assert coop["avg_all"] == pytest.approx(np.mean([(0.7 + 0.3 + 0.5) / 3, (0.9 + 0.5 + 0.7) / 3]))
    assert coop["avg_ood"] == pytest.approx(np.mean([0.4, 0.6]))
    assert coop["n_cvals"] == 2 and coop["cvals"] == "0 1"
    standard = table.set_index("method").loc["standard"]
    assert standard["avg_all"] == pytest.approx(0.8) and math.isnan(standard["avg_ood"])
    assert "RandomSpike" not in table.columns  # never evaluated
    markdown = format_table(table, ["ACDC", "avg_all"])
    assert "| coop | 0.800 ± 0.100 |" in markdown and "| standard | 0.800 | 0.800 |" in markdown
    assert math.isnan(standard["ACDC_std"])  # one cval: no std, not a std of 0
    one_fold = aggregate_table([entries[0], single], ["ACDC", "RandomBias", "MM"])
    assert not [c for c in one_fold.columns if c.endswith("_std")]  # nobody has several folds: no std columns


def test_write_aggregate_files(tmp_path):
    entry = RunResults(Run("m", Path("x"), None))
    entry.results["ACDC"] = result_from({"LV_Dice": [0.8, 0.6], "MYO_Dice": [0.8, 0.6], "RV_Dice": [0.8, 0.6]})
    table, paths = write_aggregate([entry], ["ACDC", "MM"], tmp_path, 2, ["MM: test set folder missing; skipped"])
    assert set(paths) == {"csv", "md", "png", "warnings"}
    csv = pd.read_csv(paths["csv"])
    expected = ["method", "n_cvals", "cvals", "ACDC", *[f"ACDC_{c}" for c in CLASS_COLUMNS], "avg_all"]
    assert list(csv.columns) == [*expected, "avg_ood"]  # one fold: no std columns
    assert csv.loc[0, "ACDC"] == pytest.approx(0.7)
    md = paths["md"].read_text()
    assert "MM: test set folder missing" in md and "| m | 0.700 | 0.700 |" in md
    assert paths["png"].stat().st_size > 1000
