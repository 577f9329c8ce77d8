"""``learning.lr_schedule``: constant (published) and cosine; the schedule follows the global iteration, so an
interrupted run resumes on it exactly, and a resume that would change the run length (hence the schedule) is refused."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
import torch
from training_helpers import COOPERATIVE, cli_args, run_dir, tiny_acdc, train_error  # noqa: F401

from medseg.config import LearningConfig
from medseg.training import loop
from medseg.training.loop import planned_iterations, scheduled_lr, set_learning_rate
from medseg.cli.train import main

SNAPSHOT = Path("model") / "last" / "checkpoints" / "FCN_16_standard.pkl"


def test_constant_schedule_is_the_published_rate() -> None:
    assert [scheduled_lr(1e-4, "constant", i, 10) for i in (0, 5, 10, 99)] == [1e-4] * 4


def test_cosine_starts_at_lr_halves_midway_and_ends_at_zero() -> None:
    values = [scheduled_lr(2e-3, "cosine", i, 100) for i in range(101)]
    assert values[0] == 2e-3
    assert math.isclose(values[50], 1e-3, rel_tol=1e-12)
    assert values[100] == pytest.approx(0.0, abs=1e-18)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert scheduled_lr(2e-3, "cosine", 150, 100) == pytest.approx(0.0, abs=1e-18)  # past the end: stays at 0
    with pytest.raises(ValueError, match="lr_schedule"):
        scheduled_lr(1e-3, "step", 0, 10)


def test_planned_iterations_honours_the_cap() -> None:
    assert planned_iterations(LearningConfig(n_epochs=10, max_iteration=None), 26) == 260
    assert planned_iterations(LearningConfig(n_epochs=10, max_iteration=100), 26) == 100
    assert planned_iterations(LearningConfig(n_epochs=2, max_iteration=100), 26) == 52


def test_set_learning_rate_reaches_every_group() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizers = [torch.optim.Adam([{"params": [params[0]]}, {"params": [params[1]]}], lr=1.0),
                  torch.optim.Adam([params[0]], lr=1.0)]
    set_learning_rate(optimizers, 0.25)
    assert [g["lr"] for o in optimizers for g in o.param_groups] == [0.25, 0.25, 0.25]


def test_unknown_schedule_is_a_config_error(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = train_error(capsys, cli_args(COOPERATIVE, tiny_acdc, tmp_path, "--set", "learning.lr_schedule=linear"))
    assert "learning.lr_schedule" in line and "cosine" in line


def _lrs(snapshot: dict) -> list[float]:
    return [g["lr"] for opt in snapshot["optimizer_state"].values() for g in opt["param_groups"]]


def test_cosine_run_resumes_exactly_and_refuses_a_new_length(tiny_acdc: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    schedule = ("--set", "learning.lr=0.002", "--set", "learning.lr_schedule=cosine")
    straight = tmp_path / "straight"
    assert main(cli_args(COOPERATIVE, tiny_acdc, straight, *schedule, epochs=3)) == 0
    done = torch.load(run_dir(straight) / SNAPSHOT, map_location="cpu", weights_only=True)
    total = done["global_iteration"]
    assert total > 3
    # the last step used the rate of iteration total - 1 (Adam keeps the group's lr)
    assert _lrs(done) == pytest.approx([scheduled_lr(0.002, "cosine", total - 1, total)] * len(_lrs(done)))

    # interrupt mid-epoch (SIGTERM to ourselves after a few steps), then resume: the resumed epoch's loader is
    # shorter, the schedule must not be
    real_step, calls = loop.train_step, {"n": 0}

    def step_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == total // 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*args, **kwargs)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(loop, "train_step", step_then_signal)
    assert main(cli_args(COOPERATIVE, tiny_acdc, resumed, *schedule, epochs=3)) == 128 + signal.SIGTERM
    monkeypatch.setattr(loop, "train_step", real_step)
    partial = torch.load(run_dir(resumed) / SNAPSHOT, map_location="cpu", weights_only=True)
    assert 0 < partial["global_iteration"] < total

    line = train_error(capsys, cli_args(COOPERATIVE, tiny_acdc, resumed, "--resume", "auto", *schedule, epochs=5))
    assert "learning.n_epochs" in line and "lr_schedule" in line

    assert main(cli_args(COOPERATIVE, tiny_acdc, resumed, "--resume", "auto", *schedule, epochs=3)) == 0
    again = torch.load(run_dir(resumed) / SNAPSHOT, map_location="cpu", weights_only=True)
    assert again["global_iteration"] == total
    for module, state in done["model_state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, again["model_state"][module][key]), f"{module}.{key} differs after resume"
    assert _lrs(again) == _lrs(done)


def test_a_worker_ended_by_sigterm_is_a_stop_request() -> None:
    from medseg.training.loop import worker_stopped_by_signal
    from medseg.training.signals import StopRequest

    stop = StopRequest()
    assert not worker_stopped_by_signal(RuntimeError("DataLoader worker (pid(s) 12) exited unexpectedly"), stop)
    assert not worker_stopped_by_signal(RuntimeError("DataLoader worker (pid 12) is killed by signal: Segmentation "
                                                     "fault. "), stop, grace_s=0.0)
    assert not worker_stopped_by_signal(RuntimeError("CUDA out of memory"), stop) and not stop.requested
    # a worker's end seen as its connection closing names no signal: a stop only with this process's own request
    assert not worker_stopped_by_signal(ConnectionResetError(104, "Connection reset by peer"), stop, grace_s=0.0)
    assert not stop.requested
    assert worker_stopped_by_signal(RuntimeError("DataLoader worker (pid 12) is killed by signal: Terminated. "), stop,
                                    grace_s=0.0)
    assert stop.signum == signal.SIGTERM
    stop.signum = signal.SIGINT  # our own handler ran first: its signal is kept
    assert worker_stopped_by_signal(RuntimeError("DataLoader worker (pid 9) is killed by signal: Terminated. "), stop)
    assert stop.signum == signal.SIGINT
    assert worker_stopped_by_signal(ConnectionResetError(104, "Connection reset by peer"), stop, grace_s=0.0)
