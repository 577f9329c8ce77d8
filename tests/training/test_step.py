import math

import pytest
import torch
from torch import nn

from medseg.nn.blocks import AutocastForward
from medseg.models.model_util import MaskSpec
from medseg.training.step import LOSS_KEYS, StepOutput, train_step
from medseg.nn.precision import compute_precision, cpu_supports_bf16, emulated_bf16

pytestmark = pytest.mark.usefixtures("single_thread")

TARGETED = dict(image_code_spec=MaskSpec("mse", "channel"), shape_code_spec=MaskSpec("ce", "spatial"))
#: The same masking as keywords of the model's hard_example_generation.
TARGETED_GEN = dict(corrupted_image_DA_config=TARGETED["image_code_spec"],
                    corrupted_seg_DA_config=TARGETED["shape_code_spec"])


def _tracked(model):
    return {
        name: sum(int(m.num_batches_tracked) for m in module.modules() if isinstance(m, nn.BatchNorm2d))
        // sum(1 for m in module.modules() if isinstance(m, nn.BatchNorm2d))
        for name, module in model.model.items()
    }


def test_loss_keys_and_standard_training(make_model, batch):
    model = make_model()
    out = train_step(model, *batch, latent_da=False)
    assert isinstance(out, StepOutput)
    assert tuple(out.losses) == LOSS_KEYS
    assert all(isinstance(v, float) for v in out.losses.values())
    assert all(out.losses[k] == 0.0 for k in LOSS_KEYS if k.startswith("loss/hard/"))
    parts = sum(out.losses[f"loss/standard/{k}"] for k in ("seg", "image", "shape", "gt_shape"))
    assert out.losses["loss/standard/total"] == pytest.approx(parts, rel=1e-5)
    assert out.losses["loss/total"] == pytest.approx(out.losses["loss/standard/total"])
    assert out.corrupted_image is None and out.corrupted_seg is None


