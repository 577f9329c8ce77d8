"""Checkpoint, snapshot and evaluation-plot methods of the published model class, as a mixin of
:class:`~medseg.models.advanced_triplet_recon_segmentation_model.AdvancedTripletReconSegmentationModel`.

The running confusion matrix and the last evaluated batch (``running_metric``, ``cur_eval_*``) are state of the
published class; medseg's own training and evaluation code computes scores from predictions instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from medseg.io.atomic import atomic_torch_save
from medseg.io import checkpoint as ckpt
from medseg.training import snapshot as snapshots


class ModelIOMixin:
    """Saving and loading the five modules and their optimisers, and the published evaluation helpers."""

    def load_model(self, checkpoint_dir: str | os.PathLike) -> None:
        """(medseg) Strictly load ``<module>.pth`` files from ``checkpoint_dir`` (or its ``checkpoints`` subfolder)."""
        folder = ckpt.resolve_checkpoint_dir(checkpoint_dir, tuple(self.model))
        for name, module in self.model.items():
            self.init_model(module, folder / f"{name}.pth")
        self.networks.drop_inference_copies()
        self.checkpoint_dir = checkpoint_dir

    def evaluate(self, input: Tensor, targets_npy: np.ndarray, n_iter: int | None = None) -> Tensor:
        """Predict, update the running confusion matrix with the argmax and keep images/preds/GTs for plotting.

        Args:
            input: ``(B, 1, H, W)`` images.
            targets_npy: ``(B, H, W)`` integer ground truth.
            n_iter: passes of :meth:`predict`.

        Returns:
            ``(B, num_classes, H, W)`` logits; the label map is ``cur_eval_predicts`` (``(B, H, W)`` int64).
        """
        logits = self.predict(input, softmax=False, n_iter=n_iter)
        pred = logits.argmax(dim=1).cpu().numpy()
        targets_npy = np.asarray(targets_npy)
        self.running_metric.update(targets_npy, pred)
        self.cur_eval_images = input.detach().cpu().numpy()[:, 0]
        self.cur_eval_predicts = pred
        self.cur_eval_gts = targets_npy
        return logits

    def save_testing_images_results(
        self, save_dir: str | os.PathLike, epoch_iter: int | str, max_slices: int = 10, file_name: str = "Seg_plots.png"
    ) -> Path:
        """Plot the last :meth:`evaluate` batch: columns Input | GT | Predict (the published plot swapped Input and GT).

        Writes ``save_dir/<epoch_iter>/testing_segmentation_results/<file_name>`` (atomic) and returns its path.

        Raises:
            ValueError: if :meth:`evaluate` has not been called yet.
        """
        if self.cur_eval_images is None or self.cur_eval_gts is None or self.cur_eval_predicts is None:
            raise ValueError("save_testing_images_results needs a batch from evaluate(); none was evaluated yet")
        from medseg.training.plots import save_segmentation_plot  # plotting is optional for the model itself

        path = Path(save_dir) / str(epoch_iter) / "testing_segmentation_results" / file_name
        return save_segmentation_plot(
            path,
            images=torch.from_numpy(np.asarray(self.cur_eval_images, dtype=np.float32)),
            ground_truths=torch.from_numpy(np.asarray(self.cur_eval_gts).astype(np.int64)),
            predictions=torch.from_numpy(np.asarray(self.cur_eval_predicts).astype(np.int64)),
            num_classes=self.num_classes,
            max_rows=max_slices,
        )

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints

    def save_model(
        self,
        save_dir: str | os.PathLike,
        epoch_iter: int | str,
        model_prefix: str | None = None,
        save_optimizers: bool = False,
    ) -> Path:
        """Write ``save_dir/<epoch_iter>/checkpoints/<module>.pth`` (plain state_dicts, atomic); returns the folder.

        Args:
            save_dir: model folder of the run.
            epoch_iter: subfolder name (an epoch or ``'best'``).
            model_prefix: None (published default): ``<module>.pth``, the names :meth:`get_network` loads; a string
                names the files ``<model_prefix>_<module>.pth`` (medseg's choice: the published API names no file
                scheme).
            save_optimizers: also write each module's Adam state as ``[<model_prefix>_]<module>_optimizer.pth``.
        """
        directory = Path(save_dir) / str(epoch_iter) / "checkpoints"
        prefix = "" if model_prefix is None else f"{model_prefix}_"
        if not prefix:
            ckpt.save_modules(self.model, directory)
        else:
            ckpt.save_modules({f"{prefix}{name}": module for name, module in self.model.items()}, directory)
        if save_optimizers:
            for name, optimizer in self.optimizers.items():
                atomic_torch_save(optimizer.state_dict(), directory / f"{prefix}{name}_optimizer.pth")
        return directory

    def save_snapshots(
        self,
        save_dir: str | os.PathLike,
        epoch: int,
        model_prefix: str = "interrupted",
        *,
        extra: dict[str, Any] | None = None,
        path: str | os.PathLike | None = None,
    ) -> Path:
        """Write a resumable snapshot (atomic) and return its path.

        Default location ``save_dir/<model_prefix>/checkpoints/<network_type>.pkl``; ``path`` (medseg) overrides it.
        The file is medseg's one snapshot format (:mod:`medseg.training.snapshot`) with the epoch as its only
        counter: the published keys ``{'network_type', 'epoch', 'model_state': {module: state_dict},
        'optimizer_state': {module: optimizer.state_dict()}}`` plus ``format`` and ``extra``, so the published code,
        ``load_snapshots`` and ``medseg-train --resume_pkl_path`` all read it.

        ``extra`` (medseg) must hold only weights-only-loadable values (tensors, numbers, strings, containers).
        """
        default = Path(save_dir) / model_prefix / "checkpoints" / f"{self.network_type}.pkl"
        target = Path(path) if path is not None else default
        return snapshots.save_snapshot(target, network_type=self.network_type, modules=self.model,
                                       optimizers=self.optimizers, state=int(epoch), extra=extra)

    def restore_snapshot(self, file_path: str | os.PathLike) -> dict[str, Any]:
        """(medseg) Strictly restore module and optimiser states from a snapshot: one of :meth:`save_snapshots`, of
        ``medseg-train`` or of the published code.

        Returns:
            ``{'epoch': int, 'extra': dict, 'network_type': str}``.

        Raises:
            FileNotFoundError, ValueError: naming the file, for a missing, unsafe or mismatched snapshot.
        """
        snapshot = snapshots.load_snapshot(file_path)  # to the CPU; load_state_dict moves each state to its module
        if snapshot["network_type"] != self.network_type:
            raise ValueError(f"snapshot {file_path} was saved for network_type {snapshot['network_type']!r}, the "
                             f"model is {self.network_type!r}")
        state = snapshots.restore_training_state(snapshot, self.model, self.optimizers, file_path)
        self.networks.drop_inference_copies()
        return {"epoch": state.epoch, "extra": dict(snapshot.get("extra") or {}), "network_type": self.network_type}

    def load_snapshots(self, file_path: str | os.PathLike) -> int:
        """Restore a snapshot of :meth:`save_snapshots`; returns the epoch to start from (the saved epoch).

        Raises:
            FileNotFoundError, ValueError: naming the file (no silent restart at epoch 0).
        """
        return int(self.restore_snapshot(file_path)["epoch"])


__all__ = ["ModelIOMixin"]
