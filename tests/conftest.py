import os

import pytest
import torch

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel as Model


def pytest_configure(config):
    """The whole suite runs single-threaded, subprocesses included.

    Every test uses tiny tensors, which gain nothing from intra-op threads; on a busy machine OpenMP spin-waiting makes
    them many times slower (a 3-epoch tiny training run: 3 s of CPU with one thread, 44 s with two on a loaded 2-core
    machine). Numerical results do not depend on it: every comparison is either exact between two runs in the same
    setting or bounded by ``tests/numerics.py``.
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not item.keywords: it holds the folder names too
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_logging_handlers():
    """Entry points called in-process add log handlers on the stream of that moment (a test's captured stderr);
    restore the root and medseg handlers after each test so that a later test never logs into a closed stream."""
    import logging

    loggers = [logging.getLogger(), logging.getLogger("medseg")]
    saved = [(lg, list(lg.handlers), lg.level) for lg in loggers]
    yield
    for lg, handlers, level in saved:
        for handler in lg.handlers:
            if handler not in handlers:
                lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.fixture
def make_model():
    """Factory of CPU models with a fixed initialisation seed."""

    def factory(network_type: str = "FCN_16_standard", seed: int = 0, **kwargs) -> Model:
        torch.manual_seed(seed)
        kwargs.setdefault("device", "cpu")
        return Model(network_type=network_type, use_gpu=False, **kwargs)

    return factory


@pytest.fixture
def batch():
    """A fixed (2, 1, 32, 32) image batch with (2, 32, 32) labels in 0..3."""
    g = torch.Generator().manual_seed(123)
    images = torch.rand(2, 1, 32, 32, generator=g)
    labels = torch.randint(0, 4, (2, 32, 32), generator=g)
    return images, labels


@pytest.fixture
def single_thread():
    """One intra-op thread for this test, whatever an earlier test set (the suite default, see ``pytest_configure``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
