"""Running confusion-matrix score used for validation: pooled over all pixels of all slices."""

from __future__ import annotations

import numpy as np


class runningScore:  # noqa: N801 - published class name
    """Accumulate an ``n_classes x n_classes`` confusion matrix (rows = ground truth, columns = prediction).

    Args:
        n_classes: number of classes, background included.
    """

    def __init__(self, n_classes: int) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n_classes = n_classes
        self.confusion_matrix = np.zeros((n_classes, n_classes), dtype=np.int64)

    def _fast_hist(self, label_true: np.ndarray, label_pred: np.ndarray) -> np.ndarray:
        valid = (label_true >= 0) & (label_true < self.n_classes)
        bins = self.n_classes * label_true[valid].astype(np.int64) + label_pred[valid].astype(np.int64)
        return np.bincount(bins, minlength=self.n_classes**2).reshape(self.n_classes, self.n_classes)

    def update(self, label_trues: np.ndarray, label_preds: np.ndarray) -> None:
        """Add the pixels of integer arrays of equal shape (e.g. ``(N, H, W)``) to the confusion matrix.

        Raises:
            ValueError: if the shapes differ or a prediction is outside ``[0, n_classes)``.
        """
        label_trues = np.asarray(label_trues)
        label_preds = np.asarray(label_preds)
        if label_trues.shape != label_preds.shape:
            raise ValueError(f"ground truth shape {label_trues.shape} != prediction shape {label_preds.shape}")
        if label_preds.size and (label_preds.min() < 0 or label_preds.max() >= self.n_classes):
            raise ValueError(
                f"predictions must lie in [0, {self.n_classes}), got [{label_preds.min()}, {label_preds.max()}]"
            )
        self.confusion_matrix += self._fast_hist(label_trues.ravel(), label_preds.ravel())

    def get_scores(self) -> dict[str, object]:
        """Scores of the pooled confusion matrix.

        Returns:
            dict with ``'Overall Acc'`` (float), ``'Mean Acc'`` (nanmean of per-class recall), ``'FreqW Acc'``,
            ``'Mean IoU'`` (nanmean over **all** classes including background) and ``'Class IoU'``
            (``{class_index: IoU}``, NaN for a class absent from both GT and prediction).
        """
        hist = self.confusion_matrix.astype(np.float64)
        tp = np.diag(hist)
        gt = hist.sum(axis=1)
        pred = hist.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = tp.sum() / hist.sum() if hist.sum() else float("nan")
            acc_cls = tp / gt
            iu = tp / (gt + pred - tp)
            freq = gt / hist.sum() if hist.sum() else np.full_like(gt, np.nan)
        mean_acc = float(np.nanmean(acc_cls)) if np.any(~np.isnan(acc_cls)) else float("nan")
        mean_iu = float(np.nanmean(iu)) if np.any(~np.isnan(iu)) else float("nan")
        valid = freq > 0
        fwavacc = float((freq[valid] * iu[valid]).sum()) if hist.sum() else float("nan")
        return {
            "Overall Acc": float(acc),
            "Mean Acc": mean_acc,
            "FreqW Acc": fwavacc,
            "Mean IoU": mean_iu,
            "Class IoU": {i: float(v) for i, v in enumerate(iu)},
        }

    def reset(self) -> None:
        """Clear the confusion matrix."""
        self.confusion_matrix = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
