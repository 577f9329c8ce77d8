"""medseg driven only through the published API, as the published scripts and notebook call it.

Every call below is written the way the published training script (iteration, validation, checkpoints), test
script (test sets, prediction) and notebook (hard examples) use the original class: published names, positional
and keyword arguments, published return structures.
The only medseg call is ``train_step``, the reference the published training iteration is compared with.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from medseg.dataset_loader.base_segmentation_dataset import BaseSegmentationDataset
from medseg.dataset_loader.cardiac_ACDC_dataset import CardiacACDCDataset
from medseg.dataset_loader.cardiac_MM_dataset import Cardiac_MM_Dataset
from medseg.dataset_loader.concat import ConcatDataSet
from medseg.dataset_loader.transform import Transformations
from medseg.models import model_util
from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.training.step import LOSS_KEYS, train_step
from medseg.phantom.tiny import write_tiny_acdc, write_tiny_mm

pytestmark = pytest.mark.usefixtures("single_thread")

# The published latent_DA config sections
IMAGE_CODE = {"loss_name": "mse", "mask_type": "random", "max_threshold": 0.5, "random_threshold": True,
              "if_soft": True}
SHAPE_CODE = {**IMAGE_CODE, "loss_name": "ce"}

MODULES = ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder", "image_decoder")

# The published API: (method, leading parameters in order with their defaults; inspect.Parameter.empty = required)
_ = inspect.Parameter.empty
PUBLISHED_METHODS = {
    "__init__": [("network_type", "FCN_16_standard"), ("image_ch", 1), ("learning_rate", 1e-4),
                 ("encoder_dropout", None), ("decoder_dropout", None), ("num_classes", 4), ("n_iter", 1),
                 ("checkpoint_dir", None), ("use_gpu", True), ("debug", False)],
    "get_network": [("checkpoint_dir", None)],
    "init_model": [("model", _), ("resume_path", None)],
    "run": [("input", _)],
    "encode_image": [("input", _), ("disable_track_bn_stats", False)],
    "decode_segmentation_from_image_code": [("latent_code_i", _), ("disable_track_bn_stats", False)],
    "decode_image": [("latent_code", _), ("disable_track_bn_stats", False)],
    "encode_shape": [("segmentation", _), ("is_label_map", False), ("disable_track_bn_stats", False),
                     ("temperature", 2)],
    "decode_shape": [("latent_code", _), ("disable_track_bn_stats", False)],
    "recon_shape": [("segmentation_logit", _), ("is_label_map", False), ("disable_track_bn_stats", False)],
    "recon_image": [("image", _), ("disable_track_bn_stats", False)],
    "forward": [("input", _)],
    "perturb_latent_code": [("latent_code", _), ("decoder_function", _), ("label_y", None), ("perturb_type", "random"),
                            ("threshold", 0.5), ("if_soft", False), ("random_threshold", False), ("loss_type", "mse"),
                            ("if_detach", False)],
    "get_recon_diff": [("input", _)],
    "predict": [("input", _), ("softmax", False), ("n_iter", None)],
    "decoder_inference": [("decoder", _), ("latent_code", _), ("eval", False), ("disable_track_bn_stats", False)],
    "standard_training": [("clean_image_l", _), ("label_l", _), ("perturbed_image", _), ("separate_training", False),
                          ("compute_gt_recon", True), ("update_latent", True), ("disable_track_bn_stats", False)],
    "hard_example_generation": [("clean_image_l", _), ("label_l", _), ("gen_corrupted_seg", True),
                                ("gen_corrupted_image", True), ("corrupted_image_DA_config", IMAGE_CODE),
                                ("corrupted_seg_DA_config", SHAPE_CODE)],
    "hard_example_training": [("perturbed_image", _), ("clean_image_l", _), ("perturbed_seg", _), ("label_l", _),
                              ("separate_training", False), ("use_gpu", True)],
    "fast_predict": [("input", _), ("disable_track_bn_stats", False)],
    "predict_w_reconstructed_image": [("image", _)],
    "slow_refinement": [("pred_logit", _), ("n_steps", 1), ("auto_stop", False), ("save_internal_predicts", False)],
    "evaluate": [("input", _), ("targets_npy", _), ("n_iter", None)],
    "save_model": [("save_dir", _), ("epoch_iter", _), ("model_prefix", None), ("save_optimizers", False)],
    "save_snapshots": [("save_dir", _), ("epoch", _), ("model_prefix", "interrupted")],
    "load_snapshots": [("file_path", _)],
    "train": [("if_testing", False)],
    "eval": [],
    "requires_grad_": [("requires_grad", True)],
    "get_modules": [],
    "parameters": [],
    "named_parameters": [],
    "reset_all_optimizers": [],
    "zero_grad": [],
    "get_optimizer": [("model_name", None)],
    "set_optimizers": [],
    "optimize_all_params": [],
    "optimize_params": [("model_name", _)],
    "reset_optimizer": [("model_name", _)],
    "set_running_metric": [],
    "save_testing_images_results": [("save_dir", _), ("epoch_iter", _), ("max_slices", 10),
                                    ("file_name", "Seg_plots.png")],
}
PUBLISHED_FUNCTIONS = {
    "mask_latent_code_channel_wise": [("latent_code", _), ("decoder_function", _), ("label", _), ("num_classes", 2),
                                      ("percentile", 1 / 3), ("random", False), ("loss_type", "corr"),
                                      ("if_detach", True), ("if_soft", False)],
    "mask_latent_code_spatial_wise": [("latent_code", _), ("decoder_function", _), ("label", _), ("num_classes", ...),
                                      ("percentile", 1 / 3), ("random", False), ("loss_type", "corr"),
                                      ("if_detach", True), ("if_soft", False)],
    "make_one_hot": [("y", _), ("num_classes", 4)],
    "cross_entropy_2D": [("input", _), ("target", _), ("weight", None), ("size_average", True)],
    "_disable_tracking_bn_stats": [("model", _)],
}


def _check_signature(function, expected) -> None:
    params = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert [p.name for p in positional] == [name for name, _ in expected], function.__qualname__
    for param, (name, default) in zip(positional, expected):
        if default is ...:  # published: required; medseg may add a default
            continue
        got = dict(param.default) if isinstance(default, dict) else param.default
        assert got == default, f"{function.__qualname__}({name}=...) default {param.default!r} != {default!r}"
    extras = [p for p in params if p not in positional]
    assert all(p.kind == p.KEYWORD_ONLY for p in extras), f"{function.__qualname__}: medseg extras are keyword-only"


@pytest.mark.parametrize("name", sorted(PUBLISHED_METHODS))
def test_model_method_signatures_match_spec_k(name):
    _check_signature(getattr(AdvancedTripletReconSegmentationModel, name), PUBLISHED_METHODS[name])


@pytest.mark.parametrize("name", sorted(PUBLISHED_FUNCTIONS))
def test_model_util_signatures_match_spec_k(name):
    _check_signature(getattr(model_util, name), PUBLISHED_FUNCTIONS[name])


def _published_model(seed: int = 0, **kwargs) -> AdvancedTripletReconSegmentationModel:
    torch.manual_seed(seed)
    return AdvancedTripletReconSegmentationModel(network_type="FCN_16_standard", num_classes=4, use_gpu=False,
                                                 **kwargs)


def _data(seed: int = 123, n: int = 2, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    labels = (images[:, 0] > 0.4).long() + (images[:, 0] > 0.7).long() + (images[:, 0] > 0.9).long()
    return images, labels


def _published_iteration(model, clean, label, latent_da=True, image_cfg=IMAGE_CODE, shape_cfg=SHAPE_CODE):
    """One iteration of the published training script, through the published API only."""
    model.train()
    model.reset_all_optimizers()
    perturbed = torch.clamp(clean + 0.05 * torch.randn_like(clean), 0, 1)
    standard_supervised_loss, image_recon_loss, gt_shape_recon_loss, pred_shape_recon_loss = model.standard_training(
        clean_image_l=clean, label_l=label, perturbed_image=perturbed, separate_training=False)
    standard = standard_supervised_loss + image_recon_loss + gt_shape_recon_loss + pred_shape_recon_loss
    losses = [standard, standard_supervised_loss, image_recon_loss, pred_shape_recon_loss, gt_shape_recon_loss]
    if latent_da:
        model.reset_all_optimizers()
        perturbed_image, perturbed_seg = model.hard_example_generation(
            clean.detach(), label.detach(), gen_corrupted_seg=True, gen_corrupted_image=True,
            corrupted_image_DA_config=image_cfg, corrupted_seg_DA_config=shape_cfg)
        seg_loss, recon_loss, shape_loss, perturbed_p_recon_loss = model.hard_example_training(
            perturbed_image, clean, perturbed_seg, label, False)
        hard = seg_loss + recon_loss + shape_loss + perturbed_p_recon_loss
        losses += [hard, seg_loss, recon_loss, shape_loss + perturbed_p_recon_loss]
    else:
        hard = torch.zeros(())
        losses += [hard] * 4
    loss = standard + hard
    model.reset_all_optimizers()
    loss.backward()
    model.optimize_all_params()
    return [float(v.detach()) for v in losses] + [float(loss.detach())]


def _compare_one_iteration(latent_da, mask_type, iterations):
    images, labels = _data()
    image_cfg, shape_cfg = {**IMAGE_CODE, "mask_type": mask_type}, {**SHAPE_CODE, "mask_type": mask_type}
    published, reference = _published_model(seed=7), _published_model(seed=7)
    images = images.to(torch.get_default_dtype())
    before = [p.detach().clone() for p in reference.parameters()]
    for iteration in range(iterations):
        torch.manual_seed(100 + iteration)
        got = _published_iteration(published, images, labels, latent_da, image_cfg, shape_cfg)
        torch.manual_seed(100 + iteration)
        out = train_step(reference, images, labels, latent_da=latent_da,
                         image_code_spec=model_util.MaskSpec(**image_cfg),
                         shape_code_spec=model_util.MaskSpec(**shape_cfg))
        assert got == pytest.approx([out.losses[k] for k in LOSS_KEYS], rel=1e-5, abs=1e-7)
    for (name, a), b, start in zip(published.named_parameters(), reference.parameters(), before):
        assert not torch.equal(b, start), f"{name} was not updated"
    return published, reference


@pytest.mark.parametrize("latent_da,mask_type", [(True, "random"), (True, "channel"), (True, "spatial"),
                                                 (True, "dropout"), (False, "random")])
def test_published_iteration_equals_train_step(latent_da, mask_type):
    """The same seed gives the same parameters through the published API and through medseg's train_step.

    Run in float64, two iterations: gradients agree to 1e-12, parameters and BN buffers to 1e-9. They are not
    bit-identical because train_step backpropagates each independent graph as soon as its loss is known
    (``backward_now``) while the published script calls ``loss.backward()`` once: the same gradient sum is added
    in another order. The largest parameter differences (~1e-10) are the biases of convolutions followed by
    BatchNorm, whose gradient is 0 in exact arithmetic (~1e-14 rounding noise): Adam divides by ``|g| + 1e-8``,
    which magnifies that noise. The float32 consequence is checked in the next test.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        published, reference = _compare_one_iteration(latent_da, mask_type, iterations=2)
    finally:
        torch.set_default_dtype(previous)
    for (name, a), b in zip(published.named_parameters(), reference.parameters()):
        assert a.dtype == torch.float64 and torch.allclose(a, b, rtol=0, atol=1e-9), name
        assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-12), name
    for a, b in zip(published.model.values(), reference.model.values()):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.allclose(va.double(), vb.double(), rtol=0, atol=1e-9), ka  # BN stats too


