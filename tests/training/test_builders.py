"""The training data loaders: persistent workers still see every epoch's augmentation seeds."""

from __future__ import annotations

from pathlib import Path

import torch
from training_helpers import tiny_acdc  # noqa: F401

from medseg.config import from_dict
from medseg.training.builders import EpochTaggedDataset, EpochTaggedSampler, ResumableSampler, build_data


def _epochs(root: Path, n_workers: int, epochs: int = 2) -> list[list[torch.Tensor]]:
    config = from_dict({
        "data": {"root_dir": str(root), "frame": ["ES"], "pad_size": [48, 48, 1], "crop_size": [32, 32, 1]},
        "learning": {"batch_size": 4},
    })
    data = build_data(config, "one_shot", 0, seed=7, n_workers=n_workers, pin_memory=False)
    assert data.train_loader.persistent_workers == (n_workers > 0)
    out = []
    for epoch in range(epochs):
        data.sampler.set_epoch(epoch)
        out.append([batch["image"] for batch in data.train_loader])
    return out


def test_persistent_workers_follow_the_epoch(tiny_acdc: Path) -> None:  # noqa: F811
    in_process = _epochs(tiny_acdc, n_workers=0)
    in_workers = _epochs(tiny_acdc, n_workers=1)
    for a, b in zip(in_process, in_workers):
        assert len(a) == len(b) > 0
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    # a new epoch re-draws the augmentation (with the same order, the images would repeat if it did not)
    assert not all(torch.equal(x, y) for x, y in zip(in_workers[0], in_workers[1]))


def test_epoch_tagged_sampler_and_dataset() -> None:
    class Recorder:
        epoch = -1

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return 5

        def __getitem__(self, index: int) -> tuple[int, int]:
            return self.epoch, index

    sampler = ResumableSampler(list(range(5)), num_replicas=1, rank=0, seed=1)
    sampler.set_epoch(3, skip=2)
    tagged = list(EpochTaggedSampler(sampler))
    assert [index for _, index in tagged] == list(sampler) and {epoch for epoch, _ in tagged} == {3}
    assert len(EpochTaggedSampler(sampler)) == 3
    dataset = EpochTaggedDataset(Recorder())
    assert dataset[(4, 1)] == (4, 1) and len(dataset) == 5
