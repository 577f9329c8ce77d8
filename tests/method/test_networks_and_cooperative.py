"""The method core: DualNetworks and the cooperative-training functions work without the published model class, keep
nothing between calls, and train exactly as the published class (an adapter over them) does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from numerics import fp32_tolerance
from torch import nn

from medseg.method.cooperative import hard_example_generation, hard_example_losses, standard_losses
from medseg.method.mask_options import IMAGE_CODE_OPTIONS, SHAPE_CODE_OPTIONS, MaskOptions
from medseg.method.networks import DualNetworks
from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.nn.encoder_decoder import MODULE_NAMES
from medseg.training.step import LOSS_KEYS, train_step


def _batch(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(n, 1, size, size, generator=g)
    labels = torch.randint(0, 4, (n, size, size), generator=g)
    return images, labels


@pytest.fixture()
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_step_on_bare_networks_equals_the_published_model(single_thread):
    """train_step needs only the networks and an optimiser per network; DualNetworks.build initialises exactly as
    the published constructor, and both train to the same bits."""
    torch.manual_seed(0)
    published = AdvancedTripletReconSegmentationModel(device="cpu")
    torch.manual_seed(0)
    networks = DualNetworks.build(device="cpu", memory_format=torch.channels_last)
    bare = SimpleNamespace(networks=networks,
                           optimizers={name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in networks.items()})
    assert all(torch.equal(a, b) for a, b in zip(published.parameters(), networks.parameters()))
    images, labels = _batch()
    options = {"image_code_spec": MaskOptions("mse", "channel"), "shape_code_spec": MaskOptions("ce", "spatial")}
    for step in range(2):
        got = train_step(published, images, labels, True, generator=torch.Generator().manual_seed(step), **options)
        want = train_step(bare, images, labels, True, generator=torch.Generator().manual_seed(step), **options)
        assert [got.losses[k] for k in LOSS_KEYS] == [want.losses[k] for k in LOSS_KEYS]
        assert got.losses["loss/hard/total"] > 0
    for (name, a), b in zip(published.named_parameters(), networks.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(published.model.buffers(), networks.buffers()):
        assert torch.equal(a, b)
    assert published.z_i is None and published.z_s is None  # train_step keeps no codes on the model


def test_the_functions_keep_nothing_between_calls(single_thread):
    torch.manual_seed(1)
    networks = DualNetworks.build()
    images, labels = _batch()
    attributes = set(vars(networks))
    standard = standard_losses(networks, images, labels, images)
    z_i, z_s = standard.codes
    assert z_i.shape == z_s.shape == (2, 128, 2, 2) and set(standard.parts) == {"seg", "image", "shape", "gt_shape"}
    assert torch.allclose(standard.total, sum(standard.parts.values()))
    hard = [hard_example_generation(networks, images, labels, standard.codes, IMAGE_CODE_OPTIONS, SHAPE_CODE_OPTIONS,
                                    generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    (image_a, seg_a), (image_b, seg_b) = hard
    assert image_a.shape == images.shape and seg_a.shape == (2, 4, 32, 32)
    assert not image_a.requires_grad and not seg_a.requires_grad
    # the same codes and seed give the same hard examples (BN statistics are not tracked by the decoding)
    assert torch.allclose(image_a, image_b) and torch.allclose(seg_a, seg_b)
    total, parts = hard_example_losses(networks, image_a, images, seg_a, labels)
    assert torch.allclose(parts["shape"], parts["pred_shape"] + parts["corrupt_shape"])
    assert torch.allclose(total, parts["seg"] + parts["image"] + parts["shape"])
    assert set(vars(networks)) == attributes
    only_shape = hard_example_generation(networks, images, labels, (None, z_s), None, SHAPE_CODE_OPTIONS)
    assert only_shape[0] is None and only_shape[1].shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="no latent code for image_decoder"):
        hard_example_generation(networks, images, labels, (None, z_s), IMAGE_CODE_OPTIONS, None)


def test_dual_networks_is_the_published_model_dict():
    model = AdvancedTripletReconSegmentationModel(device="cpu")
    assert model.model is model.networks and tuple(model.model) == MODULE_NAMES
    replacement = nn.SyncBatchNorm.convert_sync_batchnorm(model.model["shape_decoder"])  # as a multi-GPU run does
    model.model["shape_decoder"] = replacement
    assert model.networks["shape_decoder"] is replacement
    model.eval()
    assert not model.training and not any(m.training for m in model.networks.modules())
    model.train()
    assert model.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="needs the modules"):
        DualNetworks({name: module for name, module in model.model.items() if name != "image_decoder"})


def test_predict_equals_the_unfolded_eval_forward(single_thread):
    torch.manual_seed(2)
    networks = DualNetworks.build()
    images, _ = _batch()
    got = networks.predict(images, n_iter=2)
    assert not networks.training
    with torch.no_grad():
        _, initial = networks.segment(images)
        want = networks.refine(initial)
    path = [networks[name] for name in ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder")]
    assert got.shape == (2, 4, 32, 32) and (got - want).abs().max() <= fp32_tolerance(want, *path)  # rounding only
    probabilities = networks.predict(images, n_iter=1, softmax=True)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2, 32, 32), atol=1e-5)