def test_published_iteration_equals_train_step_float32():
    """In float32 the gradients agree to rounding (~1e-8 absolute), and so does every parameter except where the
    gradient itself is of that size: Adam's first step is ``lr * g / (|g| + eps)`` with eps = 1e-8, so for
    ``|g| ~ eps`` a rounding-level change of g moves the update by up to ``lr``. Those elements are the only ones
    allowed to differ by more than 1e-6."""
    published, reference = _compare_one_iteration(True, "channel", iterations=1)
    for (name, a), b in zip(published.named_parameters(), reference.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), name
        far = (a - b).detach().abs() > 1e-6
        assert torch.all(a.grad[far].abs() < 1e-5), name
        assert float((a - b).detach().abs().max()) <= 1e-4 + 1e-7, name  # never more than lr


def test_published_training_script_calls(tmp_path):
    """Model construction, validation, saving and resuming as in the published training script."""
    model = AdvancedTripletReconSegmentationModel("FCN_16_standard", 1, 1e-4, None, None, 4, 1, None, False, False)
    assert list(model.model) == list(MODULES) and list(model.optimizers) == list(MODULES)
    assert model.z_i is None and model.z_s is None and model.running_metric is not None
    images, labels = _data()
    _published_iteration(model, images, labels)
    assert model.z_i.shape == model.z_s.shape == (2, 128, 2, 2)

    # validation: eval, reset the running metric, evaluate batches, read the pooled scores
    model.eval()
    assert model.training is False and not any(m.training for m in model.get_modules())  # published: stayed True
    metric = model.set_running_metric()
    logits = model.evaluate(input=images, targets_npy=labels.numpy(), n_iter=2)
    assert logits.shape == (2, 4, 32, 32) and logits.is_floating_point()
    assert metric is model.running_metric and metric.confusion_matrix.sum() == labels.numel()
    assert np.array_equal(model.cur_eval_predicts, logits.argmax(1).numpy())
    score = model.running_metric.get_scores()
    assert 0.0 <= score["Mean IoU"] <= 1.0

    # best model, figure, periodic checkpoint with optimisers, interruption snapshot, resume
    model.save_model(str(tmp_path), "best")
    files = sorted(p.name for p in (tmp_path / "best" / "checkpoints").glob("*.pth"))  # + manifest.json
    assert files == sorted(f"{m}.pth" for m in MODULES)
    figure = model.save_testing_images_results(str(tmp_path), "best", max_slices=5)
    assert figure == tmp_path / "best" / "testing_segmentation_results" / "Seg_plots.png" and figure.stat().st_size
    model.save_model(tmp_path, 0, save_optimizers=True)
    assert (tmp_path / "0" / "checkpoints" / "image_encoder_optimizer.pth").is_file()
    model.save_model(tmp_path, 1, "FCN_16_standard")
    assert (tmp_path / "1" / "checkpoints" / "FCN_16_standard_shape_decoder.pth").is_file()
    path = model.save_snapshots(str(tmp_path), epoch=3)
    assert path == tmp_path / "interrupted" / "checkpoints" / "FCN_16_standard.pkl"
    assert model.save_snapshots(tmp_path, 4, "manual") == tmp_path / "manual" / "checkpoints" / "FCN_16_standard.pkl"
    resumed = _published_model(seed=9)
    start_epoch = resumed.load_snapshots(path)
    assert start_epoch == 3
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)

    # the test script loads the best checkpoints with n_iter=2 and predicts chunks
    tester = AdvancedTripletReconSegmentationModel(network_type="FCN_16_standard", num_classes=4, n_iter=2,
                                                   checkpoint_dir=str(tmp_path / "best" / "checkpoints"),
                                                   use_gpu=False)
    pred = tester.predict(images, softmax=False)
    assert pred.shape == (2, 4, 32, 32)
    assert torch.allclose(pred, model.predict(images, n_iter=2), atol=1e-5)
    assert torch.allclose(tester.forward(images), pred)
    probs = tester.predict(images, True, 1)
    assert torch.allclose(probs.sum(1), torch.ones(2, 32, 32), atol=1e-5)


