"""Former home of the run snapshot, kept so that existing imports work: everything here is
:mod:`medseg.training.snapshot`."""

from medseg.training.snapshot import (  # noqa: F401 (re-exported)
    NUMPY_RNG_KEYS,
    RESUMABLE_KEYS,
    RESUMABLE_RUN_KEYS,
    RNG_KEYS,
    SCHEDULE_KEYS,
    SNAPSHOT_FOLDER,
    SNAPSHOT_FORMAT,
    TrainState,
    capture_rng_state,
    check_compatible,
    config_fingerprint,
    generators_fit,
    load_snapshot,
    restore_rng_state,
    restore_scaler,
    restore_training_state,
    save_snapshot,
    snapshot_best_dir,
    snapshot_path,
)
