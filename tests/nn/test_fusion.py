import pytest
import torch
from torch import nn

from medseg.nn.blocks import grad_in_forward_format, set_compute_precision
from medseg.nn.encoder_decoder import Dual_Branch_Encoder, MyDecoder
from medseg.nn.fusion import FoldedModules, fold_batchnorm
from medseg.training.step import train_step
from medseg.nn.precision import cpu_supports_bf16
from numerics import fp32_tolerance

PATH = ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder")  # FTN + one STN pass


def _with_running_stats(module: nn.Module) -> nn.Module:
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(4, 128, 2, 2) * 3 + 1)
    return module.eval()


def test_fold_batchnorm_equals_eval_forward_and_leaves_original():
    torch.manual_seed(0)
    decoder = _with_running_stats(MyDecoder(128, 4))
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    folded = fold_batchnorm(decoder)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(v, before[k]) for k, v in decoder.state_dict().items())
    z = torch.randn(2, 128, 2, 2)
    with torch.no_grad():
        want, got = decoder(z), folded(z)
    assert (got - want).abs().max() <= fp32_tolerance(want, decoder)  # rounding only (tests/numerics.py)


def test_folded_cache_is_rebuilt_when_weights_change():
    torch.manual_seed(0)
    modules = {"dec": MyDecoder(128, 4).eval()}
    cache = FoldedModules(["dec"])
    first = cache.get(modules)["dec"]
    assert cache.get(modules)["dec"] is first
    with torch.no_grad():
        modules["dec"].up1.conv[1].running_var.mul_(2.0)
    assert cache.get(modules)["dec"] is not first


def test_predict_follows_training_updates(make_model, batch):
    model = make_model()
    images, labels = batch
    model.predict(images, n_iter=2)  # fills the cache
    train_step(model, images, labels, latent_da=False)
    got = model.predict(images, n_iter=2)
    with torch.no_grad():
        ftn = model.model["segmentation_decoder"](model.model["image_encoder"](images)[1])
        want = model.model["shape_decoder"](model.model["shape_encoder"](torch.softmax(ftn / 2, dim=1)))
    assert (got - want).abs().max() <= fp32_tolerance(want, *(model.model[name] for name in PATH))


def test_grad_in_forward_format_converts_only_the_gradient():
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = grad_in_forward_format(x)
    assert torch.equal(y, x)
    grad = torch.randn(2, 4, 8, 8)  # NCHW, as log_softmax returns it
    y.backward(grad)
    assert x.grad.is_contiguous(memory_format=torch.channels_last) and torch.equal(x.grad, grad)
    assert grad_in_forward_format(x.detach()) is not None


needs_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")


def _calibrated(make_model, images):
    """A model whose BN running statistics fit ``images`` (a random init predicts from running mean 0, var 1)."""
    model = make_model(seed=4)
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model.run(images)
    return model


@needs_bf16
def test_bf16_networks_return_fp32_close_to_fp32():
    """Tolerance: relative L2 error of the image code of a random network <= 5 % (about 2.4 % measured: 8-bit
    mantissas through 11 convolution + BatchNorm layers)."""
    torch.manual_seed(0)
    encoder = Dual_Branch_Encoder().train()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        z_i, z_s = encoder(x)
        set_compute_precision([encoder], "bf16")
        b_i, b_s = encoder(x)
        assert b_i.dtype == b_s.dtype == torch.float32
        assert (b_i - z_i).norm() <= 0.05 * z_i.norm() and (b_s - z_s).norm() <= 0.05 * z_s.norm()
        set_compute_precision([encoder], "fp32")
        with torch.autocast("cpu", dtype=torch.bfloat16):  # 'fp32' shields the network from a caller's autocast
            assert torch.equal(encoder(x)[0], z_i)
    with pytest.raises(ValueError, match="precision must be None or one of"):
        set_compute_precision([encoder], "float16")


@needs_bf16
def test_bf16_predict_is_close_to_fp32_and_follows_precision_changes(make_model):
    """Tolerance (random calibrated net, n_iter 1): mean |p_bf16 - p_fp32| <= 0.03, <= 5 % of pixels change class."""
    images = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    model = _calibrated(make_model, images)
    ref = model.predict(images, softmax=True, n_iter=1)
    set_compute_precision(model.model.values(), "bf16")
    low = model.predict(images, softmax=True, n_iter=1)
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert (low - ref).abs().mean() <= 0.03
    assert (low.argmax(1) != ref.argmax(1)).float().mean() <= 0.05
    assert model.predict(images, softmax=True, n_iter=2).shape == ref.shape
    set_compute_precision(model.model.values(), "fp32")  # the folded copies are rebuilt for the new precision
    assert torch.allclose(model.predict(images, softmax=True, n_iter=1), ref, atol=1e-5)