def test_optimiser_and_mode_calls():
    model = _published_model()
    model.train(if_testing=True)
    assert model.training is False
    model.train()
    assert model.training is True and all(p.requires_grad for p in model.parameters())
    model.requires_grad_(requires_grad=False)
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    params = list(model.parameters())
    assert all(isinstance(p, torch.Tensor) for p in params) and len(params) == len(dict(model.named_parameters()))
    assert isinstance(model.get_optimizer("image_encoder"), torch.optim.Adam)
    assert set(model.get_optimizer()) == set(MODULES)
    images, labels = _data()
    seg, *_ = model.standard_training(images, labels, images)
    seg.backward()
    weight = model.model["segmentation_decoder"].final_conv.weight
    before, encoder_before = weight.detach().clone(), next(model.model["image_encoder"].parameters()).detach().clone()
    model.optimize_params("segmentation_decoder")
    assert not torch.equal(weight, before)
    assert torch.equal(next(model.model["image_encoder"].parameters()), encoder_before)
    model.reset_optimizer("segmentation_decoder")
    assert weight.grad is None and next(model.model["image_encoder"].parameters()).grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.set_optimizers()
    assert all(not o.state for o in model.optimizers.values())
    with pytest.raises(KeyError, match="model_name"):
        model.optimize_params("decoder")