def test_cooperative_step_outputs(make_model, batch):
    model = make_model()
    images, labels = batch
    out = train_step(model, images, labels, latent_da=True, generator=torch.Generator().manual_seed(0), **TARGETED)
    assert out.corrupted_image.shape == images.shape and out.corrupted_seg.shape == (2, 4, 32, 32)
    assert not out.corrupted_image.requires_grad and 0 < out.corrupted_image.min() <= out.corrupted_image.max() < 1
    hard = sum(out.losses[f"loss/hard/{k}"] for k in ("seg", "image", "shape"))
    assert out.losses["loss/hard/total"] == pytest.approx(hard, rel=1e-5) and hard > 0
    assert out.losses["loss/total"] == pytest.approx(out.losses["loss/standard/total"] + hard, rel=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # decoders unfrozen again
    only_image = train_step(model, images, labels, latent_da=True, mask_scope=["image code"])
    assert only_image.corrupted_seg is None and only_image.corrupted_image is not None


@pytest.mark.parametrize(
    "specs,expected",
    [
        (TARGETED, dict(image_encoder=1, segmentation_decoder=2, image_decoder=3, shape_encoder=2, shape_decoder=2)),
        (
            dict(image_code_spec=MaskSpec("mse", "dropout"), shape_code_spec=MaskSpec("ce", "dropout")),
            dict(image_encoder=1, segmentation_decoder=1, image_decoder=2, shape_encoder=2, shape_decoder=2),
        ),
        (None, dict(image_encoder=1, segmentation_decoder=1, image_decoder=1, shape_encoder=2, shape_decoder=2)),
    ],
)
def test_bn_tracking_increments_per_iteration(make_model, batch, specs, expected):
    model = make_model()
    before = _tracked(model)
    train_step(model, *batch, latent_da=specs is not None, **(specs or {}))
    after = _tracked(model)
    assert {k: after[k] - before[k] for k in after} == expected


def test_hard_losses_gradient_flow(make_model, batch):
    """Hard losses give conv weights gradients but no BN affine gradients, except in the image decoder."""
    model = make_model()
    images, labels = batch
    model.train()
    model.standard_losses(images, labels, images)
    corrupted_image, corrupted_seg = model.hard_example_generation(images, labels, **TARGETED_GEN)
    assert corrupted_image.grad_fn is None and corrupted_seg.grad_fn is None
    model.zero_grad()
    hard_total, _ = model.hard_example_losses(corrupted_image, images, corrupted_seg, labels)
    hard_total.backward()
    for name, module in model.model.items():
        for mod_name, sub in module.named_modules():
            if isinstance(sub, nn.BatchNorm2d):
                has_grad = sub.weight.grad is not None and sub.bias.grad is not None
                assert has_grad == (name == "image_decoder"), f"{name}.{mod_name}"
            elif isinstance(sub, nn.Conv2d):
                assert sub.weight.grad is not None and sub.weight.grad.abs().sum() > 0, f"{name}.{mod_name}"


def test_standard_losses_reach_every_parameter_and_separate_training(make_model, batch):
    model = make_model()
    images, labels = batch
    model.train()
    total, _ = model.standard_losses(images, labels, images)
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    _, parts = model.standard_losses(images, labels, images, separate_training=True)
    parts["shape"].backward()
    assert all(p.grad is None for n in ("image_encoder", "segmentation_decoder") for p in model.model[n].parameters())
    assert all(p.grad is not None for p in model.model["shape_encoder"].parameters())


def test_after_backward_sees_gradients_before_the_step(make_model, batch):
    model = make_model()
    seen = []
    weight = model.model["image_encoder"].general_encoder.inc[0].weight
    before = weight.detach().clone()

    def hook():
        seen.append((weight.grad is not None, torch.equal(weight, before)))

    train_step(model, *batch, latent_da=True, after_backward=hook)
    assert seen == [(True, True)]
    assert not torch.equal(weight, before)


def test_seeded_steps_are_reproducible(make_model, batch):
    outs = []
    for _ in range(2):
        model = make_model(seed=1)
        g = torch.Generator().manual_seed(11)
        outs.append([train_step(model, *batch, latent_da=True, generator=g).losses for _ in range(2)])
    assert outs[0] == outs[1]


def test_cooperative_training_decreases_loss(make_model):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 32, 32, generator=g)
    labels = (images[:, 0] > 0.5).long() + (images[:, 0] > 0.8).long()
    model = make_model(learning_rate=1e-3)
    losses = [train_step(model, images, labels, latent_da=True, generator=g).losses["loss/total"] for _ in range(6)]
    assert losses[-1] < losses[0], losses


def test_invalid_batches_are_refused(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="labels must be"):
        train_step(model, torch.rand(2, 1, 32, 32), torch.zeros(2, 16, 16, dtype=torch.long), latent_da=False)
    with pytest.raises(TypeError, match="integer"):
        train_step(model, torch.rand(2, 1, 32, 32), torch.zeros(2, 32, 32), latent_da=False)
    with pytest.raises(ValueError, match="mask_scope"):
        train_step(model, torch.rand(2, 1, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long), True, mask_scope=["z"])


@pytest.mark.gpu
def test_train_step_on_cuda_with_cpu_generator(make_model, batch):
    model = make_model(device="cuda")
    out = train_step(model, *batch, latent_da=True, generator=torch.Generator().manual_seed(0), **TARGETED)
    assert out.corrupted_seg.device.type == "cuda"


def test_backward_now_gives_the_gradients_of_one_backward(make_model, batch):
    images, labels = batch
    grads = []
    for backward_now in (False, True):
        model = make_model(seed=3)
        model.train()
        gen = torch.Generator().manual_seed(5)
        total, parts = model.standard_losses(images, labels, images, backward_now=backward_now)
        corrupted = model.hard_example_generation(images, labels, generator=gen, **TARGETED_GEN)
        image, seg = corrupted
        hard, hard_parts = model.hard_example_losses(image, images, seg, labels, backward_now=backward_now)
        if not backward_now:
            (total + hard).backward()
        else:
            assert not total.requires_grad and not hard.requires_grad
        grads.append(([p.grad.clone() for p in model.parameters()], total.detach().item(), hard.detach().item()))
    (ref, ref_total, ref_hard), (got, got_total, got_hard) = grads
    assert got_total == pytest.approx(ref_total, rel=1e-6) and got_hard == pytest.approx(ref_hard, rel=1e-6)
    for a, b in zip(ref, got):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


