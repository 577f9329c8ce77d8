"""Precision names, device checks and autocast helpers."""

from __future__ import annotations

import pytest
import torch

from medseg.nn import precision as prec


def test_unknown_precision_names_the_key() -> None:
    with pytest.raises(ValueError,
                       match=r"--precision: expected one of \['fp32', 'tf32', 'bf16', 'fp16'\], got 'half'"):
        prec.check_precision("half", torch.device("cpu"), key="--precision")
    with pytest.raises(ValueError, match="precision must be one of"):
        prec.precision_dtype("fp64")


def test_fp16_needs_cuda_and_bf16_needs_native_cpu_support(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert prec.check_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match=r"learning.precision: 'fp16' cannot run on cpu: fp16 needs a CUDA device"):
        prec.check_precision("fp16", cpu, key="learning.precision")
    monkeypatch.setattr(prec, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ValueError, match="no native bf16 support"):
        prec.check_precision("bf16", cpu, key="--precision")
    monkeypatch.setattr(prec, "cpu_supports_bf16", lambda: True)
    assert prec.check_precision("bf16", cpu) == "bf16"


def test_autocast_and_scaler() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with prec.autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32
    with prec.autocast("bf16", torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert prec.make_grad_scaler("fp32", torch.device("cpu")) is None
    assert prec.make_grad_scaler("bf16", torch.device("cpu")) is None
    assert isinstance(prec.make_grad_scaler("fp16", torch.device("cpu")), torch.amp.GradScaler)