def test_building_blocks_and_analysis_calls(tmp_path):
    model = _published_model()
    images, labels = _data()
    modules = model.get_network(checkpoint_dir=None)
    assert list(modules) == list(MODULES)
    model.save_model(tmp_path, "e")
    saved = tmp_path / "e" / "checkpoints" / "shape_decoder.pth"
    module = model.init_model(modules["shape_decoder"], resume_path=saved)
    assert module is modules["shape_decoder"]
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(),
                                                model.model["shape_decoder"].state_dict().values()))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        model.init_model(modules["shape_decoder"], str(tmp_path / "missing.pth"))

    model.eval()
    z_i, z_s = model.encode_image(images)
    assert z_i.shape == z_s.shape == (2, 128, 2, 2)
    assert model.decode_image(z_i).shape == images.shape
    assert model.decode_segmentation_from_image_code(z_i).shape == (2, 4, 32, 32)
    (code_i, code_s), y0 = model.fast_predict(images)
    assert y0.shape == (2, 4, 32, 32) and not y0.requires_grad  # eval mode: the published no_grad branch
    shape_code = model.encode_shape(labels, is_label_map=True)
    assert shape_code.shape == (2, 128, 2, 2)
    assert model.decode_shape(shape_code).shape == (2, 4, 32, 32)
    assert torch.allclose(model.recon_shape(y0), model.decode_shape(model.encode_shape(y0, temperature=2)))
    with pytest.raises(ValueError, match="is_label_map=True"):
        model.recon_shape(labels)
    assert model.recon_image(images).shape == images.shape
    assert model.predict_w_reconstructed_image(images).shape == (2, 4, 32, 32)
    recon, init_predict, refined_predict = model.run(images)
    refined, internal = model.slow_refinement(init_predict, n_steps=2, save_internal_predicts=True)
    assert isinstance(internal, list) and len(internal) == 2 and torch.allclose(refined, refined_predict)
    assert model.slow_refinement(init_predict)[1] == []
    image_diff, seg_diff, first, second, reconstructed = model.get_recon_diff(images)
    assert torch.allclose(image_diff, (images - reconstructed).abs())
    assert torch.allclose(seg_diff, (second - first).abs()) and torch.allclose(second, refined_predict, atol=1e-5)


