import torch
from torch import nn

from medseg.models.blocks import grad_in_forward_format
from medseg.models.encoder_decoder import MyDecoder
from medseg.models.fusion import FoldedModules, fold_batchnorm
from medseg.training.step import train_step
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
