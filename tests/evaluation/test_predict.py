"""medseg-predict: output geometry equals input geometry; bad inputs are refused with clear messages."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.io.nifti import read_volume, write_volume
from medseg.evaluation.scan import LABEL_CONVENTIONS, segment_volume, select_frame
from medseg.cli.predict import main

ROTATED = tuple(np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]).ravel().tolist())


def write_scan(path, shape=(2, 101, 150), spacing=(0.9, 1.7, 7.5), ndim4=False):
    rng = np.random.default_rng(0)
    array = (rng.random(((3,) if ndim4 else ()) + shape) * 800).astype(np.float32)
    if ndim4:
        direction = np.eye(4)
        direction[:3, :3] = np.asarray(ROTATED).reshape(3, 3)
        return write_volume(
            path, array, spacing=(*spacing, 30.0), origin=(10.0, -20.0, 5.0, 0.0), direction=tuple(direction.ravel())
        )
    return write_volume(path, array, spacing=spacing, origin=(10.0, -20.0, 5.0), direction=ROTATED)


def test_output_geometry_equals_input_geometry(tmp_path, fresh_checkpoint):
    scan = write_scan(tmp_path / "scan.nii.gz")
    out = tmp_path / "out" / "seg.nii.gz"
    args = ["--checkpoint", str(fresh_checkpoint), "--input", str(scan), "--output", str(out), "--n_iter", "1"]
    assert main(args) == 0
    image, seg = read_volume(scan), read_volume(out)
    assert seg.array.shape == image.array.shape
    assert seg.spacing == pytest.approx(image.spacing)
    assert seg.origin == pytest.approx(image.origin)
    assert seg.direction == pytest.approx(image.direction)
    assert seg.array.dtype == np.uint8 and set(np.unique(seg.array)) <= {0, 1, 2, 3}


def test_existing_output_is_refused_unless_overwrite(tmp_path, fresh_checkpoint, capsys):
    scan = write_scan(tmp_path / "scan.nii.gz", shape=(1, 64, 64), spacing=(1.36719, 1.36719, 8.0))
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"keep me")
    args = ["--checkpoint", str(fresh_checkpoint), "--input", str(scan), "--output", str(out), "--n_iter", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "output exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0
    assert read_volume(out).array.shape == (1, 64, 64)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 2, 2, 2)], ids=["2D", "5D"])
def test_2d_and_5d_inputs_are_refused(tmp_path, fresh_checkpoint, capsys, shape):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), path)
    code = main(["--checkpoint", str(fresh_checkpoint), "--input", str(path), "--output", str(tmp_path / "o.nii.gz")])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.nii.gz" in err and "expected a 3D volume" in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_4d_input_needs_a_frame(tmp_path):
    path = write_scan(tmp_path / "cine.nii.gz", shape=(2, 20, 24), ndim4=True)
    volume = read_volume(path, ndim=None)
    with pytest.raises(ValueError, match="--frame"):
        select_frame(volume, None)
    with pytest.raises(ValueError, match="out of range"):
        select_frame(volume, 3)
    frame = select_frame(volume, 1)
    assert frame.array.shape == (2, 20, 24) and frame.spacing == pytest.approx((0.9, 1.7, 7.5))
    assert frame.direction == pytest.approx(ROTATED)
    np.testing.assert_array_equal(frame.array, volume.array[1])


def test_label_convention(tmp_path, echo_model):
    volume = read_volume(write_scan(tmp_path / "a.nii.gz", shape=(1, 30, 40), spacing=(1.36719, 1.36719, 8.0)))
    # EchoModel predicts round(normalised intensity): values 0 or 1 -> LV; acdc_raw writes LV as 3
    medseg_labels = segment_volume(echo_model, volume, n_iter=1)
    raw_labels = segment_volume(echo_model, volume, n_iter=1, label_convention="acdc_raw")
    np.testing.assert_array_equal(raw_labels, LABEL_CONVENTIONS["acdc_raw"][medseg_labels])
    assert (raw_labels[medseg_labels == 1] == 3).all()


def test_folder_mode_writes_one_label_map_per_scan(tmp_path, fresh_checkpoint):
    folder = tmp_path / "scans"
    write_scan(folder / "a.nii.gz", shape=(1, 48, 48), spacing=(1.36719, 1.36719, 8.0))
    write_scan(folder / "b.nii.gz", shape=(1, 40, 56), spacing=(1.36719, 1.36719, 8.0))
    write_volume(folder / "a_seg.nii.gz", np.zeros((1, 48, 48), np.uint8))  # a label file: skipped
    code = main(["--checkpoint", str(fresh_checkpoint), "--input", str(folder), "--output", str(tmp_path / "segs"),
                 "--n_iter", "1", "--no_progress"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "segs").iterdir()) == ["a_seg.nii.gz", "b_seg.nii.gz"]
    assert read_volume(tmp_path / "segs" / "b_seg.nii.gz").array.shape == (1, 40, 56)


# ------------------------------------------------------------------------------ reliability
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("medseg-predict: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_output_that_is_the_input_is_refused(tmp_path, fresh_checkpoint, capsys):
    scan = write_scan(tmp_path / "scan.nii.gz", shape=(1, 48, 48), spacing=(1.36719, 1.36719, 8.0))
    original = scan.read_bytes()
    link = tmp_path / "link.nii.gz"
    link.symlink_to(scan)
    for output in (scan, tmp_path / "." / "scan.nii.gz", link):  # the same file, also via a symlink
        with pytest.raises(SystemExit) as exit_info:
            main(["--checkpoint", str(fresh_checkpoint), "--input", str(scan), "--output", str(output), "--overwrite"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1
        assert "expected a new file, got the input scan" in err[0] and str(output) in err[0]
    assert scan.read_bytes() == original


def test_folder_mode_skips_hidden_temp_files(tmp_path, fresh_checkpoint):
    folder = tmp_path / "scans"
    write_scan(folder / "a.nii.gz", shape=(1, 48, 48), spacing=(1.36719, 1.36719, 8.0))
    (folder / ".a.k2j8ab1x.tmp.nii.gz").write_bytes(b"left by a killed writer")
    code = main(["--checkpoint", str(fresh_checkpoint), "--input", str(folder), "--output", str(folder),
                 "--n_iter", "1", "--no_progress"])
    assert code == 0
    assert sorted(p.name for p in folder.iterdir()) == [".a.k2j8ab1x.tmp.nii.gz", "a.nii.gz", "a_seg.nii.gz"]


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped"])
def test_damaged_scan_is_one_clear_error(tmp_path, fresh_checkpoint, capsys, damage):
    from corrupt_files import DAMAGE

    scan = DAMAGE[damage](write_scan(tmp_path / "scan.nii.gz", shape=(2, 64, 64), spacing=(1.36719, 1.36719, 8.0)))
    code = main(["--checkpoint", str(fresh_checkpoint), "--input", str(scan), "--output", str(tmp_path / "o.nii.gz"),
                 "--n_iter", "1"])
    line = _one_error_line(capsys)
    assert code == 2 and "scan.nii.gz: " in line and ("truncated" in line or "corrupt" in line)
    assert not (tmp_path / "o.nii.gz").exists()


def test_non_finite_weights_are_refused(tmp_path, fresh_checkpoint, capsys):
    import shutil

    import torch

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(fresh_checkpoint, checkpoint)
    (checkpoint / "manifest.json").unlink()
    state = torch.load(checkpoint / "shape_decoder.pth", weights_only=True)
    next(iter(state.values())).view(-1)[0] = float("inf")
    torch.save(state, checkpoint / "shape_decoder.pth")
    scan = write_scan(tmp_path / "scan.nii.gz", shape=(1, 48, 48), spacing=(1.36719, 1.36719, 8.0))
    code = main(["--checkpoint", str(checkpoint), "--input", str(scan), "--output", str(tmp_path / "o.nii.gz")])
    assert code == 2 and "shape_decoder.pth: expected finite weights" in _one_error_line(capsys)


def test_precision_option(tmp_path, fresh_checkpoint, capsys, monkeypatch):
    from medseg.nn import precision

    scan = write_scan(tmp_path / "scan.nii.gz")
    args = ["--checkpoint", str(fresh_checkpoint), "--input", str(scan), "--n_iter", "2"]
    with pytest.raises(SystemExit):
        main([*args, "--output", str(tmp_path / "a.nii.gz"), "--precision", "fp16", "--device", "cpu"])
    assert "--precision: 'fp16' cannot run on cpu: fp16 needs a CUDA device" in _one_error_line(capsys)
    with monkeypatch.context() as patch:  # a CPU without AVX512-BF16/AMX: refused, no silent fallback
        patch.setattr(precision, "cpu_supports_bf16", lambda: False)
        with pytest.raises(SystemExit):
            main([*args, "--output", str(tmp_path / "a.nii.gz"), "--precision", "bf16", "--device", "cpu"])
        assert "no native bf16 support (AVX512-BF16 or AMX); use fp32" in _one_error_line(capsys)
    assert not (tmp_path / "a.nii.gz").exists()
    if precision.cpu_supports_bf16():
        assert main([*args, "--output", str(tmp_path / "fp32.nii.gz")]) == 0
        assert main([*args, "--output", str(tmp_path / "b.nii.gz"), "--precision", "bf16"]) == 0
        seg, ref = read_volume(tmp_path / "b.nii.gz").array, read_volume(tmp_path / "fp32.nii.gz").array
        assert seg.shape == ref.shape == read_volume(scan).array.shape and set(np.unique(seg)) <= {0, 1, 2, 3}
        # tolerance: bf16 (8-bit mantissa) flips the class of pixels whose top two scores are within ~1 % only
        assert (seg != ref).mean() <= 0.05


def test_model_of_a_coarser_grid_sees_the_scan_on_that_grid(tmp_path, echo_model):
    """A model trained at 2.73438 mm (the CPU budgets) gets the same field of view at that grid: 96 x 96."""
    from medseg.evaluation.scan import field_of_view_crop, prepare_scan

    assert field_of_view_crop(1.36719) == (192, 192) and field_of_view_crop(2.73438) == (96, 96)
    scan = read_volume(write_scan(tmp_path / "scan.nii.gz", shape=(2, 150, 180), spacing=(1.36719, 1.36719, 8.0)))
    coarse = prepare_scan(scan, 2.73438)
    assert tuple(coarse.image.shape) == (2, 1, 96, 96) and coarse.grid_spacing[:2] == pytest.approx((2.73438,) * 2)
    labels = segment_volume(echo_model, scan, n_iter=1, spacing_mm=2.73438)
    assert labels.shape == scan.array.shape  # back on the input grid
    assert echo_model.calls == [2]


def test_predict_uses_the_grid_of_the_checkpoints_run(tmp_path, fresh_checkpoint, caplog):
    import json
    import shutil

    run = tmp_path / "run"
    checkpoints = run / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, checkpoints)
    (run / "config.json").write_text(json.dumps({"data": {"new_spacing": [2.73438, 2.73438, -1]}}))
    scan = write_scan(tmp_path / "scan.nii.gz", shape=(1, 120, 130), spacing=(1.2, 1.2, 8.0))
    out = tmp_path / "seg.nii.gz"
    with caplog.at_level("INFO"):
        assert main(["--checkpoint", str(checkpoints), "--input", str(scan), "--output", str(out), "--n_iter", "1"]) == 0
    assert "2.7344 mm grid" in caplog.text and "96 x 96" in caplog.text
    assert read_volume(out).array.shape == (1, 120, 130)


def _copy_out_of_its_run(checkpoint, tmp_path, spacing_mm=None):
    """The checkpoint folder copied alone (as a model is shared), optionally with its grid in the manifest."""
    import json
    import shutil

    copy = tmp_path / "shared_model"
    shutil.copytree(checkpoint, copy)
    if spacing_mm is not None:
        manifest = json.loads((copy / "manifest.json").read_text())
        (copy / "manifest.json").write_text(json.dumps({**manifest, "spacing_mm": spacing_mm}))
    return copy


def test_a_copied_checkpoint_keeps_its_grid_through_the_manifest(tmp_path, fresh_checkpoint, caplog):
    from medseg.evaluation.inference import training_grid

    copy = _copy_out_of_its_run(fresh_checkpoint, tmp_path, spacing_mm=2.73438)
    assert training_grid(copy) == (2.73438, copy / "manifest.json")
    scan = write_scan(tmp_path / "scan.nii.gz", shape=(1, 120, 130), spacing=(1.2, 1.2, 8.0))
    with caplog.at_level("INFO"):
        assert main(["--checkpoint", str(copy), "--input", str(scan), "--output", str(tmp_path / "s.nii.gz"),
                     "--n_iter", "1"]) == 0
    assert "2.7344 mm grid" in caplog.text and "96 x 96" in caplog.text and "no record" not in caplog.text


def test_a_checkpoint_without_a_grid_record_is_a_warning_and_spacing_mm_sets_it(tmp_path, fresh_checkpoint, caplog):
    from medseg.evaluation.inference import training_grid

    copy = _copy_out_of_its_run(fresh_checkpoint, tmp_path)
    assert training_grid(copy) == (None, None)
    scan = write_scan(tmp_path / "scan.nii.gz", shape=(1, 120, 130), spacing=(1.2, 1.2, 8.0))
    with caplog.at_level("INFO"):
        assert main(["--checkpoint", str(copy), "--input", str(scan), "--output", str(tmp_path / "a.nii.gz"),
                     "--n_iter", "1"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no record of the grid" in warnings[0] and "--spacing_mm" in warnings[0]
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["--checkpoint", str(copy), "--input", str(scan), "--output", str(tmp_path / "b.nii.gz"),
                     "--n_iter", "1", "--spacing_mm", "2.73438"]) == 0
    assert "96 x 96" in caplog.text and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_bad_grid_record_names_the_manifest(tmp_path, fresh_checkpoint):
    from medseg.evaluation.inference import training_grid

    copy = _copy_out_of_its_run(fresh_checkpoint, tmp_path, spacing_mm="2.7")
    with pytest.raises(ValueError, match=r"manifest\.json: spacing_mm: expected a positive spacing"):
        training_grid(copy)


def test_two_scans_with_one_output_name_are_refused_before_any_work(tmp_path, fresh_checkpoint, capsys):
    scans = tmp_path / "scans"
    write_scan(scans / "scan.nii.gz")
    write_scan(scans / "scan.nii")
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(fresh_checkpoint), "--input", str(scans), "--output", str(tmp_path / "segs")])
    line = _one_error_line(capsys)
    assert "expected one output per scan" in line and "scan_seg.nii.gz" in line
    assert not (tmp_path / "segs").exists()


def test_folder_input_with_a_file_like_output_and_unwritable_outputs_are_refused_up_front(tmp_path, fresh_checkpoint,
                                                                                          capsys):
    scans = tmp_path / "scans"
    write_scan(scans / "scan.nii.gz")
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(fresh_checkpoint), "--input", str(scans), "--output", str(tmp_path / "s.nii.gz")])
    assert "is named like a NIfTI file" in _one_error_line(capsys)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should go")
    with pytest.raises(SystemExit):  # before the model is loaded: the checkpoint given does not even exist
        main(["--checkpoint", str(tmp_path / "missing"), "--input", str(scans), "--output", str(blocker / "segs")])
    line = _one_error_line(capsys)
    assert "cannot create output folder" in line and str(blocker) in line


def test_a_stack_stored_along_another_axis_or_a_tiny_field_of_view_is_a_warning(tmp_path, echo_model, caplog):
    sideways = read_volume(write_scan(tmp_path / "sideways.nii.gz", shape=(116, 116, 14), spacing=(6.0, 3.0, 3.0)))
    tiny = read_volume(write_scan(tmp_path / "tiny.nii.gz", shape=(3, 20, 20), spacing=(3.0, 3.0, 8.0)))
    normal = read_volume(write_scan(tmp_path / "normal.nii.gz", shape=(2, 150, 180), spacing=(1.4, 1.4, 8.0)))
    for volume in (sideways, tiny, normal):
        with caplog.at_level("WARNING"):
            assert segment_volume(echo_model, volume, n_iter=1).shape == volume.array.shape  # still segmented
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not any("normal.nii.gz" in m for m in messages)
    assert any("sideways.nii.gz" in m and "must be reoriented" in m for m in messages)
    assert [m for m in messages if "tiny.nii.gz" in m] == [m for m in messages if "field of view 60 x 60 mm" in m]
    assert len([m for m in messages if "tiny.nii.gz" in m]) == 1
