"""Training as a function call: what ``medseg-train`` does, for programs that train in their own process.

The robustness experiment and the visualisation's demo model train through :func:`train`; the command line
(:mod:`medseg.cli.train`) parses the same options into the same fields. Both end in
:func:`medseg.training.entry.run_training`, so a run started either way is the same run.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field

from medseg.training.entry import run_training
from medseg.utils.cli import run_cli

#: The name errors are reported under (as the console script's).
TOOL = "medseg-train"


@dataclass(frozen=True)
class TrainArguments:
    """The options of one training, field for field the flags of ``medseg-train`` with their defaults.

    Attributes:
        json_config_path: experiment config (published JSON schema).
        dataset_name: kept for compatibility; the dataset comes from the config.
        cval: cross-validation fold 0-4.
        data_setting: training subjects (``'standard'``, ``'three_shot'``, a count such as ``'10'`` ...).
        resume_pkl_path: run snapshot to continue from.
        resume: ``'auto'``: continue from this run's last snapshot if there is one.
        overwrite: start afresh in a folder that holds an earlier run's results.
        save_dir: root folder of all runs.
        log: write TensorBoard summaries.
        seed: seed of Python, NumPy, torch and data loading (None: a random one, recorded).
        n_workers: DataLoader worker processes.
        no_pin_memory: do not pin DataLoader memory.
        debug: faulthandler, debug logging and error tracebacks.
        device: ``'auto'``, ``'cpu'`` or ``'cuda'``.
        no_progress: no progress bars.
        precision: overrides ``learning.precision`` (None: the config's).
        overrides: ``KEY=VALUE`` config overrides (dotted keys, JSON values).
    """

    json_config_path: str = "./config/ACDC/cooperative_training.json"
    dataset_name: str = "ACDC"
    cval: int = 0
    data_setting: str = "10"
    resume_pkl_path: str | None = None
    resume: str | None = None
    overwrite: bool = False
    save_dir: str = "./saved/"
    log: bool = False
    seed: int | None = None
    n_workers: int = 4
    no_pin_memory: bool = False
    debug: bool = False
    device: str = "auto"
    no_progress: bool = False
    precision: str | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)


def train(arguments: TrainArguments, continue_hint: str | None = None) -> int:
    """Train (or continue) one run in this process, as ``medseg-train`` with these options would.

    Args:
        arguments: the options.
        continue_hint: how an interrupted run continues, for programs that train for their user (default: the
            command's own ``--resume auto``).

    Returns:
        The exit code of the command: 0 when the training finished; a user error, a diverged training or an
        interrupt are reported in one line on stderr and give their exit code (128 + signal number after a signal).
    """
    options = argparse.Namespace(**asdict(arguments))
    options.overrides = list(arguments.overrides)
    if arguments.precision is not None:
        options.overrides.append(f"learning.precision={arguments.precision}")
    return run_cli(TOOL, lambda: run_training(options, continue_hint), arguments.debug, "--debug")
