"""Precision names, device checks and autocast helpers."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from medseg.nn import precision as prec


def test_unknown_precision_names_the_key() -> None:
    with pytest.raises(ValueError,
                       match=r"--precision: expected one of \['fp32', 'tf32', 'bf16', 'bf16_emulated', 'fp16'\], "
                             r"got 'half'"):
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


def test_bf16_emulated_runs_on_any_cpu_and_nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "cpu_supports_bf16", lambda: False)
    assert prec.check_precision("bf16_emulated", torch.device("cpu")) == "bf16_emulated"
    assert "bf16_emulated" in prec.precision_problem("bf16", torch.device("cpu"))  # the refusal names the way out
    with pytest.raises(ValueError, match="bf16_emulated is for CPUs without native bf16; use bf16 on cuda"):
        prec.check_precision("bf16_emulated", torch.device("cuda"))
    assert prec.compute_precision("bf16_emulated") == "bf16"
    assert prec.precision_dtype("bf16_emulated") is torch.bfloat16
    assert "bf16_emulated" not in prec.INFERENCE_PRECISIONS


def _conv_and_grads(transposed: bool, dtype: torch.dtype) -> list[torch.Tensor]:
    """A convolution (stride 2, bias) and its three gradients, on fixed bf16-valued operands in ``dtype``."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 13, 11, generator=g).bfloat16().to(dtype).requires_grad_()
    shape = (6, 5, 3, 3) if transposed else (5, 6, 3, 3)
    w = (torch.randn(*shape, generator=g) * 0.3).bfloat16().to(dtype).requires_grad_()
    b = torch.randn(5, generator=g).bfloat16().to(dtype).requires_grad_()
    conv = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    y = conv(x, w, b, stride=2, padding=1)
    grad_y = torch.randn(y.shape, generator=g).bfloat16().to(dtype)
    return [y, *torch.autograd.grad(y, (x, w, b), grad_y)]


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "conv_transpose"])
def test_emulated_bf16_are_correctly_rounded(transposed: bool) -> None:
    """A native bf16 convolution multiplies bf16 values exactly and sums in fp32: each result is the exact one
    rounded once to bf16. The emulation must give that (within one bf16 step of the float64 result, the fp32 sums'
    order aside), forward and backward, with bf16 results; the plain fp32 result rounded to bf16 is bit-exact."""
    reference = _conv_and_grads(transposed, torch.float64)
    with prec.emulated_bf16("bf16_emulated"):
        emulated = _conv_and_grads(transposed, torch.bfloat16)
    step = torch.finfo(torch.bfloat16).eps
    for name, got, exact in zip(("output", "grad input", "grad weight", "grad bias"), emulated, reference):
        assert got.dtype == torch.bfloat16, name
        error = (got.double() - exact).abs()
        assert bool((error <= step * exact.abs() + 1e-6 * exact.abs().max()).all()), name
    fp32 = _conv_and_grads(transposed, torch.float32)
    assert all(torch.equal(e, f.bfloat16()) for e, f in zip(emulated, fp32))


def test_emulated_bf16_matrix_products_are_correctly_rounded() -> None:
    """A linear layer under bf16 autocast (addmm forward, mm backward) and a batched product: the same one rounding
    as a native kernel, within one bf16 step of float64."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 40, generator=g).bfloat16()
    w, b = torch.randn(7, 40, generator=g).bfloat16(), torch.randn(7, generator=g).bfloat16()
    a, c = torch.randn(3, 5, 40, generator=g).bfloat16(), torch.randn(3, 40, 4, generator=g).bfloat16()
    grad_y = torch.randn(6, 7, generator=g).bfloat16()

    def products(dtype: torch.dtype) -> list[torch.Tensor]:
        xx, ww, bb = (t.to(dtype).requires_grad_() for t in (x, w, b))
        y = torch.nn.functional.linear(xx, ww, bb)
        return [y, *torch.autograd.grad(y, (xx, ww), grad_y.to(dtype)), torch.bmm(a.to(dtype), c.to(dtype))]

    with prec.emulated_bf16("bf16_emulated"):
        emulated = products(torch.bfloat16)
    step = torch.finfo(torch.bfloat16).eps
    for name, got, exact in zip(("linear", "grad input", "grad weight", "bmm"), emulated, products(torch.float64)):
        assert got.dtype == torch.bfloat16, name
        error = (got.double() - exact).abs()
        assert bool((error <= step * exact.abs() + 1e-6 * exact.abs().max()).all()), name


def test_emulation_changes_nothing_but_bf16_products() -> None:
    fp32 = _conv_and_grads(False, torch.float32)
    x = torch.randn(3, 4)
    with prec.emulated_bf16("bf16_emulated"):  # fp32 operands: the real fp32 kernel, bit for bit
        again = _conv_and_grads(False, torch.float32)
        inside = (x @ x.T, torch.nn.functional.relu(x.bfloat16()))
    assert torch.equal(inside[0], x @ x.T) and inside[1].dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(fp32, again))
    for precision in ("fp32", "tf32", "bf16", "fp16"):  # other precisions enter no dispatch mode
        with prec.emulated_bf16(precision):
            assert _get_current_dispatch_mode() is None
    with prec.emulated_bf16("bf16_emulated"):
        assert _get_current_dispatch_mode() is not None
    assert _get_current_dispatch_mode() is None


def test_bf16_where_native_resolves_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(prec, "cpu_supports_bf16", lambda: False)
    assert prec.resolve_precision("bf16_where_native", cpu) == "fp32"
    monkeypatch.setattr(prec, "cpu_supports_bf16", lambda: True)
    assert prec.resolve_precision("bf16_where_native", cpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert prec.resolve_precision("bf16_where_native", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert prec.resolve_precision("bf16_where_native", torch.device("cuda")) == "fp32"
    for concrete in prec.PRECISIONS:  # a concrete precision is left as it is (and checked later)
        assert prec.resolve_precision(concrete, torch.device("cuda")) == concrete
    assert "bf16_where_native" in prec.TRAINING_PRECISIONS and "bf16_where_native" not in prec.PRECISIONS
