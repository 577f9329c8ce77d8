import pickle
import warnings

import pytest
import torch

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.training.snapshot import SNAPSHOT_FORMAT
from medseg.training.step import train_step
from numerics import fp32_tolerance


def test_predict_n_iter_is_sequential_stn(make_model, batch):
    model = make_model()
    images, labels = batch
    for _ in range(2):
        train_step(model, images, labels, latent_da=False)  # non-trivial running statistics
    model.eval()
    net = model.model
    with torch.no_grad():
        ftn = net["segmentation_decoder"](net["image_encoder"](images)[1])

        def stn(y):
            probs = torch.softmax(y / 2, dim=1)
            return net["shape_decoder"](net["shape_encoder"](probs))

        expected = {1: ftn, 2: stn(ftn), 3: stn(stn(ftn))}
    # predict folds BatchNorm into the convolutions: the same function up to fp32 rounding, bounded by the
    # accumulation length of the path (FTN, then one shape encoder + decoder per STN pass; tests/numerics.py)
    ftn_path = (net["image_encoder"], net["segmentation_decoder"])
    stn_pass = (net["shape_encoder"], net["shape_decoder"])
    tol = {n: fp32_tolerance(want, *ftn_path, *stn_pass * (n - 1)) for n, want in expected.items()}
    for n_iter, want in expected.items():
        got = model.predict(images, n_iter=n_iter)
        assert (got - want).abs().max() <= tol[n_iter], n_iter
        # the bound is far below what a wrong number of passes would give
        other = expected[n_iter % 3 + 1]
        assert (other - want).abs().max() > 100 * tol[n_iter], n_iter
    assert (model.predict(images, n_iter=0) - ftn).abs().max() <= tol[1]
    probs = model.predict(images, softmax=True, n_iter=2)
    # softmax is 1/2-Lipschitz in the max norm, so the logit bound also bounds the probabilities
    assert (probs - torch.softmax(expected[2], 1)).abs().max() <= tol[2]
    assert not probs.is_inference() and probs.is_contiguous()
    assert not model.training and not model.model["image_encoder"].training


def test_default_n_iter_and_run(make_model, batch):
    model = make_model(n_iter=2)
    images, _ = batch
    model.eval()
    recon, ftn, stn = model.run(images)
    pred = model.predict(images)  # BN folded into the convolutions: equal up to fp32 rounding (tests/numerics.py)
    net = model.model
    path = (net["image_encoder"], net["segmentation_decoder"], net["shape_encoder"], net["shape_decoder"])
    assert (pred - stn).abs().max() <= fp32_tolerance(stn, *path)
    # the same unfolded modules on the same input: the same kernels, so the same numbers
    refined, internal = model.slow_refinement(ftn, n_steps=3, save_internal_predicts=True)
    assert torch.equal(refined, stn) and len(internal) == 3
    diff_img, diff_seg, init, ref, rec = model.get_recon_diff(images)
    assert torch.equal(diff_img, (images - recon).abs())


def test_modes_parameters_and_grad_helpers(make_model):
    model = make_model()
    params = list(model.parameters())
    assert all(isinstance(p, torch.Tensor) for p in params)
    assert sum(p.numel() for p in params) == 2_528_953
    assert len(dict(model.named_parameters())) == len(params)
    model.eval()
    assert not model.training and not any(m.training for m in model.get_modules())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert model.training and all(m.training for m in model.get_modules())
    assert all(p.requires_grad for p in model.parameters())
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert set(model.optimizers) == set(model.model)
    assert all(isinstance(o, torch.optim.Adam) and o.defaults["lr"] == 1e-4 for o in model.optimizers.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="fallback only happens without CUDA")
def test_use_gpu_without_cuda_falls_back_with_one_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = AdvancedTripletReconSegmentationModel(use_gpu=True)
    assert model.device.type == "cpu" and not model.use_gpu
    assert len([w for w in caught if "CUDA" in str(w.message)]) == 1


def test_evaluate_updates_running_score(make_model, batch):
    model = make_model()
    images, labels = batch
    logits = model.evaluate(images, labels.numpy(), n_iter=2)
    assert logits.shape == (2, 4, 32, 32)
    assert (model.cur_eval_predicts == logits.argmax(1).numpy()).all() and model.cur_eval_predicts.shape == (2, 32, 32)
    assert model.running_metric.confusion_matrix.sum() == labels.numel()
    assert set(model.running_metric.get_scores()) >= {"Mean IoU", "Mean Acc", "Overall Acc", "Class IoU"}


def test_checkpoint_round_trip(make_model, batch, tmp_path):
    model = make_model()
    images, labels = batch
    train_step(model, images, labels, latent_da=False)
    folder = model.save_model(tmp_path, "best")
    assert folder == tmp_path / "best" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{n}.pth" for n in model.model] + ["manifest.json"])
    for name in model.model:
        state = torch.load(folder / f"{name}.pth", weights_only=True)
        assert list(state) == list(model.model[name].state_dict())
    fresh = make_model(seed=99, checkpoint_dir=folder)
    assert torch.equal(fresh.predict(images, n_iter=2), model.predict(images, n_iter=2))
    parent = make_model(seed=98, checkpoint_dir=tmp_path / "best")  # the parent folder is accepted too
    assert torch.equal(parent.predict(images, n_iter=1), model.predict(images, n_iter=1))


