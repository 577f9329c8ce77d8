"""The non-finite guard: a NaN/Inf gradient stops the run before the step, or (skip) leaves weights and BN intact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.training.guards import MAX_CONSECUTIVE_SKIPS, NonFiniteGuard, TrainingDiverged


def tiny() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"net": nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))}


def step(modules, guard: NonFiniteGuard, poison: bool) -> None:
    optimizer = torch.optim.Adam(modules["net"].parameters(), lr=0.1)
    optimizer.zero_grad()
    guard.before_step("epoch 0, batch 0, iteration 5")
    x = torch.rand(2, 1, 6, 6)
    if poison:
        x[0, 0, 0, 0] = float("nan")
    modules["net"](x).sum().backward()
    guard.wrap(None)()
    optimizer.step()


def test_stop_raises_before_the_optimiser_step() -> None:
    modules = tiny()
    before = {k: v.detach().clone() for k, v in modules["net"].named_parameters()}
    guard = NonFiniteGuard(modules, "stop", "Lower learning.lr.")
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch 0, batch 0, iteration 5: non-finite "
                                               r"gradients in net; .*Lower learning.lr."):
        step(modules, guard, poison=True)
    after = dict(modules["net"].named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # the weights never saw the NaN gradients
    assert TrainingDiverged.exit_code == 1


def test_skip_keeps_weights_adam_state_and_batchnorm_statistics() -> None:
    modules = tiny()
    guard = NonFiniteGuard(modules, "skip")
    step(modules, guard, poison=False)
    snapshot = {k: v.clone() for k, v in modules["net"].state_dict().items()}
    step(modules, guard, poison=True)
    assert guard.skipped and guard.consecutive == 1
    after = modules["net"].state_dict()
    assert all(torch.equal(snapshot[k], after[k]) for k in snapshot), "a skipped step changes nothing"
    step(modules, guard, poison=False)
    assert not guard.skipped and guard.consecutive == 0
    assert all(torch.isfinite(v).all() for v in modules["net"].state_dict().values() if v.is_floating_point())


def test_skip_gives_up_after_too_many_consecutive_steps() -> None:
    modules = tiny()
    guard = NonFiniteGuard(modules, "skip")
    with pytest.raises(TrainingDiverged, match=f"{MAX_CONSECUTIVE_SKIPS} non-finite steps in a row"):
        for _ in range(MAX_CONSECUTIVE_SKIPS):
            step(modules, guard, poison=True)


def test_non_finite_loss_with_finite_gradients_is_handled_too() -> None:
    guard = NonFiniteGuard(tiny(), "stop")
    guard.before_step("epoch 1, batch 2, iteration 9")
    with pytest.raises(TrainingDiverged, match="non-finite losses loss/total"):
        guard.check_losses({"loss/total": float("inf"), "loss/standard/seg": 0.5})