def test_notebook_calls():
    """Cells 4-7 of the published notebook: codes, masked codes, decoded hard examples, in eval mode."""
    model = _published_model()
    images, labels = _data(n=3)
    model.eval()
    (z_i, z_s), init_predict = model.fast_predict(images)
    decoder = model.model["image_decoder"]
    for method in ("dropout", "channel", "spatial"):
        for threshold in (0, 0.1, 0.5):
            masked, mask = model.perturb_latent_code(
                latent_code=z_i, decoder_function=decoder, label_y=images, perturb_type=method,
                threshold=threshold, random_threshold=False, if_soft=True, loss_type="mse")
            assert masked.shape == z_i.shape
            assert mask.shape == ((3, 1, 2, 2) if method == "spatial" else (3, 128, 1, 1))
            if threshold == 0:
                assert torch.equal(masked, z_i) and torch.all(mask == 1)
            corrupted = model.decoder_inference(decoder=decoder, latent_code=masked, eval=False,
                                                disable_track_bn_stats=True)
            assert corrupted.shape == images.shape and 0 < corrupted.min() <= corrupted.max() < 1
            assert not decoder.training  # the decoder's eval flag is restored
        masked_s, _ = model.perturb_latent_code(z_s, model.model["segmentation_decoder"], labels, method, 0.3,
                                                True, False, "ce")
        seg = model.decoder_inference(model.model["segmentation_decoder"], masked_s, True, True)
        assert seg.shape == (3, 4, 32, 32) and not seg.requires_grad
    model.train()
    out = model.decoder_inference(decoder, z_i, eval=True)
    assert decoder.training and not out.requires_grad  # eval=True runs in eval mode and restores train mode


def test_perturb_latent_code_published_defaults_keep_the_graph():
    model = _published_model()
    images, _ = _data()
    model.train()
    (z_i, _), _ = model.fast_predict(images)
    masked, mask = model.perturb_latent_code(z_i, model.model["image_decoder"], images, "channel")
    assert masked.requires_grad and masked.grad_fn is not None  # if_detach=False: graph to the encoder kept
    assert torch.equal(masked, z_i * mask)
    masked, keep = model.perturb_latent_code(z_i, model.model["image_decoder"], perturb_type="dropout",
                                             if_detach=True)
    assert not masked.requires_grad and keep.shape == (2, 128, 1, 1)
    assert torch.allclose(masked, z_i.detach() * keep * 2)  # surviving channels scaled by 1/(1-p)


def test_model_util_functions():
    code = torch.rand(2, 8, 4, 4)
    decoder = nn.Conv2d(8, 8, 1)
    target = torch.rand(2, 8, 4, 4)
    masked, mask = model_util.mask_latent_code_channel_wise(code, decoder, target, num_classes=8, percentile=0.25,
                                                            random=False, loss_type="mse", if_detach=True,
                                                            if_soft=False)
    assert mask.shape == (2, 8, 1, 1) and int((mask == 0).sum()) == 4 and torch.equal(masked, code * mask)
    masked, mask = model_util.mask_latent_code_spatial_wise(code, decoder, target, 8, 0.25, False, "corr", True, True)
    assert mask.shape == (2, 1, 4, 4) and int((mask < 1).sum()) == 8
    one_hot = model_util.make_one_hot(torch.tensor([[[0, 3]]]))
    assert one_hot.shape == (1, 4, 1, 2) and one_hot[0, 3, 0, 1] == 1
    logits, label = torch.randn(2, 4, 3, 3), torch.randint(0, 4, (2, 3, 3))
    ce = model_util.cross_entropy_2D(logits, label)
    assert torch.allclose(ce, nn.functional.cross_entropy(logits, label), atol=1e-6)
    assert torch.allclose(model_util.cross_entropy_2D(logits, label, size_average=False), ce * 18, rtol=1e-5)
    flat = model_util.cross_entropy_2D(logits, label, weight=torch.zeros(4))  # softmax(0) * C = 1 per class
    assert torch.allclose(flat, ce, atol=1e-6)
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with model_util._disable_tracking_bn_stats(net):
        net(torch.rand(2, 1, 4, 4))
    assert int(net[1].num_batches_tracked) == 0 and net[1].weight.requires_grad


