"""Hard-example explorer: what latent masking generates, for each masking method and strength.

* :mod:`.subjects`: read a subject (preprocessed folder or image file) at 192 × 192 and pick a slice.
* :mod:`.hard_examples`: pure computations of the grids (corrupted reconstructions, corrupted segmentations with
  their entropy, the ``get_recon_diff`` maps).
* :mod:`.figures`: matplotlib plots of those grids (Figures 1-3).
* :mod:`.demo_model`: the checkpoint behind them (a missing one is an error, or on request a small demo model).

Used by ``visualization/vis_hard_example.ipynb`` and ``scripts/visualize_hard_examples.py``.
"""

from medseg.visualization.demo_model import QUICKSTART_CHECKPOINT, ensure_checkpoint, missing_checkpoint_message
from medseg.visualization.figures import (
    LABEL_CMAP,
    plot_example,
    plot_recon_diff,
    plot_reconstruction_grid,
    plot_segmentation_grid,
    save_figure,
)
from medseg.method.hard_examples import (
    METHODS,
    THRESHOLDS,
    CorruptionGrid,
    ReconDiff,
    corruption_grid,
    entropy_map,
    entropy_maps,
    hard_labels,
    label_change,
    masked_fraction,
    mean_abs_change,
    recon_diff,
    segmentation_probabilities,
)
from medseg.visualization.pipeline import hard_example_figures, probe_label
from medseg.visualization.subjects import Subject, checkpoint_spacing, default_slice, load_subject, slice_batch

__all__ = [
    "LABEL_CMAP",
    "METHODS",
    "QUICKSTART_CHECKPOINT",
    "THRESHOLDS",
    "CorruptionGrid",
    "ReconDiff",
    "Subject",
    "corruption_grid",
    "default_slice",
    "ensure_checkpoint",
    "entropy_map",
    "entropy_maps",
    "hard_example_figures",
    "hard_labels",
    "label_change",
    "load_subject",
    "checkpoint_spacing",
    "masked_fraction",
    "mean_abs_change",
    "missing_checkpoint_message",
    "plot_example",
    "plot_recon_diff",
    "plot_reconstruction_grid",
    "plot_segmentation_grid",
    "probe_label",
    "recon_diff",
    "save_figure",
    "segmentation_probabilities",
    "slice_batch",
]
