"""Bad command lines and configs of ``medseg-train`` are user errors (one line, exit code 2) found before anything is
written; a signal before the training loop ends the run cleanly; a resumed run with nothing left to train says so."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from training_helpers import (  # noqa: F401
    REPO_ROOT,
    cli_args,
    run_dir,
    tiny_acdc,
    train_error,
    train_single_threaded,
)

from medseg.cli.train import main
from medseg.training import loop
from medseg.training.builders import STOP_REQUEST_LOGGER, seed_worker
from medseg.training.run_lock import LOCK_NAME

STD = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
NAME = "ACDC/standard_training"


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--seed", "-5", "--seed: expected an integer in [0, 4294967295] (2**32 - 1), got -5"),
    ("--seed", str(2**32), "--seed: expected an integer in [0, 4294967295] (2**32 - 1), got 4294967296"),
    ("--cval", "5", "argument --cval: invalid choice: 5"),
])
def test_bad_flag_is_refused_by_the_parser(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                           flag: str, value: str, expected: str) -> None:
    save_dir = tmp_path / "saved"
    argv = cli_args(STD, tiny_acdc, save_dir)
    argv[argv.index(flag) + 1] = value
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert not save_dir.exists()


@pytest.mark.parametrize(("setting", "extra", "expected"), [
    ("41", [], "data_setting '41': at most 40 labelled subjects are available"),
    ("four_shot", [], "unsupported data_setting 'four_shot'; shot settings: ['one_shot'"),
    ("2.5", [], "unsupported data_setting '2.5': expected a whole number of labelled subjects"),
    ("one_shot", ["--set", "data.dataset_name=MM"], "config key 'data.dataset_name': only ACDC training is supported"),
    ("one_shot", ["--set", "data.data_aug_policy=nope"], "config key 'data.data_aug_policy': expected one of"),
    ("one_shot", ["--set", "data.root_dir=/nonexistent/ACDC"],
     "config key 'data.root_dir': expected the ACDC data folder, got '/nonexistent/ACDC' (not found)"),
    ("one_shot", ["--set", "data.new_spacing=[0.01,0.01]"], "config key 'data.new_spacing': expected"),
])
def test_user_error_before_anything_is_written(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                               setting: str, extra: list[str], expected: str) -> None:
    save_dir = tmp_path / "saved"
    line = train_error(capsys, cli_args(STD, tiny_acdc, save_dir, *extra, setting=setting))
    assert expected in line and "report it" not in line, line
    assert not save_dir.exists()


def test_device_cuda_without_cuda_is_a_usage_error(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = cli_args(STD, tiny_acdc, tmp_path / "saved")
    argv[argv.index("--device") + 1] = "cuda"
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert "--device cuda: CUDA is not available" in err[0] and "report it" not in err[0]


def test_error_after_the_claim_leaves_no_empty_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty_root = tmp_path / "ACDC"  # exists, but holds no subject
    empty_root.mkdir()
    save_dir = tmp_path / "saved"
    line = train_error(capsys, cli_args(STD, empty_root, save_dir))
    assert "subject '002' (ES) has no image file" in line
    assert not save_dir.exists()  # the claim created save_dir/train_.../<config>/0 and removed it again


@pytest.mark.slow
def test_equal_numeric_settings_share_one_run_folder(tiny_acdc: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    save_dir = tmp_path / "saved"
    assert train_single_threaded(cli_args(STD, tiny_acdc, save_dir, setting="01", epochs=1)) == 0
    assert [p.name for p in save_dir.iterdir()] == ["train_ACDC_1_n_cls_4"]
    # "1" finds that run: --resume auto continues it rather than starting another folder
    assert train_single_threaded(cli_args(STD, tiny_acdc, save_dir, "--resume", "auto", setting="1", epochs=1)) == 0
    assert "the run is complete (epoch 1 of learning.n_epochs = 1)" in capsys.readouterr().err
    assert [p.name for p in save_dir.iterdir()] == ["train_ACDC_1_n_cls_4"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_loading_data_ends_cleanly(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    def interrupted_loading(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signum)  # the Python handler runs at the next bytecode boundary, inside this loading
        for _ in range(1000):
            sum(range(100))
        raise AssertionError("the signal did not stop the data loading")

    monkeypatch.setattr(loop, "build_data", interrupted_loading)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    save_dir = tmp_path / "saved"
    assert main(cli_args(STD, tiny_acdc, save_dir)) == 128 + signum
    err = capsys.readouterr().err
    assert f"received {signal.Signals(signum).name} while the training loop was not running" in err
    assert "Traceback" not in err and "nothing was trained" in err
    assert not (run_dir(save_dir, NAME) / LOCK_NAME).exists() and not save_dir.exists()
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the handlers of the caller are back


@pytest.fixture(scope="module")
def finished(tiny_acdc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run folder of a finished 1-epoch standard run."""
    save_dir = tmp_path_factory.mktemp("finished")
    assert train_single_threaded(cli_args(STD, tiny_acdc, save_dir, epochs=1)) == 0
    return run_dir(save_dir, NAME)


def _snapshot(run: Path) -> Path:
    return run / "model" / "last" / "checkpoints" / "FCN_16_standard.pkl"


@pytest.mark.slow
def test_resume_with_nothing_left_to_train_says_so(tiny_acdc: Path, finished: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    save_dir = tmp_path / "other"
    capsys.readouterr()
    argv = cli_args(STD, tiny_acdc, save_dir, "--resume_pkl_path", str(_snapshot(finished)), epochs=1)
    assert train_single_threaded(argv) == 0
    err = capsys.readouterr().err
    best = finished / "model" / "best" / "checkpoints"
    assert "is at epoch 1 >= learning.n_epochs = 1: nothing to train" in err and f"are in {best}" in err
    assert "finished: nothing trained" in err
    assert "checkpoints: " not in err  # this run folder has none: no line points at a folder that does not exist
    assert f"no best checkpoints in this run folder (nothing was trained here): the best model is {best}" in err
    assert not (run_dir(save_dir, NAME) / "model" / "best").exists()


@pytest.mark.slow
def test_snapshot_with_an_implausible_epoch_is_refused(tiny_acdc: Path, finished: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    snapshot = torch.load(_snapshot(finished), weights_only=True)
    iterations = snapshot["global_iteration"]
    snapshot["epoch"] = 10**6
    forged = tmp_path / "future.pkl"
    torch.save(snapshot, forged)
    save_dir = tmp_path / "saved"
    line = train_error(capsys, cli_args(STD, tiny_acdc, save_dir, "--resume_pkl_path", str(forged), epochs=1))
    assert f"future.pkl: 'epoch' 1000000 (batch 0) is implausible after 'global_iteration' {iterations}" in line
    assert not save_dir.exists()


class _StopLoggerState(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> bool:
        return logging.getLogger(STOP_REQUEST_LOGGER).disabled


def test_loader_workers_do_not_log_stop_requests() -> None:
    """Ctrl-C reaches the workers too: only the main process says that the run stops."""
    loader = DataLoader(_StopLoggerState(), batch_size=None, num_workers=1, worker_init_fn=seed_worker)
    assert list(loader) == [True, True]
    assert logging.getLogger(STOP_REQUEST_LOGGER).disabled is False  # the main process still logs it