# ---------------------------------------------------------------------------------------------------------- datasets
IDX2CLS = {0: "BG", 1: "LV", 2: "MYO", 3: "RV"}
PUBLISHED_DATASETS = {
    CardiacACDCDataset.__init__: [
        ("transform", ...), ("dataset_name", "ACDC"), ("root_dir", ...), ("frame", "ES"), ("num_classes", 4),
        ("debug", False), ("image_size", (224, 224, 1)), ("label_size", (224, 224)), ("idx2cls_dict", IDX2CLS),
        ("use_cache", True), ("data_setting_name", "three_shot"), ("split", "train"), ("cval", 0),
        ("formalized_label_dict", None), ("keep_orig_image_label_pair", True),
        ("image_format_name", "{p_id}/{frame}_img.nii.gz"), ("label_format_name", "{p_id}/{frame}_seg.nii.gz"),
        ("myocardium_seg", False), ("right_ventricle_seg", False), ("new_spacing", (1.36719, 1.36719, -1)),
        ("normalize", False)],
    Cardiac_MM_Dataset.__init__: [
        ("transform", ...), ("dataset_name", "CardiacMMDataset"), ("root_dir", ...), ("num_classes", 4),
        ("debug", False), ("image_size", (224, 224, 1)), ("label_size", (224, 224)), ("idx2cls_dict", IDX2CLS),
        ("use_cache", True), ("formalized_label_dict", None), ("keep_orig_image_label_pair", True),
        ("image_format_name", "{p_id}/ES_img.nii.gz"), ("label_format_name", "{p_id}/ES_seg.nii.gz"),
        ("new_spacing", None), ("myocardium_seg", False), ("normalize3D", False)],
    BaseSegmentationDataset.get_patient_data_for_testing: [("pid_index", _), ("crop_size", None),
                                                           ("normalize_2D", False)],
    BaseSegmentationDataset.formulate_labels: [("label", _), ("foreground_only", False)],
    BaseSegmentationDataset.set_id: [("index", _)],
    BaseSegmentationDataset.load_data: [("index", _)],
    BaseSegmentationDataset.preprocess_data_to_tensors: [("image", _), ("label", _)],
    BaseSegmentationDataset.get_id: [],
    BaseSegmentationDataset.get_voxel_spacing: [],
    BaseSegmentationDataset.get_info: [],
    ConcatDataSet.__init__: [("dataset_list", _)],
    ConcatDataSet.get_patient_data_for_testing: [("pid_index", _), ("crop_size", None), ("normalize_2D", False)],
    ConcatDataSet.get_id: [],
    ConcatDataSet.get_voxel_spacing: [],
    Transformations.__init__: [("data_aug_policy_name", _), ("pad_size", (80, 80, 1)), ("crop_size", (80, 80, 1))],
    Transformations.get_transformation: [],
}


@pytest.mark.parametrize("function", list(PUBLISHED_DATASETS), ids=lambda f: f.__qualname__)
def test_dataset_signatures_match_spec_k(function):
    expected = [(name, tuple(d) if isinstance(d, (list, tuple)) else d) for name, d in PUBLISHED_DATASETS[function]]
    normalised = []
    for param in inspect.signature(function).parameters.values():
        if isinstance(param.default, (list, tuple)):
            param = param.replace(default=tuple(param.default))
        elif isinstance(param.default, dict) or hasattr(param.default, "items"):
            param = param.replace(default=dict(param.default))
        normalised.append(param)

    def stand_in():
        return None

    stand_in.__signature__ = inspect.Signature(normalised)
    stand_in.__qualname__ = function.__qualname__
    _check_signature(stand_in, expected)


@pytest.fixture(scope="module")
def published_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    acdc = write_tiny_acdc(root / "ACDC", shape=(4, 60, 72))
    mm = write_tiny_mm(root / "MM", n_per_vendor=1, shape=(3, 60, 70))
    return acdc, mm


def test_training_script_datasets(published_data):
    """Training script: per frame a train set (keep-orig pairs from the config) and a validation set, ES then ED."""
    acdc, _ = published_data
    transforms = Transformations(data_aug_policy_name="ACDC_affine_elastic_intensity", pad_size=[224, 224, 1],
                                 crop_size=[192, 192, 1]).get_transformation()
    assert set(transforms) == {"train", "validate"}
    train_parts, val_parts = [], []
    for frame in ["ES", "ED"]:
        train_parts.append(CardiacACDCDataset(
            root_dir=str(acdc), num_classes=4, image_format_name="{p_id}/{frame}_img.nii.gz",
            label_format_name="{p_id}/{frame}_seg.nii.gz", transform=transforms["train"], split="train",
            data_setting_name="10", cval=0, keep_orig_image_label_pair=True, use_cache=True, myocardium_seg=False,
            right_ventricle_seg=False, frame=frame, image_size=[224, 224, 1], label_size=[224, 224],
            dataset_name="ACDC", debug=False))
        val_parts.append(CardiacACDCDataset(
            root_dir=acdc, transform=transforms["validate"], split="validate", data_setting_name="10", cval=0,
            keep_orig_image_label_pair=False, frame=frame, dataset_name="ACDC"))
    train_set, val_set = ConcatDataSet(train_parts), ConcatDataSet(dataset_list=val_parts)
    assert len(train_set) == 2 * 10 * 4 and val_set.patient_number == 2 * 5
    sample = train_set[0]
    assert set(sample) == {"image", "label", "origin_image", "origin_label"}
    assert sample["image"].shape == sample["origin_image"].shape == (1, 192, 192)
    assert sample["label"].shape == sample["origin_label"].shape == (192, 192) and sample["label"].dtype == torch.int64
    assert train_set.get_id().endswith("_ES") and train_set.get_voxel_spacing() == (1.36719, 1.36719, -1)
    assert set(val_set[len(val_set) - 1]) == {"image", "label"} and val_set.get_id().endswith("_ED")
    loader = torch.utils.data.DataLoader(train_set, batch_size=10, shuffle=True, drop_last=False, num_workers=0)
    batch = next(iter(loader))
    assert torch.cat([batch["image"], batch["origin_image"]]).shape == (20, 1, 192, 192)


