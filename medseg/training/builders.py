"""Factories from the frozen config to datasets, data loaders, samplers, masking specs and the model."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from medseg.config import ExperimentConfig
from medseg.data.acdc import CardiacACDCDataset
from medseg.data.concat import ConcatDataSet
from medseg.data.transforms import Transformations
from medseg.utils.cli import UnsupportedInput

logger = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """Train/validation datasets and loaders of a run."""

    train_set: Dataset
    val_set: Dataset
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: ResumableSampler
    loader_generator: torch.Generator


def check_data_config(config: ExperimentConfig) -> None:
    """The checks of :func:`build_datasets` that read no data, so that the command line can make them before it
    claims the run folder.

    Raises:
        UnsupportedInput: (a ``NotImplementedError`` and a ``ValueError``) if ``data.dataset_name`` does not contain
            ``'ACDC'`` (the only training dataset).
        FileNotFoundError, NotADirectoryError: if ``data.root_dir`` is not a folder (the message names the key).
        ValueError: policy or sizes that the transforms refuse.
    """
    data = config.data
    if "ACDC" not in data.dataset_name:
        raise UnsupportedInput(f"config key 'data.dataset_name': only ACDC training is supported, got "
                               f"{data.dataset_name!r}")
    root = Path(data.root_dir)
    where = "" if root.is_absolute() else f", relative to the working folder {Path.cwd()}"
    if not root.exists():
        raise FileNotFoundError(f"config key 'data.root_dir': expected the {data.dataset_name} data folder, got "
                                f"{str(root)!r} (not found{where})")
    if not root.is_dir():
        raise NotADirectoryError(f"config key 'data.root_dir': expected the {data.dataset_name} data folder, got "
                                 f"{str(root)!r} (a file, not a folder{where})")
    Transformations(data.data_aug_policy, pad_size=data.pad_size, crop_size=data.crop_size)


def build_datasets(config: ExperimentConfig, data_setting: str, cval: int, seed: int) -> tuple[Dataset, Dataset]:
    """One train and one validation dataset per frame, concatenated in config order (ES, then ED).

    Raises:
        UnsupportedInput: (a ``NotImplementedError`` and a ``ValueError``) if ``data.dataset_name`` does not contain
            ``'ACDC'`` (the only training dataset).
        FileNotFoundError, ValueError: see :func:`check_data_config` and the dataset.
    """
    data = config.data
    check_data_config(config)
    transforms = Transformations(data.data_aug_policy, pad_size=data.pad_size, crop_size=data.crop_size)
    transforms_by_split = transforms.get_transformation()
    parts: dict[str, list[Dataset]] = {"train": [], "validate": []}
    for frame in data.frame:
        for split in parts:
            parts[split].append(CardiacACDCDataset(
                root_dir=data.root_dir, split=split, data_setting_name=data_setting, cval=cval, frame=frame,
                transform=transforms_by_split["train" if split == "train" else "validate"],
                keep_orig_image_label_pair=split == "train" and data.keep_orig_image_label_pair_for_training,
                use_cache=data.use_cache, myocardium_seg=data.myocardium_only,
                right_ventricle_seg=data.right_ventricle_only, image_format_name=data.image_format_name,
                label_format_name=data.label_format_name, crop_size=tuple(data.crop_size[:2]), seed=seed,
                new_spacing=data.new_spacing,
            ))
    train_set, val_set = (p[0] if len(p) == 1 else ConcatDataSet(p) for p in (parts["train"], parts["validate"]))
    val_set.set_epoch(0)  # the validation set is the same in every epoch
    return train_set, val_set


class ResumableSampler(Sampler[int]):
    """A :class:`DistributedSampler` (seeded, reshuffled per epoch by ``set_epoch``) that can skip the batches that
    a resumed epoch already trained on. With one process it is a seeded shuffle over all training slices.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        self.base = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                                       drop_last=False)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Shuffle for ``epoch``; the next pass starts ``skip`` indices into it."""
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)

    @property
    def epoch(self) -> int:
        """The epoch selected by the last :meth:`set_epoch`."""
        return int(self.base.epoch)


class EpochTaggedSampler(Sampler[tuple[int, int]]):
    """The indices of a :class:`ResumableSampler`, each tagged with its epoch: ``(epoch, index)``.

    Persistent DataLoader workers keep their own copy of the dataset, so a ``set_epoch`` in the parent never reaches
    them; the epoch therefore travels with every index (see :class:`EpochTaggedDataset`).
    """

    def __init__(self, sampler: ResumableSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochTaggedDataset(Dataset):
    """``dataset[(epoch, index)]``: ``dataset.set_epoch(epoch)`` in the process that loads the sample, then
    ``dataset[index]``, so per-epoch augmentation seeds are right in persistent workers too."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = item
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        return self.dataset[index]


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` of a DataLoader worker from its torch seed, and keep the worker quiet about
    stop requests.

    A forked worker inherits the training loop's SIGINT/SIGTERM handler, and Ctrl-C reaches every process of the
    group: without this, each worker would log "received SIGINT: stopping ..." as well. Only the main process stops
    the run, so only it says so (the handler itself, and so how a worker reacts to a signal, is unchanged).
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    logging.getLogger(STOP_REQUEST_LOGGER).disabled = True


#: the logger of :class:`medseg.training.signals.StopRequest`
STOP_REQUEST_LOGGER = "medseg.training.signals"


def train_loader_batch_size(config: ExperimentConfig) -> int:
    """Slices per loader batch: half the step batch when the originals are appended (keep-orig doubling)."""
    batch = config.learning.batch_size
    return max(batch // 2, 1) if config.data.keep_orig_image_label_pair_for_training else batch


def build_data(config: ExperimentConfig, data_setting: str, cval: int, seed: int, n_workers: int,
               pin_memory: bool, num_replicas: int = 1, rank: int = 0) -> DataBundle:
    """Datasets and loaders; the train loader's order is set per epoch via ``bundle.sampler.set_epoch``."""
    train_set, val_set = build_datasets(config, data_setting, cval, seed)
    sampler = ResumableSampler(train_set, num_replicas=num_replicas, rank=rank, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    # persistent workers: no re-fork and no empty prefetch queue at every epoch start (and every validation)
    common = {"num_workers": n_workers, "pin_memory": pin_memory, "worker_init_fn": seed_worker,
              "persistent_workers": n_workers > 0}
    train_loader = DataLoader(EpochTaggedDataset(train_set), batch_size=train_loader_batch_size(config),
                              sampler=EpochTaggedSampler(sampler), drop_last=False, generator=generator, **common)
    val_loader = DataLoader(val_set, batch_size=config.learning.batch_size, shuffle=False, drop_last=False, **common)
    logger.info("training slices: %d (%d per process, loader batch %d), validation slices: %d", len(train_set),
                len(sampler), train_loader.batch_size, len(val_set))
    return DataBundle(train_set, val_set, train_loader, val_loader, sampler, generator)


def assemble_batch(batch: dict[str, torch.Tensor], keep_orig: bool,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 1, H, W) and labels (B, H, W) on ``device``; with keep-orig ``cat([augmented, originals])``."""
    non_blocking = device.type == "cuda"  # the loader pins memory on CUDA; copy first, concatenate on the device
    images, labels = (batch[key].to(device, non_blocking=non_blocking) for key in ("image", "label"))
    if keep_orig:
        images = torch.cat([images, batch["origin_image"].to(device, non_blocking=non_blocking)], dim=0)
        labels = torch.cat([labels, batch["origin_label"].to(device, non_blocking=non_blocking)], dim=0)
    return images, labels