needs_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")


def _circle_batch(n: int = 4, size: int = 32):
    g = torch.Generator().manual_seed(7)
    images = torch.rand(n, 1, size, size, generator=g) * 0.2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2).long().expand(n, size, size).clone()
    return images + 0.6 * labels[:, None], labels


@pytest.mark.parametrize("precision", [pytest.param("bf16", marks=needs_bf16), "bf16_emulated"])
def test_bf16_step_trains_with_fp32_state_and_losses_close_to_fp32(make_model, precision):
    """Tolerance: bf16 keeps 8 mantissa bits; on this small random net the standard losses stay within 5 % of fp32,
    the hard losses (which also depend on the discrete mask choice) within 10 %. ``bf16_emulated`` is the same step
    with the convolutions computed as native bf16 ones are (as the training loop runs it), on any CPU."""
    images, labels = _circle_batch()
    fp32, bf16 = make_model(seed=2), make_model(seed=2)
    for i in range(3):
        ref = train_step(fp32, images, labels, True, generator=torch.Generator().manual_seed(i), precision="fp32",
                         **TARGETED).losses
        with emulated_bf16(precision):
            out = train_step(bf16, images, labels, True, generator=torch.Generator().manual_seed(i),
                             precision=compute_precision(precision), **TARGETED)
        assert tuple(out.losses) == LOSS_KEYS and all(math.isfinite(v) for v in out.losses.values())
        for key, rel in (("loss/standard/seg", 0.05), ("loss/standard/image", 0.05), ("loss/hard/total", 0.1)):
            assert out.losses[key] == pytest.approx(ref[key], rel=rel), key
    assert out.corrupted_image.shape == images.shape and out.corrupted_image.dtype == torch.float32
    assert out.corrupted_seg.shape == (4, 4, 32, 32) and out.corrupted_seg.dtype == torch.float32
    for module in bf16.model.values():  # parameters, Adam moments and BN statistics stay fp32
        assert all(p.dtype == torch.float32 for p in module.parameters())
        assert all(b.dtype in (torch.float32, torch.int64) for b in module.buffers())
    for optimizer in bf16.optimizers.values():
        assert all(s["exp_avg"].dtype == torch.float32 for s in optimizer.state.values())
    assert all(sub.compute_precision == "bf16" for m in bf16.model.values() for sub in m.modules()
               if isinstance(sub, AutocastForward))  # the step leaves the networks in bf16 (decoders restored)


@needs_bf16
def test_bf16_masking_probes_run_in_fp32(make_model, batch, monkeypatch):
    """The gradient probes see fp32 decoders (bf16 gradients would change which entries are masked)."""
    import medseg.method.masking as masking

    seen = []
    original = masking.targeted_mask_scores

    def spy(code, decoder, *args):
        seen.append((code.dtype, {sub.compute_precision for sub in decoder.modules() if isinstance(sub,
                                                                                                 AutocastForward)}))
        code, grad = original(code, decoder, *args)
        seen.append(grad.dtype)
        return code, grad

    monkeypatch.setattr(masking, "targeted_mask_scores", spy)
    train_step(make_model(), *batch, latent_da=True, precision="bf16", **TARGETED)
    assert seen == [(torch.float32, {"fp32"}), torch.float32] * 2


def test_fp16_with_a_gradient_scaler_and_its_absence(make_model, batch):
    model = make_model()
    with pytest.raises(ValueError, match="GradScaler"):
        train_step(model, *batch, latent_da=True, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        train_step(model, *batch, latent_da=True, precision="fp8")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = [p.detach().clone() for p in model.parameters()]
    for i in range(3):
        out = train_step(model, *batch, latent_da=True, precision="fp16", scaler=scaler,
                         generator=torch.Generator().manual_seed(i), **TARGETED)
        assert all(math.isfinite(v) for v in out.losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())