def test_positional_published_construction(published_data):
    acdc, mm = published_data
    validate = Transformations("no_aug", (224, 224, 1), (192, 192, 1)).get_transformation()["validate"]
    ds = CardiacACDCDataset(validate, "ACDC", acdc, "ED", 4, False, (224, 224, 1), (224, 224), IDX2CLS, True, "10",
                            "validate", 0, None, False)
    assert ds.frame == "ED" and ds.patient_id_list == ["011", "071", "062", "095", "082"] and len(ds) == 20
    mm_ds = Cardiac_MM_Dataset(validate, "MM", mm, 4, False, (224, 224, 1), (224, 224), IDX2CLS, True, None, False,
                               "{p_id}/ED_img.nii.gz", "{p_id}/ED_seg.nii.gz", None, False, False)
    assert mm_ds.frame == "ED" and mm_ds.patient_number == 4 and set(mm_ds[0]) == {"image", "label"}
    defaults = CardiacACDCDataset(validate, root_dir=acdc)  # published defaults: three_shot, ES, keep-orig pairs
    assert defaults.frame == "ES" and defaults.patient_id_list == ["002", "022", "042"]
    assert defaults.keep_orig_image_label_pair
    assert set(defaults[0]) == {"image", "label", "origin_image", "origin_label"}
    assert Cardiac_MM_Dataset(validate, root_dir=mm).frame == "ES"  # the published ES file templates


def test_test_script_datasets(published_data):
    """Test script: one dataset per frame (ED then ES), concatenated; patient volumes cropped to 192, not normalised."""
    acdc, mm = published_data
    validate = Transformations("no_aug", pad_size=(224, 224, 1), crop_size=(192, 192, 1)).get_transformation()
    frames = ["ED", "ES"]
    acdc_test = ConcatDataSet([CardiacACDCDataset(root_dir=acdc, transform=validate["validate"], split="test",
                                                  data_setting_name="10", cval=0, frame=f, new_spacing=None,
                                                  keep_orig_image_label_pair=False) for f in frames])
    mm_test = ConcatDataSet([Cardiac_MM_Dataset(root_dir=mm, transform=validate["validate"],
                                                image_format_name="{p_id}/" + f + "_img.nii.gz",
                                                label_format_name="{p_id}/" + f + "_seg.nii.gz", new_spacing=None)
                             for f in frames])
    assert acdc_test.patient_number == 40 and mm_test.patient_number == 8
    ids = []
    for pid_index in (0, 19, 20, 39):
        data = acdc_test.get_patient_data_for_testing(pid_index, crop_size=192)
        assert data["image"].shape == (4, 1, 192, 192) and data["label"].shape == (4, 192, 192)
        ids.append(acdc_test.get_id())
    assert [i[-2:] for i in ids] == ["ED", "ED", "ES", "ES"]
    stored = mm_test.get_patient_data_for_testing(5, 192)
    assert mm_test.get_id() == "B00X_ES"
    assert float(stored.image.max()) < 1.0  # stored intensities kept by default (published test protocol)
    scaled = mm_test.get_patient_data_for_testing(5, 192, normalize_2D=True)
    assert torch.allclose(scaled.image.amax(dim=(1, 2, 3)), torch.ones(3))
    native = mm_test.get_patient_data_for_testing(5)  # crop_size None: the volume's own in-plane size
    assert native.image.shape == (3, 1, 60, 70)


def test_base_class_methods_and_label_options(published_data, caplog):
    acdc, _ = published_data
    validate = Transformations("no_aug", (224, 224, 1), (192, 192, 1)).get_transformation()["validate"]
    ds = CardiacACDCDataset(validate, root_dir=acdc, data_setting_name="10", frame="ED", debug=True,
                            keep_orig_image_label_pair=False)
    assert ds.set_id(5) == "061_ED" and ds.get_id() == "061_ED"  # slice 5 = second subject of the split
    with caplog.at_level("INFO", logger="medseg.data.base_dataset"):
        image, label = ds.load_data(3)  # the unlabelled last slice: substituted, logged with debug=True
        info = ds.get_info()
    assert image.shape == (60, 72, 1) and image.dtype == np.float32 and label.shape == (60, 72, 1) and label.any()
    assert "substitutes empty slice 3" in caplog.text and info["patient_number"] == 10 and info["slices"] == 40
    sample = ds.preprocess_data_to_tensors(image, label)
    assert sample["image"].shape == (1, 192, 192) and sample["label"].shape == (192, 192)
    assert np.array_equal(ds.formulate_labels(np.array([0, 1, 2, 3])), [0, 1, 2, 3])
    assert np.array_equal(ds.formulate_labels(np.array([0, 1, 2, 3]), foreground_only=True), [0, 1, 1, 1])
    myo = CardiacACDCDataset(validate, root_dir=acdc, data_setting_name="10",
                             formalized_label_dict={0: "BG", 1: "MYO"}, keep_orig_image_label_pair=False)
    assert np.array_equal(myo.formulate_labels(np.array([0, 1, 2, 3])), [0, 0, 1, 0])
    swapped = CardiacACDCDataset(validate, root_dir=acdc, data_setting_name="10",
                                 idx2cls_dict={0: "BG", 1: "RV", 2: "MYO", 3: "LV"}, formalized_label_dict=IDX2CLS)
    assert np.array_equal(swapped.formulate_labels(np.array([0, 1, 2, 3])), [0, 3, 2, 1])
    assert int(swapped[0]["label"].max()) == 3 and int(swapped[0]["origin_label"].max()) == 3
    normalised = CardiacACDCDataset(validate, root_dir=acdc, data_setting_name="10", normalize=True,
                                    keep_orig_image_label_pair=True)
    orig = normalised[0]["origin_image"]
    assert float(orig.min()) == 0.0 and float(orig.max()) == pytest.approx(1.0)  # 2/98 percentiles to [0, 1]