def test_missing_checkpoint_file_is_an_error(make_model, tmp_path):
    folder = make_model().save_model(tmp_path, 0)
    (folder / "shape_decoder.pth").unlink()
    with pytest.raises(FileNotFoundError, match="shape_decoder.pth"):
        make_model(checkpoint_dir=folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_model(checkpoint_dir=tmp_path / "nowhere")


def test_mismatched_checkpoint_is_refused(make_model, tmp_path):
    folder = make_model(num_classes=3).save_model(tmp_path, 0)
    with pytest.raises(ValueError, match=r"segmentation_decoder\.pth.*final_conv\.weight"):
        make_model(num_classes=4, checkpoint_dir=folder)
    state = torch.load(folder / "image_encoder.pth", weights_only=True)
    state["extra.weight"] = state.pop("code_decoupler.0.weight")
    torch.save(state, folder / "image_encoder.pth")
    with pytest.raises(ValueError, match=r"image_encoder\.pth: expected SHA-256"):  # not the file the manifest lists
        make_model(num_classes=3, checkpoint_dir=folder)
    (folder / "manifest.json").unlink()  # as a published checkpoint: no manifest, the strict key check applies
    with pytest.raises(ValueError, match=r"image_encoder\.pth.*missing keys \['code_decoupler\.0\.weight'\]"):
        make_model(num_classes=3, checkpoint_dir=folder)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_tampered_checkpoint_is_refused(make_model, tmp_path):
    folder = make_model().save_model(tmp_path, 0)
    with open(folder / "image_decoder.pth", "wb") as handle:
        pickle.dump({"up1.up.weight": Payload()}, handle, protocol=2)
    with pytest.raises(ValueError, match=r"image_decoder\.pth: expected SHA-256"):
        make_model(checkpoint_dir=folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ValueError, match=r"image_decoder\.pth.*weights-only"):
        make_model(checkpoint_dir=folder)
    (folder / "image_decoder.pth").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="image_decoder.pth"):
        make_model(checkpoint_dir=folder)


def test_snapshot_round_trip_with_optimizer_state(make_model, batch, tmp_path):
    model = make_model(learning_rate=1e-3)
    images, labels = batch
    train_step(model, images, labels, latent_da=True)
    path = model.save_snapshots(tmp_path, epoch=7, extra={"best_score": 0.5, "rng": torch.get_rng_state()})
    assert path == tmp_path / "interrupted" / "checkpoints" / "FCN_16_standard.pkl"
    raw = torch.load(path, weights_only=True)
    # the one snapshot format, with the epoch as its only counter: the published keys + format + extra
    assert set(raw) == {"format", "network_type", "epoch", "model_state", "optimizer_state", "extra"}
    assert raw["format"] == SNAPSHOT_FORMAT
    fresh = make_model(seed=5, learning_rate=1e-3)
    info = fresh.restore_snapshot(path)
    assert info["epoch"] == 7 and info["extra"]["best_score"] == 0.5
    assert fresh.load_snapshots(path) == 7  # published form: the start epoch
    for name, opt in model.optimizers.items():
        mine, theirs = opt.state_dict()["state"], fresh.optimizers[name].state_dict()["state"]
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert torch.equal(mine[key]["exp_avg"], theirs[key]["exp_avg"])
            assert torch.equal(mine[key]["exp_avg_sq"], theirs[key]["exp_avg_sq"])
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out_a = train_step(model, images, labels, latent_da=True, generator=gen_a)
    out_b = train_step(fresh, images, labels, latent_da=True, generator=gen_b)
    assert out_a.losses == pytest.approx(out_b.losses, rel=1e-5)
    assert torch.allclose(model.predict(images), fresh.predict(images), atol=1e-5)
    custom = model.save_snapshots(tmp_path, epoch=1, path=tmp_path / "x" / "snap.pkl")
    assert custom.is_file()


def test_snapshot_errors(make_model, tmp_path):
    model = make_model()
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        model.load_snapshots(tmp_path / "missing.pkl")
    path = model.save_snapshots(tmp_path, epoch=1)
    other = make_model("FCN_16_standard_share_code")
    with pytest.raises(ValueError, match="network_type"):
        other.load_snapshots(path)


@pytest.mark.gpu
def test_cuda_training_and_predict(batch):
    model = AdvancedTripletReconSegmentationModel(use_gpu=True)
    assert model.device.type == "cuda"
    images, labels = batch
    out = train_step(model, images, labels, latent_da=True)
    assert out.corrupted_image.device.type == "cuda"
    assert model.predict(images, n_iter=2).device.type == "cuda"
