"""Unit tests of the run-snapshot machinery and the small training helpers (no training)."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medseg.config import ExperimentConfig, from_dict
from medseg.training import checkpoint as ckpt
from medseg.training.builders import ResumableSampler, assemble_batch, train_loader_batch_size
from medseg.training.distributed import DistContext
from medseg.training.run_files import MetricsLog, build_run_paths
from medseg.training.signals import StopRequest


def draw(gen: torch.Generator) -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen))


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(2)
    np.random.randn()  # leaves a cached Gaussian in NumPy's legacy state
    state = ckpt.capture_rng_state({"step": gen})
    expected = draw(gen)
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    draw(gen)
    ckpt.restore_rng_state(loaded, {"step": gen})
    assert draw(gen) == expected


def _snapshot(tmp_path: Path, config=None) -> Path:
    config = config or from_dict({})
    module = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = ckpt.TrainState(epoch=3, batches_done=1, global_iteration=10, best_score=0.5, epoch_sums={"a": 1.0},
                            seed=40, data_seed=40)
    return ckpt.save_snapshot(tmp_path / "s.pkl", network_type="FCN_16_standard", modules={"m": module},
                              optimizers={"m": optimizer}, state=state, config=config,
                              run_info={"data_setting": "10", "cval": 0}, rng_states=[ckpt.capture_rng_state()])


def test_snapshot_restores_modules_optimisers_and_counters(tmp_path: Path) -> None:
    path = _snapshot(tmp_path)
    snapshot = ckpt.load_snapshot(path)
    module = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(module.parameters())
    state = ckpt.restore_training_state(snapshot, {"m": module}, {"m": optimizer}, path)
    assert (state.epoch, state.batches_done, state.global_iteration, state.best_score) == (3, 1, 10, 0.5)
    assert state.epoch_sums == {"a": 1.0} and state.data_seed == 40
    assert torch.equal(module.weight, snapshot["model_state"]["m"]["weight"])
    assert optimizer.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ValueError, match="module names"):
        ckpt.restore_training_state(snapshot, {"other": module}, {"m": optimizer}, path)
    with pytest.raises(ValueError, match="'m' does not load"):
        ckpt.restore_training_state(snapshot, {"m": nn.Linear(3, 2)}, {"m": optimizer}, path)


def test_compatibility_allows_budget_changes_and_names_differences(tmp_path: Path) -> None:
    path = _snapshot(tmp_path)
    snapshot = ckpt.load_snapshot(path)
    run = {"data_setting": "10", "cval": 0}
    budget = from_dict({"learning": {"n_epochs": 5, "max_iteration": 9}, "data": {"root_dir": "elsewhere"}})
    ckpt.check_compatible(snapshot, budget, run, path)
    with pytest.raises(ValueError, match=r"learning.lr: snapshot 0.0001 vs now 0.01"):
        ckpt.check_compatible(snapshot, from_dict({"learning": {"lr": 0.01}}), run, path)
    with pytest.raises(ValueError, match="cval: snapshot 0 vs now 1"):
        ckpt.check_compatible(snapshot, from_dict({}), {"data_setting": "10", "cval": 1}, path)
    with pytest.raises(ValueError, match="FCN_16_standard_share_code"):
        ckpt.check_compatible(snapshot, from_dict({"segmentation_model": {"network_type": "FCN_16_standard_share_code"}}),
                              run, path)


def test_load_snapshot_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        ckpt.load_snapshot(tmp_path / "absent.pkl")
    (tmp_path / "junk.pkl").write_text("junk")
    with pytest.raises(ValueError, match="junk.pkl"):
        ckpt.load_snapshot(tmp_path / "junk.pkl")
    torch.save({"epoch": 1}, tmp_path / "partial.pkl")
    with pytest.raises(ValueError, match="partial.pkl lacks"):
        ckpt.load_snapshot(tmp_path / "partial.pkl")


def test_first_signal_requests_a_stop_instead_of_raising() -> None:
    # whatever handlers this process started with (a background `nohup ... &` run starts with SIGINT ignored) are
    # put back afterwards; inside, both usual starting points are tried and must be restored by StopRequest
    found = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for previous in (signal.default_int_handler, signal.SIG_IGN):
            signal.signal(signal.SIGINT, previous)
            with StopRequest() as stop:
                assert signal.getsignal(signal.SIGINT) is not previous
                os.kill(os.getpid(), signal.SIGINT)
                assert stop.requested and stop.signum == signal.SIGINT
            assert signal.getsignal(signal.SIGINT) is previous
            assert signal.getsignal(signal.SIGTERM) is found[signal.SIGTERM]
    finally:
        for signum, handler in found.items():
            signal.signal(signum, handler)


@pytest.mark.skipif(not all(hasattr(signal, n) for n in ("SIGCHLD", "pthread_sigmask", "pthread_kill")),
                    reason="POSIX signals")
def test_sigterm_arriving_with_a_worker_exit_raises_nothing(monkeypatch) -> None:
    """A SIGTERM to the process group ends the DataLoader workers too, so SIGTERM and SIGCHLD can be pending together.
    The interpreter runs the handlers in signal order, ours (SIGTERM) first; the SIGCHLD handler it finds next must
    still be a Python function, else it raises "Signal 17 ignored due to race condition" wherever the loop is
    (seen inside a checkpoint write)."""
    unraisable = []  # where the interpreter cannot raise it (here: inside pthread_sigmask) it reports it here
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    children = []
    torch_like = lambda signum, frame: children.append(signum)  # noqa: E731 (a handler like torch's)
    both = {signal.SIGTERM, signal.SIGCHLD}
    # blocked before torch_like is installed: a real child of this process (a worker of an earlier test) ending now
    # waits as pending too and merges with the SIGCHLD sent below, instead of reaching torch_like early
    signal.pthread_sigmask(signal.SIG_BLOCK, both)
    previous_child = signal.signal(signal.SIGCHLD, torch_like)
    try:
        with StopRequest() as stop:
            # sent to this thread, which blocks both: a signal sent to the process could be taken by another thread
            # that does not block it (torch's, an earlier test's) and reach torch_like before SIGTERM is even sent
            signal.pthread_kill(threading.get_ident(), signal.SIGCHLD)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both trip at once; handlers run on the next check
            assert stop.requested and stop.signum == signal.SIGTERM
            assert children == []  # torch's handler was set aside until the stop is done
            assert [u.exc_value for u in unraisable] == []
        # after a stop the no-op stays: the ended workers' SIGCHLDs must not reach torch's handler during teardown
        assert signal.getsignal(signal.SIGCHLD) not in (torch_like, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, torch_like)
        with StopRequest():  # no stop requested: SIGCHLD is left alone
            assert signal.getsignal(signal.SIGCHLD) is torch_like
        assert signal.getsignal(signal.SIGCHLD) is torch_like
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
        signal.signal(signal.SIGCHLD, previous_child)


def test_sampler_skips_the_trained_part_of_an_epoch() -> None:
    sampler = ResumableSampler(list(range(10)), num_replicas=1, rank=0, seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    sampler.set_epoch(3)
    assert sorted(sampler) == list(range(10)) and list(sampler) != full


def test_keep_orig_batch_doubling() -> None:
    config = from_dict({"learning": {"batch_size": 20}})
    assert train_loader_batch_size(config) == 10
    assert train_loader_batch_size(from_dict({"learning": {"batch_size": 1}})) == 1
    assert train_loader_batch_size(from_dict({"data": {"keep_orig_image_label_pair_for_training": False}})) == 20
    batch = {"image": torch.zeros(2, 1, 4, 4), "label": torch.zeros(2, 4, 4, dtype=torch.long),
             "origin_image": torch.ones(2, 1, 4, 4), "origin_label": torch.ones(2, 4, 4, dtype=torch.long)}
    images, labels = assemble_batch(batch, True, torch.device("cpu"))
    assert images.shape == (4, 1, 4, 4) and labels.shape == (4, 4, 4)
    assert images[:2].sum() == 0 and images[2:].min() == 1  # augmented first, originals second


def test_run_layout_and_metrics_resume(tmp_path: Path) -> None:
    paths = build_run_paths(tmp_path, "ACDC", "10", 4, "ACDC/cooperative_training", 0)
    assert paths.log_dir == tmp_path / "train_ACDC_10_n_cls_4" / "ACDC" / "cooperative_training" / "0" / "log"
    assert paths.model_dir.parent == paths.log_dir.parent
    log = MetricsLog(paths.metrics_csv)
    for epoch in range(3):
        log.append({"epoch": epoch, "iou/val_iou": 0.1 * epoch})
    resumed = MetricsLog(paths.metrics_csv, start_epoch=2)
    assert [row["epoch"] for row in resumed.rows] == ["0", "1"]


def test_single_process_collectives_are_no_ops() -> None:
    ctx = DistContext()
    assert not ctx.enabled and ctx.is_main and ctx.any(True) and not ctx.any(False)
    assert ctx.sum_dict({"a": 1.0}) == {"a": 1.0} and ctx.gather_objects(3) == [3] and ctx.broadcast_object(4) == 4


# ------------------------------------------------------------------------------ reliability
def test_snapshot_with_a_malformed_rng_state_is_a_clear_error(tmp_path: Path) -> None:
    path = _snapshot(tmp_path)
    snapshot = torch.load(path, weights_only=True)
    del snapshot["rng"][0]["python"]  # used to surface as KeyError: 'python' when resuming
    torch.save(snapshot, tmp_path / "no_python.pkl")
    with pytest.raises(ValueError, match=r"no_python.pkl: RNG state of process 0 is incomplete .*'python'"):
        ckpt.load_snapshot(tmp_path / "no_python.pkl")
    snapshot["epoch"] = "three"
    torch.save(snapshot, tmp_path / "bad_epoch.pkl")
    with pytest.raises(ValueError, match="bad_epoch.pkl: 'epoch' must be an int >= 0, got 'three'"):
        ckpt.load_snapshot(tmp_path / "bad_epoch.pkl")


def test_snapshot_with_flipped_bytes_or_code_is_refused(tmp_path: Path) -> None:
    from corrupt_files import flip_bytes

    path = flip_bytes(_snapshot(tmp_path), n=256, at=0.6)
    with pytest.raises(ValueError, match=r"resume snapshot .*s.pkl: expected an intact torch checkpoint"):
        ckpt.load_snapshot(path)

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"network_type": "x", "epoch": 0, "model_state": {}, "optimizer_state": {}, "x": Payload()},
               tmp_path / "evil.pkl")
    with pytest.raises(ValueError) as info:
        ckpt.load_snapshot(tmp_path / "evil.pkl")
    assert "refused for safety" in str(info.value) and "weights_only=False" not in str(info.value)


def test_non_finite_snapshot_is_never_written(tmp_path: Path) -> None:
    module = nn.Linear(2, 2)
    with torch.no_grad():
        module.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"refusing to write snapshot .*nan.pkl \[m\]: expected finite weights"):
        ckpt.save_snapshot(tmp_path / "nan.pkl", network_type="FCN_16_standard", modules={"m": module},
                           optimizers={"m": torch.optim.Adam(module.parameters())}, state=ckpt.TrainState(),
                           config=from_dict({}), run_info={}, rng_states=[])
    assert not (tmp_path / "nan.pkl").exists()


@pytest.mark.parametrize(("setting", "dataset"), [("/".join(["..", "..", "..", "escape"]), "ACDC"),
                                                 ("10", "/".join(["ACDC", "..", "..", "x"]))])
def test_run_folder_cannot_escape_save_dir(tmp_path: Path, setting: str, dataset: str) -> None:
    with pytest.raises(ValueError, match="expected a single file or folder name"):
        build_run_paths(tmp_path, dataset, setting, 4, "ACDC/cooperative_training", 0)


def test_snapshot_best_dir() -> None:
    run_model = Path("saved/train_ACDC_10_n_cls_4/ACDC/cooperative_training/0/model")
    assert ckpt.snapshot_best_dir(ckpt.snapshot_path(run_model, "FCN_16_standard")) == run_model / "best" / "checkpoints"
    assert ckpt.snapshot_best_dir("x.pkl") is None and ckpt.snapshot_best_dir("/tmp/a/b/x.pkl") is None


@pytest.mark.parametrize(("counters", "accepted"), [
    ({"epoch": 3, "batches_done": 0, "global_iteration": 3}, True),
    ({"epoch": 3, "batches_done": 2, "global_iteration": 5}, True),
    ({"epoch": 10**6, "batches_done": 0, "global_iteration": 2}, False),
    ({"epoch": 2, "batches_done": 1, "global_iteration": 2}, False),
    ({"epoch": True, "batches_done": 0, "global_iteration": 2}, False),
])
def test_snapshot_counters_must_be_plausible(tmp_path: Path, counters: dict, accepted: bool) -> None:
    module = torch.nn.Linear(2, 2)
    path = ckpt.save_snapshot(tmp_path / "s.pkl", network_type="FCN_16_standard", modules={"m": module},
                              optimizers={"m": torch.optim.Adam(module.parameters())},
                              state=ckpt.TrainState(**counters), config=ExperimentConfig(), run_info={},
                              rng_states=[ckpt.capture_rng_state()])
    if accepted:
        assert ckpt.load_snapshot(path)["epoch"] == counters["epoch"]
    else:
        with pytest.raises(ValueError, match=r"s\.pkl: 'epoch'"):
            ckpt.load_snapshot(path)
