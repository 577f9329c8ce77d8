"""Checkpoint integrity: manifest hashes, torn sets, zip CRC, non-finite weights, safe error messages."""

from __future__ import annotations

import json
import logging
import pickle

import pytest
import torch

from corrupt_files import flip_bytes
from medseg.io import checkpoint as ckpt
from medseg.nn.encoder_decoder import get_network


def modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return get_network("FCN_16_standard", 1, 4)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "best" / "checkpoints"
    return ckpt.save_modules(modules(), folder, info={"epoch": 7, "mean_iou": 0.5})


def copy_of(saved, tmp_path):
    import shutil

    target = tmp_path / "checkpoints"
    shutil.copytree(saved, target)
    return target


def test_manifest_lists_every_file_with_hash_size_and_epoch(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format"] == ckpt.MANIFEST_FORMAT and manifest["complete"] is True and manifest["epoch"] == 7
    assert sorted(manifest["files"]) == sorted(f"{n}.pth" for n in modules())
    for name, entry in manifest["files"].items():
        assert entry["size"] == (saved / name).stat().st_size and len(entry["sha256"]) == 64
    ckpt.load_modules(modules(), saved, torch.device("cpu"))


def test_flipped_bytes_inside_a_module_file_are_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    flip_bytes(folder / "image_encoder.pth", n=256)  # loads "fine" with torch.load(weights_only=True) alone
    with pytest.raises(ValueError, match=r"image_encoder.pth: expected SHA-256 .* got .*corrupted"):
        ckpt.load_modules(modules(), folder, torch.device("cpu"))
    (folder / "manifest.json").unlink()  # even without a manifest the zip CRC-32 catches it
    with pytest.raises(ValueError, match=r"image_encoder.pth: expected an intact torch checkpoint, got corrupted "
                                         r"data \(member .* fails its CRC-32 check\)"):
        ckpt.load_modules(modules(), folder, torch.device("cpu"))


def test_torn_set_after_a_kill_mid_save_is_refused(saved, tmp_path, monkeypatch):
    folder = copy_of(saved, tmp_path)
    real_write, calls = ckpt._write_bytes, []

    def killed_after_two(path, data):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill -9 while writing the set")
        calls.append(path)
        real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_bytes", killed_after_two)
    torch.manual_seed(1)
    newer = get_network("FCN_16_standard", 1, 4)  # another epoch's weights
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_modules(newer, folder, info={"epoch": 8})
    with pytest.raises(ValueError, match=r"expected a complete checkpoint set, got a torn one: writing it \(epoch 8\) "
                                         "was interrupted"):
        ckpt.load_modules(modules(), folder, torch.device("cpu"))


def test_module_file_from_another_save_is_a_torn_set(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    other = ckpt.save_modules(get_network("FCN_16_standard", 1, 4), tmp_path / "other")
    (folder / "shape_decoder.pth").write_bytes((other / "shape_decoder.pth").read_bytes())
    with pytest.raises(ValueError, match="shape_decoder.pth: expected SHA-256 .*belongs to another save"):
        ckpt.load_modules(modules(), folder, torch.device("cpu"))


def test_published_checkpoint_without_manifest_loads_with_a_note(tmp_path, caplog):
    source = modules()
    for name, module in source.items():  # what the original code wrote: torch.save(state_dict) per module
        torch.save(module.state_dict(), tmp_path / f"{name}.pth")
    target = {name: module for name, module in get_network("FCN_16_standard", 1, 4).items()}
    with caplog.at_level(logging.INFO, logger="medseg.io.checkpoint"):
        ckpt.load_modules(target, tmp_path, torch.device("cpu"))
    assert "has no manifest.json" in caplog.text
    assert torch.equal(target["image_encoder"].state_dict()[next(iter(source["image_encoder"].state_dict()))],
                       next(iter(source["image_encoder"].state_dict().values())))


def test_non_finite_weights_are_never_written_nor_loaded(tmp_path):
    bad = modules()
    with torch.no_grad():
        next(bad["segmentation_decoder"].parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=r"refusing to write .*segmentation_decoder.pth: expected finite weights, "
                                         r"got NaN/Inf in 1 of"):
        ckpt.save_modules(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists() or not list((tmp_path / "never").iterdir())
    for name, module in bad.items():  # a diverged published-style folder
        torch.save(module.state_dict(), tmp_path / f"{name}.pth")
    with pytest.raises(ValueError, match="segmentation_decoder.pth: expected finite weights, got NaN/Inf"):
        ckpt.load_modules(modules(), tmp_path, torch.device("cpu"))


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unsafe_file_message_never_suggests_weights_only_false(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"w": Payload()}, handle, protocol=2)
    with pytest.raises(ValueError) as info:
        ckpt.safe_load(path)
    message = str(info.value)
    assert "evil.pth: expected a weights-only checkpoint" in message and "refused for safety" in message
    assert "weights_only=False" not in message and "set to `False`" not in message and "\n" not in message
    torch.save({"w": Payload()}, tmp_path / "evil_zip.pth")
    with pytest.raises(ValueError) as info:
        ckpt.safe_load(tmp_path / "evil_zip.pth")
    assert "Unsupported global" in str(info.value) and "weights_only=False" not in str(info.value)
