"""The notebook's hard-example grids: shapes, threshold 0 = unmasked, growing masks, entropy, difference maps, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel as Model
from medseg.visualization import (
    METHODS,
    THRESHOLDS,
    corruption_grid,
    entropy_map,
    entropy_maps,
    hard_labels,
    label_change,
    masked_fraction,
    mean_abs_change,
    plot_example,
    plot_recon_diff,
    plot_reconstruction_grid,
    plot_segmentation_grid,
    recon_diff,
    save_figure,
    segmentation_probabilities,
)

HW = 64  # latent codes of 4 x 4 positions, 128 channels


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Single-threaded, also while the module-scoped grids are computed (see ``single_thread`` in conftest.py)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    return Model(use_gpu=False, device="cpu")


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 1, HW, HW, generator=g), torch.randint(0, 4, (2, HW, HW), generator=g)


@pytest.fixture(scope="module")
def image_grid(model, inputs):
    return corruption_grid(model, inputs[0], "image", seed=3)


@pytest.fixture(scope="module")
def shape_grid(model, inputs):
    return corruption_grid(model, inputs[0], "shape", inputs[1], seed=3)


def test_grid_shapes(image_grid, shape_grid):
    m, t = len(METHODS), len(THRESHOLDS)
    assert image_grid.outputs.shape == (m, t, 2, 1, HW, HW) and image_grid.clean.shape == (2, 1, HW, HW)
    assert shape_grid.outputs.shape == (m, t, 2, 4, HW, HW) and shape_grid.clean.shape == (2, 4, HW, HW)
    assert image_grid.masked_fraction.shape == (m, t) and shape_grid.masked_fraction.shape == (m, t)
    assert image_grid.methods == METHODS and image_grid.thresholds == THRESHOLDS
    assert hard_labels(shape_grid).shape == (m, t, 2, HW, HW) and hard_labels(shape_grid).dtype == torch.int64
    assert entropy_maps(shape_grid).shape == (m, t, 2, HW, HW)


def test_threshold_zero_equals_the_unmasked_output(model, inputs, image_grid, shape_grid):
    for grid in (image_grid, shape_grid):
        assert grid.thresholds[0] == 0.0
        for i in range(len(grid.methods)):
            assert torch.equal(grid.outputs[i, 0], grid.clean)
        assert np.all(grid.masked_fraction[:, 0] == 0)
    model.eval()
    with torch.no_grad():
        (z_i, _), logits = model.fast_predict(inputs[0])
        assert torch.allclose(image_grid.clean, model.decode_image(z_i), atol=1e-5)
    assert torch.allclose(shape_grid.clean, logits, atol=1e-4)


def test_masked_fraction_grows_with_the_threshold(image_grid, shape_grid):
    for grid in (image_grid, shape_grid):
        fractions = grid.masked_fraction
        assert np.all(np.diff(fractions, axis=1) > 0), fractions
        rows = dict(zip(grid.methods, fractions))
        # targeted masks drop exactly int(K * t) of K channels (128) or positions (4 x 4 = 16)
        assert rows["channel"] == pytest.approx([int(128 * t) / 128 for t in THRESHOLDS])
        assert rows["spatial"] == pytest.approx([int(16 * t) / 16 for t in THRESHOLDS])
        assert abs(rows["dropout"][-1] - 0.5) < 0.15  # 256 Bernoulli(0.5) channel draws


def test_corruption_grows_with_the_threshold(image_grid, shape_grid):
    """Distance of the decoded outputs from the unmasked ones: 0 at threshold 0, larger at 50 % than at 10 %."""
    distance = mean_abs_change(image_grid)  # (M, T)
    expected = (image_grid.outputs - image_grid.clean[None, None]).abs().mean(dim=(2, 3, 4, 5)).numpy()
    assert distance == pytest.approx(expected)
    assert np.all(distance[:, 0] == 0) and np.all(distance[:, 1:] > 0) and np.all(distance[:, -1] > distance[:, 1])
    changed = label_change(shape_grid)
    assert changed.shape == (3, 6) and np.all(changed[:, 0] == 0) and np.all((changed >= 0) & (changed <= 1))
    assert np.all(changed[:, -1] > 0)


def test_same_seed_same_grid_and_caller_rng_untouched(model, inputs, image_grid):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    again = corruption_grid(model, inputs[0], "image", methods=["dropout", "channel"], seed=3)
    after = torch.rand(3)
    assert torch.equal(before, after)
    assert torch.equal(again.outputs, image_grid.outputs[:2])


def test_entropy_is_non_negative_and_zero_for_one_hot_maps():
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 8, 8)), 4).permute(0, 3, 1, 2).float()
    assert torch.equal(entropy_map(one_hot), torch.zeros(2, 8, 8))
    uniform = torch.full((1, 4, 3, 3), 0.25)
    assert torch.allclose(entropy_map(uniform), torch.full((1, 3, 3), 2.0))
    probabilities = segmentation_probabilities(torch.randn(5, 4, 16, 16) * 10)
    entropy = entropy_map(probabilities)
    assert torch.all(entropy >= 0) and torch.all(entropy <= 2.0 + 1e-6)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(5, 16, 16))


def test_entropy_uses_temperature_two():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # (1, 2, 1, 1)
    p = 1 / (1 + math.exp(-1.0))  # softmax([2, 0] / 2)
    expected = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert entropy_map(segmentation_probabilities(logits)).item() == pytest.approx(expected, rel=1e-5)


def test_masked_fraction_of_channel_and_spatial_masks():
    channel = torch.ones(1, 4, 1, 1)
    channel[0, 1] = 0.3
    assert masked_fraction(channel, (1, 4, 2, 2)) == pytest.approx(0.25)
    spatial = torch.ones(1, 1, 2, 2)
    spatial[0, 0, 0] = 0.0
    assert masked_fraction(spatial, (1, 4, 2, 2)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"code": "shape"}, "needs the label map"),
        ({"code": "latent"}, "code must be one of"),
        ({"code": "image", "methods": ["random"]}, "methods must be among"),
        ({"code": "image", "thresholds": [0.0, 1.5]}, "thresholds must be in"),
    ],
)
def test_bad_arguments_are_refused(model, inputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        corruption_grid(model, inputs[0], **kwargs)


def test_bad_shapes_are_refused(model, inputs):
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        corruption_grid(model, inputs[0][:, 0], "image")
    with pytest.raises(ValueError, match="multiples of 16"):
        corruption_grid(model, torch.rand(1, 1, 40, 40), "image")
    with pytest.raises(ValueError, match="label must be"):
        corruption_grid(model, inputs[0], "shape", inputs[1][:1])


def test_recon_diff_maps(model, inputs):
    diff = recon_diff(model, inputs[0])
    for name in ("image", "reconstruction", "image_error", "initial", "refined", "refinement"):
        assert getattr(diff, name).shape == (2, HW, HW), name
    assert torch.allclose(diff.image_error, (diff.image - diff.reconstruction).abs(), atol=1e-6)
    assert torch.all(diff.refinement >= 0)
    assert set(diff.initial.unique().tolist()) <= {0, 1, 2, 3}


def test_plots_have_the_published_layout(tmp_path, inputs, image_grid, shape_grid, model):
    fig1 = plot_reconstruction_grid(image_grid, inputs[0], index=1)
    assert isinstance(fig1, Figure) and len(fig1.axes) == 3 * 7
    titles = [ax.get_title().split("\n")[0] for ax in fig1.axes[:7]]
    assert titles == ["input"] + [f"dropout: {100 * t:g}%" for t in THRESHOLDS]
    assert fig1.axes[1].get_title().endswith("mean |change| 0.000")
    fig2 = plot_segmentation_grid(shape_grid, inputs[1])
    assert len([ax for ax in fig2.axes if ax.images]) == 6 * 7  # plus one colour bar
    fig3 = plot_recon_diff(recon_diff(model, inputs[0]))
    assert len(fig3.axes) == 6
    one = corruption_grid(model, inputs[0], "image", methods=["spatial"], thresholds=[0.3])
    one_shape = corruption_grid(model, inputs[0], "shape", inputs[1], methods=["spatial"], thresholds=[0.3])
    assert len(plot_example(one, one_shape, inputs[0]).axes) == 4
    path = save_figure(fig1, tmp_path / "figs" / "fig1.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(path.parent.iterdir()) == [path]  # atomic: no temporary file left
    with pytest.raises(ValueError, match="image-code grid"):
        plot_reconstruction_grid(shape_grid, inputs[0])


def test_grid_uses_the_published_call_sequence(model, inputs, monkeypatch):
    """fast_predict -> perturb_latent_code(fixed fraction, soft) -> decoder_inference(eval=False, no BN tracking)."""
    calls: list[tuple[str, dict]] = []
    for name in ("fast_predict", "perturb_latent_code", "decoder_inference"):
        method = getattr(model, name)

        def spy(*args, _name=name, _method=method, **kwargs):
            calls.append((_name, kwargs))
            return _method(*args, **kwargs)

        monkeypatch.setattr(model, name, spy)
    corruption_grid(model, inputs[0], "shape", inputs[1], methods=["channel"], thresholds=[0.2])
    assert [name for name, _ in calls] == ["fast_predict", "perturb_latent_code", "decoder_inference"]
    perturb, decode = calls[1][1], calls[2][1]
    assert perturb["decoder_function"] is model.model["segmentation_decoder"] and perturb["loss_type"] == "ce"
    assert perturb["threshold"] == 0.2 and perturb["if_soft"] and not perturb["random_threshold"]
    assert decode["eval"] is False and decode["disable_track_bn_stats"] is True
    assert not any(module.training for module in model.model.values())