def test_published_keywords_medseg_cannot_honour(published_data):
    acdc, mm = published_data
    with pytest.raises(ValueError, match="new_spacing"):
        CardiacACDCDataset(root_dir=acdc, new_spacing=[1.36719, 1.36719, 5.0])
    with pytest.raises(ValueError, match="contradicts the file templates"):
        Cardiac_MM_Dataset(root_dir=mm, frame="ED")  # the published templates name the ES files
    with pytest.raises(ValueError, match="formalized_label_dict"):
        CardiacACDCDataset(root_dir=acdc, formalized_label_dict={0: "BG", 1: "LV", 2: "LV"})


# ------------------------------------------------------------------------------ argument validation (section G)
@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"num_classes": "4"}, TypeError, "num_classes must be an int >= 2, got str '4'"),
    ({"num_classes": 1}, ValueError, "num_classes must be an int >= 2, got 1"),
    ({"num_classes": True}, TypeError, "num_classes must be an int >= 2, got bool True"),
    ({"image_ch": 0}, ValueError, "image_ch must be an int >= 1, got 0"),
    ({"image_ch": 1.0}, TypeError, "image_ch must be an int >= 1, got float 1.0"),
    ({"learning_rate": "x"}, TypeError, "learning_rate must be a number > 0, got str 'x'"),
    ({"learning_rate": -1}, ValueError, "learning_rate must be a finite number > 0, got -1"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate must be a finite number > 0, got nan"),
    ({"n_iter": 0}, ValueError, "n_iter must be an int >= 1, got 0"),
    ({"n_iter": "2"}, TypeError, "n_iter must be an int >= 1, got str '2'"),
])
def test_constructor_arguments_are_validated(kwargs, error, message):
    with pytest.raises(error) as info:
        AdvancedTripletReconSegmentationModel(use_gpu=False, **kwargs)
    assert str(info.value) == message


def test_constructor_accepts_published_values_and_numpy_integers():
    model = AdvancedTripletReconSegmentationModel("FCN_16_standard", 1, 1e-3, None, None, np.int64(4), 2, None, False)
    assert (model.num_classes, model.image_ch, model.n_iter, model.learning_rate) == (4, 1, 2, 1e-3)
    assert type(model.num_classes) is int


@pytest.mark.parametrize(("images", "error", "message"), [
    (np.zeros((1, 1, 32, 32), np.float32), TypeError, "input must be a float torch.Tensor of shape (N, 1, H, W), got "
                                                      "ndarray; convert it with torch.from_numpy(x).float()"),
    (torch.zeros(1, 1, 32, 32, dtype=torch.long), TypeError, "input must be a floating-point tensor, got dtype "
                                                            "torch.int64"),
    (torch.zeros(1, 1, 32, 32, dtype=torch.float64), TypeError, "input must have the model's dtype torch.float32, "
                                                               "got torch.float64"),
    (torch.zeros(1, 2, 32, 32), ValueError, "input must be (N, 1, H, W) (image_ch=1), got shape (1, 2, 32, 32)"),
    (torch.zeros(1, 32, 32), ValueError, "input must be (N, 1, H, W) (image_ch=1), got shape (1, 32, 32)"),
])
def test_predict_input_is_validated(images, error, message):
    model = _published_model()
    with pytest.raises(error) as info:
        model.predict(images)
    assert str(info.value).startswith(message)


def test_predict_n_iter_keeps_the_published_meaning():
    """``n_iter <= 1`` is the FTN alone (as published); only a value that is not an int is refused."""
    model = _published_model()
    images, _ = _data()
    ftn = model.predict(images, n_iter=1)
    assert torch.equal(model.predict(images, n_iter=0), ftn) and torch.equal(model.predict(images, n_iter=-1), ftn)
    assert not torch.allclose(model.predict(images, n_iter=2), ftn)
    with pytest.raises(TypeError, match="n_iter must be an int or None, got float 2.0"):
        model.predict(images, n_iter=2.0)
