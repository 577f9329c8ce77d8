"""The CUDA path, checked on the CPU with stand-ins: the ``meta`` device for "not the CPU", fake CUDA RNG functions,
two gloo processes for the multi-GPU collectives, a forged CUDA snapshot for a change of device on resume.

``scripts/check_cuda.py`` runs the same paths on a real GPU.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from training_helpers import REPO_ROOT, cli_args, run_dir, tiny_acdc, train_single_threaded  # noqa: F401

from medseg.config import ExperimentConfig, from_dict
from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.training import checkpoint as ckpt
from medseg.training import distributed as distributed
from medseg.training import guards
from medseg.training.distributed import DistContext
from medseg.training.guards import NonFiniteGuard, TrainingDiverged
from medseg.training.loop import resumed_epoch_sums
from medseg.training.step import LOSS_KEYS, train_step
from medseg.utils import memory
from medseg.nn.precision import check_precision, configure_tf32

COOP = str(REPO_ROOT / "config" / "ACDC" / "cooperative_training.json")
SNAPSHOT = Path("model") / "last" / "checkpoints" / "FCN_16_standard.pkl"


def _trained_snapshot(tmp_path: Path, scaler: torch.amp.GradScaler | None = None) -> Path:
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.rand(2, 1, 5, 5)).sum().backward()
    optimizer.step()
    gen = torch.Generator().manual_seed(1)
    return ckpt.save_snapshot(tmp_path / "s.pkl", network_type="FCN_16_standard", modules={"m": module},
                              optimizers={"m": optimizer}, state=ckpt.TrainState(epoch=1, global_iteration=1),
                              config=ExperimentConfig(), run_info={"device": "cpu"},
                              rng_states=[ckpt.capture_rng_state({"step": gen})], scaler=scaler, precision="fp32")


def _tensors(node):
    if isinstance(node, torch.Tensor):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _tensors(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _tensors(value)


# ------------------------------------------------------------------------------------------ B1, B4: CPU loading
def test_snapshot_is_read_to_the_cpu_whatever_device_the_run_uses(tmp_path: Path) -> None:
    path = _trained_snapshot(tmp_path)
    snapshot = ckpt.load_snapshot(path, torch.device("meta"))  # the run's device: not where the file goes
    assert {t.device.type for t in _tensors(snapshot)} == {"cpu"}
    gen = torch.Generator()
    ckpt.restore_rng_state(snapshot["rng"][0], {"step": gen})  # RNG states need CPU tensors (NumPy keys too)
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(1).get_state())


def test_resume_moves_weights_and_moments_to_the_device_and_keeps_adams_step_on_the_cpu(tmp_path: Path) -> None:
    path = _trained_snapshot(tmp_path)
    snapshot = ckpt.load_snapshot(path, "meta")
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).to("meta")
    optimizer = torch.optim.Adam(module.parameters())
    ckpt.restore_training_state(snapshot, {"m": module}, {"m": optimizer}, path)
    states = list(optimizer.state.values())
    assert states and all(s["exp_avg"].device.type == "meta" for s in states)
    assert all(s["step"].device.type == "cpu" for s in states)  # else: two host reads per parameter and step


def test_published_snapshot_api_loads_to_the_cpu_too(tmp_path: Path) -> None:
    module = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    published = tmp_path / "published.pkl"  # what the published save_snapshots wrote: the four keys only
    torch.save({"network_type": "FCN_16_standard", "epoch": 3, "model_state": {"m": module.state_dict()},
                "optimizer_state": {"m": optimizer.state_dict()}}, published)
    api = ckpt.save_snapshot(tmp_path / "p.pkl", network_type="FCN_16_standard", modules={"m": module},
                             optimizers={"m": optimizer}, state=3)  # medseg's save_snapshots: the epoch only
    for path in (published, api):
        target = nn.Linear(2, 2).to("meta")
        target_opt = torch.optim.Adam(target.parameters())
        state = ckpt.restore_training_state(ckpt.load_snapshot(path, torch.device("meta")), {"m": target},
                                            {"m": target_opt}, path)
        assert (state.epoch, state.batches_done, state.global_iteration) == (3, 0, 0)
        assert all(s["step"].device.type == "cpu" for s in target_opt.state.values())


# ------------------------------------------------------------------------------------ B2: generators of a device
def test_a_generator_state_of_another_size_is_reported_not_raised(tmp_path: Path) -> None:
    state = ckpt.capture_rng_state({"step": torch.Generator()})
    state["generators"]["step"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
    state["generator_devices"]["step"] = "cuda"
    gen = torch.Generator().manual_seed(5)
    before = gen.get_state()
    assert ckpt.generators_fit(state, {"step": gen}) == ["step"]
    ckpt.restore_rng_state(state, {"step": gen})  # published: "RNG state is wrong size"
    assert torch.equal(gen.get_state(), before)  # left for the caller to re-seed


def test_snapshot_records_the_generator_devices_and_the_precision(tmp_path: Path) -> None:
    snapshot = ckpt.load_snapshot(_trained_snapshot(tmp_path))
    assert snapshot["rng"][0]["generator_devices"] == {"step": "cpu"}
    assert snapshot["precision"] == "fp32" and snapshot["run"]["device"] == "cpu"


@pytest.mark.slow
def test_a_cuda_snapshot_continues_on_the_cpu_with_one_warning(tiny_acdc: Path, tmp_path: Path,
                                                               caplog) -> None:
    save_dir = tmp_path / "saved"
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default: training must turn it off
    assert train_single_threaded(cli_args(COOP, tiny_acdc, save_dir, "--device", "cpu", epochs=1)) == 0
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    path = run_dir(save_dir) / SNAPSHOT
    snapshot = torch.load(path, weights_only=True)
    # what a GPU run writes: device "cuda", a 16-byte CUDA step generator, the GPU's RNG state
    snapshot["run"]["device"] = "cuda"
    rng = snapshot["rng"][0]
    rng["generators"]["step"] = torch.zeros(16, dtype=torch.uint8)
    rng["generators"]["noise"] = torch.zeros(16, dtype=torch.uint8)
    rng["generator_devices"].update(step="cuda", noise="cuda")
    rng["cuda"], rng["cuda_device"] = [torch.zeros(16, dtype=torch.uint8)], 0
    torch.save(snapshot, path)
    caplog.set_level(logging.WARNING)
    # --device cpu whatever MEDSEG_TEST_DEVICE says: this is the CPU continuation of a GPU run
    assert train_single_threaded(cli_args(COOP, tiny_acdc, save_dir, "--resume", "auto", "--device", "cpu",
                                          epochs=2)) == 0
    moved = [r.getMessage() for r in caplog.records if "re-seeded" in r.getMessage()]
    assert len(moved) == 1 and "written on cuda, this run trains on cpu" in moved[0]
    resumed = torch.load(path, weights_only=True)
    assert resumed["epoch"] == 2 and resumed["run"]["device"] == "cpu"
    assert resumed["rng"][0]["generator_devices"]["step"] == "cpu"


# -------------------------------------------------------------------------------------------- B3: GradScaler
def test_grad_scaler_state_is_saved_and_restored(tmp_path: Path) -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.load_state_dict({**scaler.state_dict(), "scale": 512.0, "_growth_tracker": 7})
    snapshot = ckpt.load_snapshot(_trained_snapshot(tmp_path, scaler=scaler))
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert ckpt.restore_scaler(snapshot, fresh, tmp_path / "s.pkl")
    assert fresh.get_scale() == 512.0 and fresh.state_dict()["_growth_tracker"] == 7
    assert not ckpt.restore_scaler(snapshot, None, tmp_path / "s.pkl")  # an fp32 continuation ignores it


# ------------------------------------------------------------- B5, B13: two gloo processes (one sees a NaN loss)
def _two_rank_worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    context = DistContext(rank=rank, world_size=2)
    out: dict[str, object] = {}
    torch.manual_seed(0)
    modules = {"net": nn.Linear(2, 2)}
    losses = torch.tensor([0.5, float("nan") if rank == 1 else 0.25])
    for policy in ("stop", "skip"):
        guard = NonFiniteGuard(modules, policy, reduce=context.all_reduce_max_)
        guard.before_step("epoch 0, batch 3, iteration 3")
        modules["net"](torch.ones(1, 2)).sum().backward()
        try:
            _, step = guard.decide(losses, ("a", "b"))
            out[policy] = f"step={step} skipped={guard.skipped}"
        except TrainingDiverged as err:
            out[policy] = f"diverged: {err}"
    # a mid-epoch snapshot sums the running epoch sums of both processes; after resume they count once
    local = {"loss/total": float(rank + 1)}
    saved = context.sum_dict(local)
    resumed = resumed_epoch_sums(saved, context.is_main)  # what _Run.resume keeps on this rank
    out["saved"], out["resumed_total"] = saved, context.sum_dict(resumed)
    torch.save(out, f"{results}.{rank}")
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_a_nan_on_one_rank_is_decided_by_all_ranks_together(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    out = [torch.load(f"{tmp_path / 'out'}.{rank}", weights_only=True) for rank in (0, 1)]
    # stop: both raise before the step (rank 0 saw nothing itself; the published code left it waiting)
    assert "a non-finite loss in another process" in out[0]["stop"] and out[0]["stop"].startswith("diverged")
    assert "non-finite losses b" in out[1]["stop"] and out[1]["stop"].startswith("diverged")
    # skip: both skip, so both count one skipped step and keep loss dicts of the same keys
    assert out[0]["skip"] == out[1]["skip"] == "step=False skipped=True"
    assert out[0]["saved"] == {"loss/total": 3.0}
    assert out[0]["resumed_total"] == out[1]["resumed_total"] == {"loss/total": 3.0}  # not 6.0


# ----------------------------------------------------------------------------- B6: one host read per iteration
def test_a_cooperative_step_reads_the_device_once(monkeypatch) -> None:
    """On ``meta`` every host read (``.item()``, ``bool()``, ``.tolist()``) raises; the guard's one read is
    counted instead. So the whole iteration (noise, masking draws, five Adam steps) reads nothing else."""
    reads = []

    def fake_read(values: torch.Tensor) -> list[float]:
        reads.append(values.numel())
        return [0.5] * (values.numel() - 2) + [0.0, 0.0]  # finite losses, no non-finite flag

    monkeypatch.setattr(guards, "host_read", fake_read)
    warnings.filterwarnings("ignore", message=".*meta")
    torch.manual_seed(0)
    model = AdvancedTripletReconSegmentationModel(network_type="FCN_16_standard", device="meta")
    guard = NonFiniteGuard(model.model, "stop")
    guard.before_step("meta")
    images, labels = torch.rand(2, 1, 32, 32), torch.randint(0, 4, (2, 32, 32))
    out = train_step(model, images, labels, latent_da=True, generator=torch.Generator().manual_seed(0),
                     before_update=lambda losses: guard.decide(losses, LOSS_KEYS[:-1]))
    assert reads == [len(LOSS_KEYS) - 1 + 2]  # the 9 losses + the loss flag + the gradient flag, once
    assert out.losses["loss/total"] == 1.0


# ------------------------------------------------------------------------------------------------ B7: TF32
def test_tf32_is_off_unless_asked_for_and_a_cuda_setting() -> None:
    configure_tf32(True)
    configure_tf32(False)
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    with pytest.raises(ValueError, match="learning.precision.*'tf32' cannot run on cpu: tf32 is a setting of CUDA"):
        check_precision("tf32", torch.device("cpu"), key="config key 'learning.precision'")
    assert from_dict({"learning": {"precision": "tf32"}}).learning.precision == "tf32"


# --------------------------------------------------------------------------------- B9: backward outside autocast
def test_backward_runs_outside_the_autocast_region(make_model, batch) -> None:
    model = make_model(seed=1)
    seen = []
    for p in model.parameters():
        p.register_hook(lambda g: seen.append(torch.is_autocast_enabled("cpu")) or g)
    train_step(model, *batch, latent_da=False, precision="bf16", generator=torch.Generator().manual_seed(0))
    assert seen and not any(seen)


# ------------------------------------------------------------------------------------ B10: allocator tuning
def test_allocator_tuning_only_in_cpu_processes(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(memory, "_libc_mallopt", lambda: (lambda param, value: calls.append(param) or 1))
    assert memory.tune_allocator(torch.device("cuda", 0)) is False and calls == []
    assert memory.tune_allocator("meta") is False and calls == []
    assert memory.tune_allocator(torch.device("cpu")) is True and memory.M_MMAP_MAX in calls


# ----------------------------------------------------------------------------- B11: each rank's own GPU RNG
class _FakeCudaRng:
    def __init__(self, n_devices: int) -> None:
        self.n, self.restored = n_devices, []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.n)
        monkeypatch.setattr(torch.cuda, "get_rng_state",
                            lambda device="cuda": torch.full((16,), torch.device(device).index or 0, dtype=torch.uint8))
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state was read"))
        monkeypatch.setattr(torch.cuda, "set_rng_state",
                            lambda state, device="cuda": self.restored.append((int(state[0]), str(device))))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("every GPU was set"))


def test_each_rank_saves_and_restores_only_its_own_gpu_rng(monkeypatch) -> None:
    fake = _FakeCudaRng(n_devices=4)
    fake.install(monkeypatch)
    state = ckpt.capture_rng_state({}, cuda_device=torch.device("cuda", 3))
    assert len(state["cuda"]) == 1 and int(state["cuda"][0][0]) == 3 and state["cuda_device"] == 3
    fake.n = 1  # resumed where only one GPU is visible: the state goes to this rank's device
    ckpt.restore_rng_state(state, {}, cuda_device=torch.device("cuda", 0))
    assert fake.restored == [(3, "cuda:0")]
    old = {**state, "cuda": [torch.full((16,), i, dtype=torch.uint8) for i in range(2)]}
    del old["cuda_device"]  # earlier snapshots: every visible GPU; only this rank's own is taken
    fake.restored.clear()
    ckpt.restore_rng_state(old, {}, cuda_device=torch.device("cuda", 1))
    ckpt.restore_rng_state(old, {}, cuda_device=torch.device("cuda", 5))  # not there: no IndexError
    assert fake.restored == [(1, "cuda:1")]
    assert ckpt.capture_rng_state({})["cuda"] == []  # a CPU run saves none


# ---------------------------------------------------------------------- B12: SyncBatchNorm, one GPU per process
def test_more_processes_than_gpus_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("reached set_device"))
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=r"--nproc_per_node 2 is more than the 1 visible CUDA device"):
        distributed.init_distributed("cuda")


def test_sync_batchnorm_converts_every_batchnorm_of_a_multi_gpu_run(make_model) -> None:
    model = make_model()
    params = [id(p) for p in model.parameters()]
    assert not distributed.convert_sync_batchnorm(model, True, DistContext())  # one CPU process: nothing
    assert not distributed.convert_sync_batchnorm(model, False, DistContext(world_size=2, device=torch.device("cuda")))
    assert distributed.convert_sync_batchnorm(model, True, DistContext(world_size=2, device=torch.device("cuda")))
    norms = [m for net in model.model.values() for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is nn.SyncBatchNorm for m in norms)
    assert [id(p) for p in model.parameters()] == params  # the optimisers keep their parameters
    assert from_dict({"learning": {"sync_batchnorm": True}}).learning.sync_batchnorm is True
    model.eval()  # eval-mode SyncBatchNorm is BatchNorm: predict (folded) works on the CPU
    assert model.predict(torch.rand(1, 1, 32, 32), n_iter=2).shape == (1, 4, 32, 32)


def test_test_helpers_take_the_device_from_the_environment() -> None:
    argv = cli_args(COOP, Path("data"), Path("saved"))
    assert argv[argv.index("--device") + 1] == os.environ.get("MEDSEG_TEST_DEVICE", "cpu")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
