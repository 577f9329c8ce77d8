"""The checkpoint behind the hard-example figures: the quickstart's model, or on request a small demo model.

:func:`ensure_checkpoint` never substitutes anything silently: a missing checkpoint is an error that says how to make
one, unless the caller explicitly asks for the demo model (about a minute of CPU training on the synthetic data,
which is generated first if it is missing). A checkpoint that exists is loaded strictly by the model
(:func:`medseg.evaluation.inference.load_model`), so one that does not match the architecture is refused with the
model's error naming the file (the published notebook silently ran an unloaded encoder).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from medseg.config import config_name_from_path, load_config
from medseg.conversion.acdc import preprocess_acdc
from medseg.phantom.generator import ACDC_DIR, generate_dataset
from medseg.training.api import TrainArguments, train
from medseg.training.run_files import build_run_paths

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
#: Where ``scripts/quickstart.sh`` writes the best cooperative model (relative to the repository root).
QUICKSTART_CHECKPOINT = Path(
    "saved/quickstart/runs/train_ACDC_10_n_cls_4/quickstart/cooperative_training/0/model/best/checkpoints"
)
#: The demo budget: the quickstart config (2.73438 mm grid, batch 20) for one epoch of the ED frames (13 iterations)
#: on 96 x 96 crops.
DEMO_OVERRIDES = ("learning.n_epochs=1", 'data.frame="ED"', "data.crop_size=[96,96,1]", "data.pad_size=[128,128,1]")
DEMO_DATA_SETTING = "10"
DEMO_SEED = 40


def missing_checkpoint_message(checkpoint: PathLike) -> str:
    """How to get a checkpoint when ``checkpoint`` does not exist."""
    return (
        f"no checkpoint folder {checkpoint} (expected the <module>.pth files of a trained model). Make one with "
        f"`bash scripts/quickstart.sh` (synthetic data + quickstart training, about 2 hours on a 2-core CPU; it writes "
        f"{QUICKSTART_CHECKPOINT}), point CHECKPOINT at another .../model/best/checkpoints folder, or set "
        f"TRAIN_DEMO_MODEL = True to train a small demo model first (about a minute on CPU, after generating the "
        f"synthetic data if it is missing)."
    )


def ensure_synthetic_acdc(data_root: PathLike, seed: int = 0) -> Path:
    """Return ``data_root`` (a preprocessed ACDC folder), generating 100 synthetic subjects there if it is empty.

    The raw files go to ``<data_root>/../raw/ACDC`` as in ``scripts/prepare_synthetic.sh``.
    """
    data_root = Path(data_root)
    if data_root.is_dir() and any(data_root.iterdir()):
        return data_root
    out = data_root.parent
    logger.info("generating the synthetic ACDC set under %s (about a minute)", out)
    generate_dataset(out, n_acdc=100, n_mnms_per_vendor=0, seed=seed)
    report = preprocess_acdc(out / ACDC_DIR, data_root)
    logger.info("preprocessed %s", report)
    return data_root


def demo_checkpoint_dir(save_dir: PathLike, config_path: PathLike, data_setting: str = DEMO_DATA_SETTING) -> Path:
    """Where :func:`train_demo_model` leaves the best checkpoint (the published run layout)."""
    config = load_config(config_path, [])
    paths = build_run_paths(save_dir, config.data.dataset_name, data_setting, config.segmentation_model.num_classes,
                            config_name_from_path(config_path), cval=0)  # fmt: skip
    return paths.model_dir / "best" / "checkpoints"


def train_demo_model(
    config_path: PathLike,
    data_root: PathLike,
    save_dir: PathLike,
    overrides: Sequence[str] = DEMO_OVERRIDES,
    device: str = "auto",
    retrain: bool = False,
) -> Path:
    """Train ``config_path`` briefly (``medseg-train`` with ``--set`` ``overrides``) and return its best checkpoint.

    An existing demo checkpoint is reused unless ``retrain``. The data are generated if ``data_root`` is empty.

    Args:
        config_path: experiment config, e.g. ``config/quickstart/cooperative_training.json``.
        data_root: preprocessed ACDC folder (``data.root_dir``).
        save_dir: root of the demo run.
        overrides: ``KEY=VALUE`` config overrides that set the budget.
        device: ``auto``, ``cpu`` or ``cuda``.
        retrain: train even if a demo checkpoint exists.

    Raises:
        RuntimeError: if training exits with an error (its log names the reason).
    """
    checkpoint = demo_checkpoint_dir(save_dir, config_path)
    if checkpoint.is_dir() and not retrain:
        logger.info("reusing the demo model %s", checkpoint)
        return checkpoint
    data_root = ensure_synthetic_acdc(data_root)
    arguments = TrainArguments(json_config_path=str(config_path), cval=0, data_setting=DEMO_DATA_SETTING,
                               seed=DEMO_SEED, save_dir=str(save_dir), n_workers=0, no_progress=True, device=device,
                               overrides=(f"data.root_dir={data_root}", *overrides))
    code = train(arguments)
    if code != 0 or not checkpoint.is_dir():
        raise RuntimeError(f"demo training of {config_path} failed (exit code {code}); see {Path(save_dir)}")
    return checkpoint


def ensure_checkpoint(
    checkpoint: PathLike,
    train_demo: bool = False,
    config_path: PathLike | None = None,
    data_root: PathLike | None = None,
    save_dir: PathLike | None = None,
    overrides: Sequence[str] = DEMO_OVERRIDES,
    device: str = "auto",
) -> Path:
    """``checkpoint`` if it is a folder; else the demo model if ``train_demo`` (needs the other paths); else an error.

    Raises:
        FileNotFoundError: with :func:`missing_checkpoint_message` when ``checkpoint`` is missing and not
            ``train_demo``.
        ValueError: when ``train_demo`` is set without ``config_path``, ``data_root`` and ``save_dir``.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return checkpoint
    if not train_demo:
        raise FileNotFoundError(missing_checkpoint_message(checkpoint))
    if config_path is None or data_root is None or save_dir is None:
        raise ValueError("train_demo=True needs config_path, data_root and save_dir for the demo model")
    logger.warning("%s does not exist: training the demo model instead (TRAIN_DEMO_MODEL = True)", checkpoint)
    return train_demo_model(config_path, data_root, save_dir, overrides, device)
