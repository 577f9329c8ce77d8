import pytest
import torch
from torch import nn

from medseg.models.losses import cross_entropy_2d, masking_cross_entropy_2d
from medseg.models.model_util import (
    MaskSpec,
    _disable_tracking_bn_stats,
    make_one_hot,
    mask_latent_code_channel_wise,
    mask_latent_code_dropout,
    mask_latent_code_spatial_wise,
    perturb_latent_code,
    top_fraction_mask,
)


class ScaledIdentity(nn.Module):
    """Decoder ``z -> z * weight``: with loss 'corr' and an all-ones target, d loss / d z = weight / numel."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, z):
        return z * self.weight


def _channel_decoder(values):
    return ScaledIdentity(torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1))


# signed scores: the two largest *positive* channels are 1 and 6; channel 3 has the largest magnitude but is negative
CHANNEL_SCORES = [0.1, 0.9, -0.3, -5.0, 0.2, 0.0, 0.7, -0.1]


def test_channel_mask_selects_largest_signed_gradient():
    code = torch.rand(3, 8, 4, 4) + 0.1
    decoder = _channel_decoder(CHANNEL_SCORES)
    target = torch.ones(3, 8, 4, 4)
    masked, mask = mask_latent_code_channel_wise(code, decoder, target, percentile=0.25, loss_type="corr")
    assert mask.shape == (3, 8, 1, 1)
    dropped = (mask[:, :, 0, 0] == 0).nonzero()[:, 1].view(3, -1)
    assert dropped.tolist() == [[1, 6]] * 3  # k = int(8 * 0.25) = 2, sign kept (channel 3 untouched)
    assert torch.equal(masked, code * mask)
    assert decoder.weight.grad is None  # autograd.grad: no parameter .grad written


def test_spatial_mask_selects_largest_signed_gradient():
    weight = torch.zeros(1, 1, 4, 4)
    weight[0, 0, 0, 1], weight[0, 0, 2, 3], weight[0, 0, 3, 3], weight[0, 0, 1, 1] = 2.0, 3.0, 1.0, -10.0
    decoder = ScaledIdentity(weight)
    code = torch.rand(2, 5, 4, 4)
    masked, mask = mask_latent_code_spatial_wise(code, decoder, torch.ones(2, 5, 4, 4), percentile=3 / 16 + 1e-6)
    assert mask.shape == (2, 1, 4, 4)
    expected = torch.ones(4, 4)
    expected[0, 1] = expected[2, 3] = expected[3, 3] = 0
    assert torch.equal(mask[0, 0], expected) and torch.equal(mask[1, 0], expected)
    assert torch.equal(masked, code * mask)


@pytest.mark.parametrize("percentile,expected", [(0.5, 32), (0.25, 16), (1 / 3, 21), (0.01, 0)])
def test_exact_count_of_masked_channels(percentile, expected):
    torch.manual_seed(0)
    decoder = _channel_decoder(torch.randn(64).tolist())
    code = torch.rand(2, 64, 2, 2)
    _, mask = mask_latent_code_channel_wise(code, decoder, torch.ones(2, 64, 2, 2), percentile=percentile)
    assert (mask == 0).sum(dim=1).flatten().tolist() == [expected, expected]


def test_k_zero_masks_nothing():
    code = torch.rand(2, 8, 2, 2)
    decoder = _channel_decoder(CHANNEL_SCORES)
    masked, mask = mask_latent_code_spatial_wise(code, decoder, torch.ones(2, 8, 2, 2), percentile=0.2)
    assert torch.equal(mask, torch.ones_like(mask)) and torch.equal(masked, code)


def test_soft_mask_values():
    decoder = _channel_decoder(torch.randn(64, generator=torch.Generator().manual_seed(1)).tolist())
    code = torch.rand(4, 64, 2, 2)
    _, hard = mask_latent_code_channel_wise(code, decoder, torch.ones(4, 64, 2, 2), percentile=0.5, if_soft=False)
    _, soft = mask_latent_code_channel_wise(code, decoder, torch.ones(4, 64, 2, 2), percentile=0.5, if_soft=True)
    dropped = hard == 0
    assert dropped.sum() == 4 * 32
    assert torch.equal(soft[~dropped], torch.ones(int((~dropped).sum())))
    values = soft[dropped]
    assert values.min() >= 0 and values.max() < 0.5 and values.unique().numel() > 100


def test_top_fraction_mask_ties_use_strict_greater():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert top_fraction_mask(scores, 0.25).sum() == 0  # threshold = sorted[1] = 1.0, nothing strictly greater
    assert top_fraction_mask(scores, 0.75).tolist() == [[True, True, True, False]]


def test_random_threshold_reproducible_with_generator():
    decoder = _channel_decoder(torch.randn(64).tolist())
    code, target = torch.rand(2, 64, 2, 2), torch.ones(2, 64, 2, 2)
    kwargs = dict(percentile=0.5, random=True, if_soft=True)
    _, m1 = mask_latent_code_channel_wise(code, decoder, target, generator=torch.Generator().manual_seed(7), **kwargs)
    _, m2 = mask_latent_code_channel_wise(code, decoder, target, generator=torch.Generator().manual_seed(7), **kwargs)
    _, m3 = mask_latent_code_channel_wise(code, decoder, target, generator=torch.Generator().manual_seed(8), **kwargs)
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    assert (m1 < 1).sum(dim=1).max() <= 32


def test_probe_losses_ce_and_mse_on_label_maps():
    decoder = nn.Conv2d(8, 3, 1)
    code, label = torch.rand(2, 8, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for loss in ("ce", "mse", "corr"):
        _, mask = mask_latent_code_channel_wise(code, decoder, label, num_classes=3, percentile=0.5, loss_type=loss)
        assert (mask == 0).sum() == 2 * 4
    with pytest.raises(ValueError, match="num_classes"):
        mask_latent_code_channel_wise(code, decoder, label, num_classes=2, loss_type="mse")


def test_probe_runs_in_current_mode_with_bn_tracking():
    decoder = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)).train()
    code = torch.rand(2, 8, 4, 4)
    mask_latent_code_spatial_wise(code, decoder, torch.ones(2, 8, 4, 4), percentile=0.5, loss_type="mse")
    assert decoder[1].num_batches_tracked.item() == 1
    assert all(p.grad is None for p in decoder.parameters())


def test_dropout_keep_rate_scaling_and_true_mask():
    code = torch.rand(64, 128, 2, 2) + 0.5
    masked, keep = mask_latent_code_dropout(code, p=0.5, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (64, 128, 1, 1)
    assert 0.45 < keep.mean().item() < 0.55
    assert torch.allclose(masked, code * keep * 2.0)
    assert torch.equal((masked.abs().sum(dim=(2, 3), keepdim=True) > 0).float(), keep)
    same, keep2 = mask_latent_code_dropout(code, p=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, keep2) and torch.equal(masked, same)


def test_perturb_latent_code_covers_all_types():
    decoder = _channel_decoder(CHANNEL_SCORES)
    code = (torch.rand(2, 8, 4, 4) + 0.1).requires_grad_(True)
    target = torch.ones(2, 8, 4, 4)
    g = torch.Generator().manual_seed(0)
    for kind, mask_shape in (("dropout", (2, 8, 1, 1)), ("channel", (2, 8, 1, 1)), ("spatial", (2, 1, 4, 4))):
        out = perturb_latent_code(code, decoder, target, kind, threshold=0.5, loss_type="corr", generator=g)
        assert out.method == kind and out.mask.shape == mask_shape
        assert not out.code.requires_grad and out.code.grad_fn is None
    seen = {perturb_latent_code(code, decoder, target, "random", 0.5, generator=g).method for _ in range(40)}
    assert seen == {"dropout", "channel", "spatial"}
    with pytest.raises(ValueError, match="perturb_type"):
        perturb_latent_code(code, decoder, target, "gaussian")


def test_perturb_without_detach_keeps_graph():
    code = (torch.rand(2, 8, 4, 4) + 0.1).requires_grad_(True)
    decoder = _channel_decoder(CHANNEL_SCORES)
    out = perturb_latent_code(code, decoder, torch.ones(2, 8, 4, 4), "channel", 0.25, if_detach=False)
    out.code.sum().backward()
    assert torch.equal(code.grad, out.mask.expand_as(code))


def test_disable_tracking_bn_stats_restores_flags_separately():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4)).train()
    net[2].weight.requires_grad_(False)  # frozen before: must stay frozen (the published code unfroze it)
    net[2].track_running_stats = True
    with _disable_tracking_bn_stats(net):
        assert not net[1].track_running_stats and not net[1].weight.requires_grad and not net[1].bias.requires_grad
        out = net(torch.rand(2, 1, 5, 5))
    assert out.grad_fn is not None
    assert net[1].num_batches_tracked.item() == 0 and torch.equal(net[1].running_mean, torch.zeros(4))
    assert net[1].track_running_stats and net[1].weight.requires_grad and net[1].bias.requires_grad
    assert not net[2].weight.requires_grad and net[2].bias.requires_grad


def test_make_one_hot():
    label = torch.tensor([[[0, 1], [3, 2]]])
    one_hot = make_one_hot(label, 4)
    assert one_hot.shape == (1, 4, 2, 2) and one_hot.dtype == torch.float32
    assert torch.equal(one_hot.argmax(dim=1), label) and torch.equal(one_hot.sum(dim=1), torch.ones(1, 2, 2))


def test_cross_entropy_variants():
    logits, label = torch.randn(2, 4, 3, 3), torch.randint(0, 4, (2, 3, 3))
    ref = nn.functional.cross_entropy(logits, label)
    assert torch.allclose(masking_cross_entropy_2d(logits, label), ref, atol=1e-6)
    assert torch.allclose(cross_entropy_2d(logits, label), ref)
    soft = torch.randn(2, 4, 3, 3)
    # the masking variant averages over classes too (extra 1/C)
    assert torch.allclose(masking_cross_entropy_2d(logits, soft) * 4, cross_entropy_2d(logits, soft), atol=1e-6)


def test_mask_spec_validation():
    assert MaskSpec().loss_name == "mse"
    with pytest.raises(ValueError, match="loss_name"):
        MaskSpec(loss_name="l2")
    with pytest.raises(ValueError, match="mask_type"):
        MaskSpec(mask_type="noise")
    with pytest.raises(ValueError, match="max_threshold"):
        MaskSpec(max_threshold=1.5)
