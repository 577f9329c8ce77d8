"""Non-finite guard of the training loop: no NaN/Inf gradient ever reaches the weights (config
``learning.on_non_finite``).

After every backward (and the distributed all-reduce, so that all processes decide alike) and before the five
optimiser steps, the largest absolute gradient of every parameter is checked (one fused reduction, exact: a max
never overflows). With ``"stop"`` a non-finite gradient raises :class:`TrainingDiverged` before the step, so the
weights, the last snapshot and ``model/best`` stay finite. With ``"skip"`` the gradients are dropped (an optimiser
skips parameters without ``.grad``, Adam's moments included), the BatchNorm running statistics of that forward pass are
restored, and training continues; :data:`MAX_CONSECUTIVE_SKIPS` skipped steps in a row still stop the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip")
MAX_CONSECUTIVE_SKIPS = 50


class TrainingDiverged(RuntimeError):
    """Training produced non-finite gradients or losses; nothing non-finite was applied or saved (exit code 1)."""

    exit_code = 1


def _max_abs(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``max |t|`` of every tensor as one vector (NaN propagates)."""
    if hasattr(torch, "_foreach_norm"):
        return torch.stack(torch._foreach_norm(tensors, float("inf")))
    return torch.stack([torch.linalg.vector_norm(t, float("inf")) for t in tensors])


class NonFiniteGuard:
    """Checks the gradients of ``modules`` once per iteration.

    Args:
        modules: name → module (the five networks).
        policy: ``"stop"`` or ``"skip"``.
        hint: extra advice for the error message (e.g. the learning rate in use).
    """

    def __init__(self, modules: Mapping[str, nn.Module], policy: str = "stop", hint: str = "") -> None:
        if policy not in POLICIES:
            raise ValueError(f"learning.on_non_finite: expected one of {POLICIES}, got {policy!r}")
        self.modules, self.policy, self.hint = dict(modules), policy, hint
        self.where = ""
        self.skipped = False
        self.consecutive = 0
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def before_step(self, where: str) -> None:
        """Call before each iteration; ``where`` names it in messages (with ``skip``: keeps the BN statistics)."""
        self.where, self.skipped = where, False
        if self.policy == "skip":
            self._buffers = [(b, b.detach().clone()) for m in self.modules.values() for b in m.buffers()]

    def wrap(self, after_backward: Callable[[], None] | None) -> Callable[[], None]:
        """An ``after_backward`` hook that runs ``after_backward`` (e.g. the all-reduce) and then the check."""
        def hook() -> None:
            if after_backward is not None:
                after_backward()
            self.check_gradients()
        return hook

    def check_gradients(self) -> None:
        """Raise or drop the gradients if any is NaN/Inf (see the module docstring)."""
        named = [(name, p.grad) for name, m in self.modules.items() for p in m.parameters() if p.grad is not None]
        if not named or bool(torch.isfinite(_max_abs([g for _, g in named])).all()):
            self.consecutive = 0
            return
        bad = sorted({name for name, g in named if not bool(torch.isfinite(g).all())})
        self._handle(f"non-finite gradients in {', '.join(bad)}")
        for module in self.modules.values():
            for p in module.parameters():
                p.grad = None
        with torch.no_grad():
            for buffer, saved in self._buffers:
                buffer.copy_(saved)

    def check_losses(self, losses: Mapping[str, float]) -> None:
        """After the step: a non-finite loss with finite gradients is handled like non-finite gradients."""
        bad = [k for k, v in losses.items() if not torch.isfinite(torch.tensor(float(v)))]
        if bad and not self.skipped:
            self._handle(f"non-finite losses {', '.join(bad)}")

    def _handle(self, what: str) -> None:
        if self.policy == "skip" and self.consecutive + 1 < MAX_CONSECUTIVE_SKIPS:
            self.consecutive += 1
            self.skipped = True
            logger.warning("%s: %s; optimiser step skipped (learning.on_non_finite = skip)", self.where, what)
            return
        reason = (f"{MAX_CONSECUTIVE_SKIPS} non-finite steps in a row" if self.policy == "skip" else what)
        raise TrainingDiverged(
            f"training diverged at {self.where}: {reason}; the weights were not updated with them and no non-finite "
            f"checkpoint was written. {self.hint}".strip())
