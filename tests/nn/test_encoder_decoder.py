import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from medseg.nn.encoder_decoder import MODULE_NAMES, NETWORK_TYPES, Dual_Branch_Encoder, MyDecoder, get_network

# parameter names, shapes and dtypes of the five published networks, as their checkpoint files store them
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "fcn16_state_dict.json"


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("network_type", NETWORK_TYPES)
def test_state_dict_matches_reference(make_model, reference, network_type):
    model = make_model(network_type)
    assert tuple(model.model) == tuple(reference["original_model_dict_order"]) == MODULE_NAMES
    for name, module in model.model.items():
        got = [[key, list(t.shape), str(t.dtype).removeprefix("torch.")] for key, t in module.state_dict().items()]
        assert got == reference["modules"][name]["state_dict"], name
        n_params = sum(p.numel() for p in module.parameters())
        assert n_params == reference["modules"][name]["num_parameters"], name
    assert sum(p.numel() for p in model.parameters()) == reference["total_parameters_all_modules"]


def test_block_output_shapes_match_reference(make_model, reference):
    model = make_model()
    model.eval()
    expected = reference["per_block_output_shapes_eval_mode_input_1x1x192x192"]
    seen: dict[str, list[int]] = {}
    hooks = []
    for dotted in expected:
        module_name, _, block = dotted.partition(".")
        module = model.model[module_name].get_submodule(block)

        def record(mod, args, out, dotted=dotted):
            seen[dotted] = list(out.shape)

        hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            x = torch.rand(1, 1, 192, 192)
            (z_i, _), seg = model.fast_predict(x)
            model.decode_image(z_i)
            model.recon_shape(seg)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == expected


@pytest.mark.parametrize("hw", [(32, 32), (64, 48)])
def test_output_shapes(make_model, hw):
    model = make_model()
    model.eval()
    x = torch.rand(2, 1, *hw)
    with torch.no_grad():
        (z_i, z_s), seg = model.fast_predict(x)
        recon = model.decode_image(z_i)
        refined = model.recon_shape(seg)
        z_shape = model.encode_shape(seg)
    latent = (2, 128, hw[0] // 16, hw[1] // 16)
    assert z_i.shape == z_s.shape == z_shape.shape == latent
    assert seg.shape == refined.shape == (2, 4, *hw)
    assert recon.shape == (2, 1, *hw)
    assert 0 < recon.min() and recon.max() < 1
    assert z_i.min() >= 0 and z_s.min() >= 0


@pytest.mark.parametrize("hw", [(30, 32), (32, 40)])
def test_size_not_divisible_by_16_is_an_error(make_model, hw):
    model = make_model()
    with pytest.raises(ValueError, match="divisible by 16"):
        model.predict(torch.rand(1, 1, *hw))


def test_unknown_network_type():
    with pytest.raises(NotImplementedError, match="FCN_8"):
        get_network("FCN_8")


def test_variant_code_wiring(make_model):
    x = torch.rand(2, 1, 32, 32)
    share = make_model("FCN_16_standard_share_code")
    z_i, z_s = share.encode_image(x)
    assert torch.equal(z_i, z_s)
    wo = make_model("FCN_16_standard_w_o_filter")
    z_i, z_s = wo.encode_image(x)
    assert torch.equal(z_i, z_s)
    std = make_model()
    z_i, z_s = std.encode_image(x)
    assert not torch.equal(z_i, z_s)


def test_initialisation_follows_spec(make_model):
    model = make_model()
    for name in ("segmentation_decoder", "image_decoder", "shape_decoder"):
        assert torch.count_nonzero(model.model[name].final_conv.bias) == 0
    conv = model.model["image_encoder"].general_encoder.down4.conv[0]
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert torch.count_nonzero(conv.bias) > 0  # PyTorch default bias kept
    bns = [m for mod in model.get_modules() for m in mod.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_weights, bn_biases = torch.cat([m.weight for m in bns]), torch.cat([m.bias for m in bns])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn_weights.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.count_nonzero(bn_biases) == 0
    up = model.model["image_decoder"].up1.up  # ConvTranspose2d keeps PyTorch's default init
    assert isinstance(up, nn.ConvTranspose2d)
    assert up.weight.abs().max() <= 1 / math.sqrt(up.weight.shape[1] * 4) + 1e-6


def test_module_classes():
    net = get_network()
    assert isinstance(net["image_encoder"], Dual_Branch_Encoder)
    assert isinstance(net["image_decoder"].last_act, nn.Sigmoid)
    assert isinstance(net["segmentation_decoder"], MyDecoder) and net["segmentation_decoder"].last_act is None
