"""Non-finite guard of the training loop: no NaN/Inf gradient ever reaches the weights (config
``learning.on_non_finite``).

After every backward (and the distributed all-reduce of the gradients) and before the five optimiser steps,
:meth:`NonFiniteGuard.decide` checks the iteration's losses and the largest absolute gradient of every parameter (one
fused reduction, exact: a max never overflows). Whether anything is non-finite is all-reduced over the processes
(``reduce``) before any of them acts on it, so all ranks stop or skip together: a NaN loss seen by one rank alone
never leaves the others waiting in the next collective, and under ``skip`` every rank counts the same iterations.
The losses, the gradient check and the decision come to the host in one read (:func:`host_read`), the only host
synchronisation of a default (fp32) training iteration.

With ``"stop"`` a non-finite gradient raises :class:`TrainingDiverged` before the step, so the weights, the last
snapshot and ``model/best`` stay finite. With ``"skip"`` the gradients are dropped (an optimiser
skips parameters without ``.grad``, Adam's moments included), the BatchNorm running statistics of that forward pass are
restored, and training continues; :data:`MAX_CONSECUTIVE_SKIPS` skipped steps in a row still stop the run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip")
MAX_CONSECUTIVE_SKIPS = 50


class TrainingDiverged(RuntimeError):
    """Training produced non-finite gradients or losses; nothing non-finite was applied or saved (exit code 1)."""

    exit_code = 1


def host_read(values: torch.Tensor) -> list[float]:
    """The one device-to-host read of a training iteration (a function of its own so that tests can count it)."""
    return values.tolist()


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

    def __init__(self, modules: Mapping[str, nn.Module], policy: str = "stop", hint: str = "",
                 reduce: Callable[[torch.Tensor], None] | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"learning.on_non_finite: expected one of {POLICIES}, got {policy!r}")
        self.modules, self.policy, self.hint = dict(modules), policy, hint
        self.reduce = reduce  # in-place MAX all-reduce over the processes (None: one process)
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
        grads = [p.grad for m in self.modules.values() for p in m.parameters() if p.grad is not None]
        if not grads or bool(torch.isfinite(_max_abs(grads)).all()):
            self.consecutive = 0
            return
        self._handle(f"non-finite gradients in {', '.join(self._bad_gradient_modules())}")
        self._drop_gradients()

    def decide(self, losses: torch.Tensor, names: Sequence[str] = (), check_gradients: bool = True
               ) -> tuple[list[float], bool]:
        """Before the optimiser steps: read the losses and decide, on every process alike, whether to step.

        Args:
            losses: the iteration's loss values (a vector on the model's device).
            names: their names, for messages.
            check_gradients: also check the gradients (off under an fp16 GradScaler, whose scaled gradients overflow
                while it calibrates: the scaler skips those steps itself).

        Returns:
            ``(losses as floats, step)``: ``step`` is False when the step is skipped (policy ``skip``; the gradients
            were dropped and the BatchNorm statistics restored).

        Raises:
            TrainingDiverged: policy ``stop`` (or too many skips in a row) when any process saw a non-finite value.
        """
        losses = losses.detach().float().reshape(-1)
        flags = [(~torch.isfinite(losses)).any()]
        grads = [p.grad for m in self.modules.values() for p in m.parameters() if p.grad is not None]
        if check_gradients and grads:
            flags.append(~torch.isfinite(_max_abs(grads)).all())
        local = torch.stack(flags).float()
        if self.reduce is not None:
            self.reduce(local)
        values = host_read(torch.cat([losses, local.to(losses.device)]))
        n = losses.numel()
        floats, bad = values[:n], values[n:]
        if not any(bad):
            self.consecutive = 0
            return floats, True
        if len(bad) > 1 and bad[1]:
            self._handle(f"non-finite gradients in {', '.join(self._bad_gradient_modules())}")
        else:
            keys = [names[i] if i < len(names) else str(i) for i, v in enumerate(floats) if not math.isfinite(v)]
            self._handle(f"non-finite losses {', '.join(keys)}" if keys else "a non-finite loss in another process")
        self._drop_gradients()
        return floats, False

    def _bad_gradient_modules(self) -> list[str]:
        return sorted({name for name, m in self.modules.items() for p in m.parameters()
                       if p.grad is not None and not bool(torch.isfinite(p.grad).all())})

    def _drop_gradients(self) -> None:
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
