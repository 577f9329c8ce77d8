#!/usr/bin/env python
"""Check that medseg's CUDA path works on this machine: one command, a few minutes, PASS/FAIL/SKIP per section.

    python scripts/check_cuda.py                 # every section (estimated 3-4 minutes on one GPU; not yet measured)
    python scripts/check_cuda.py --keep DIR      # keep the runs, logs and reports in DIR

Sections (CUDA-only ones are SKIP without a GPU; the others then run on the CPU as real checks):

* ``step-fp32`` / ``step-bf16`` / ``step-fp16``: three cooperative iterations with the training loop's generators
  (masking draws on a CPU generator, input noise on the device), memory format and non-finite guard: finite losses,
  every module's parameters moved, and the host synchronisations of the last iteration counted with
  ``torch.cuda.set_sync_debug_mode`` (fp32/bf16: at most 1, the guard's one read; fp16: at most 1 + 5, the
  GradScaler reads each of the five optimisers' overflow flag);
* ``host-reads``: the same iteration on the ``meta`` device, where every host read raises: only the guard's one
  read is made (device-independent; runs everywhere);
* ``cpu-vs-cuda``: one iteration on the CPU and on CUDA from the same weights, batch and noise, TF32 off: losses
  within 1e-4 (relative), gradients within 1e-3 (relative to each tensor's largest), latent masks >= 99 % equal;
* ``predict-folded``: ``predict`` (BatchNorm folded into the convolutions) against the plain eval forward;
* ``train-resume``: ``medseg-train`` (CUDA: fp16 with 2 pinned-memory workers; CPU: fp32, no workers) for 2 epochs,
  ``--resume auto`` to 3, and a 1 + 1 epoch run against the 2-epoch run (CPU: bit-identical; CUDA: the same counters
  and weights within 1e-2 of each tensor's largest, since cuDNN's fastest kernels are not bit-repeatable);
* ``cpu-snapshot-on-cuda``: a snapshot written by a CPU run continues on CUDA with one warning line;
* ``test-gpu-vs-cpu``: ``medseg-test`` on CUDA and on the CPU, per-volume Dice within 0.02;
* ``ddp-nccl``: ``torchrun`` with 2 NCCL processes, with and without ``learning.sync_batchnorm`` (needs 2 GPUs).

Exit code 0 when nothing failed, 1 otherwise. The runs use tiny synthetic volumes (``medseg/phantom/tiny.py``): this checks
that the path works, not how fast it is (``benchmarks/benchmark.py``) or how well it segments.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent

import torch

from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

TRAIN = REPO / "medseg" / "train_adv_supervised_segmentation_triplet.py"
TEST = REPO / "medseg" / "test_ACDC_triplet_segmentation.py"
COOP = REPO / "config" / "ACDC" / "cooperative_training.json"
SNAPSHOT = Path("model") / "last" / "checkpoints" / "FCN_16_standard.pkl"
#: host reads allowed in one iteration: the guard's read, plus (fp16) the GradScaler's read per optimiser
SYNC_BUDGET = {"fp32": 1, "bf16": 1, "fp16": 1 + 5}


class Skip(Exception):
    """The section does not apply on this machine (the message says why)."""


@dataclass
class Outcome:
    name: str
    status: str
    detail: str
    seconds: float


def cuda_available() -> bool:
    return torch.cuda.is_available()


def need_cuda(n: int = 1) -> None:
    if not cuda_available():
        raise Skip("no CUDA device")
    if torch.cuda.device_count() < n:
        raise Skip(f"needs {n} CUDA devices, this machine has {torch.cuda.device_count()}")


# ------------------------------------------------------------------------------------------------ model helpers
def build_model(device: torch.device, precision: str | None = "fp32", seed: int = 0):
    from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
    from medseg.nn.blocks import set_compute_precision

    torch.manual_seed(seed)
    lower_on_cuda = device.type == "cuda" and precision not in (None, "fp32")
    model = AdvancedTripletReconSegmentationModel(network_type="FCN_16_standard", device=device,
                                                  channels_last=True if lower_on_cuda else None)
    if precision is not None:  # None: the networks follow the caller (meta has no autocast)
        set_compute_precision(model.model.values(), precision)
    return model


def batch(size: int, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    labels = torch.randint(0, 4, (n, size, size), generator=g)
    return images, labels


def loop_step(model, images, labels, precision: str, generator, noise_generator, scaler, guard, **kwargs):
    from medseg.training.step import LOSS_KEYS, train_step

    guard.before_step("check_cuda")
    return train_step(model, images, labels, latent_da=True, generator=generator, precision=precision,
                      scaler=scaler, noise_generator=noise_generator,
                      before_update=lambda v: guard.decide(v, LOSS_KEYS[:-1], check_gradients=scaler is None),
                      **kwargs)


def count_syncs(fn: Callable[[], object]) -> int:
    """Host synchronisations made by ``fn()`` (CUDA's sync debug mode reports each one as a warning)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught)


# ------------------------------------------------------------------------------------------------------ sections
def section_step(precision: str, device: torch.device, size: int, n: int) -> str:
    from medseg.nn.precision import configure_tf32, make_grad_scaler, precision_problem
    from medseg.training.guards import NonFiniteGuard

    if precision != "fp32":
        need_cuda()
    problem = precision_problem(precision, device)
    if problem:
        raise Skip(problem)
    configure_tf32(False)
    model = build_model(device, precision)
    scaler = make_grad_scaler(precision, device)
    generator = torch.Generator().manual_seed(0)
    noise = torch.Generator(device=device).manual_seed(1) if device.type == "cuda" else None
    guard = NonFiniteGuard(model.model, "stop")
    images, labels = batch(size, n)
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()  # as the loader delivers them
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in model.model.items()}
    outs = [loop_step(model, images, labels, precision, generator, noise, scaler, guard) for _ in range(2)]
    syncs = None
    if device.type == "cuda":
        syncs = count_syncs(lambda: outs.append(loop_step(model, images, labels, precision, generator, noise,
                                                          scaler, guard)))
    else:
        outs.append(loop_step(model, images, labels, precision, generator, noise, scaler, guard))
    bad = [k for out in outs for k, v in out.losses.items() if not math.isfinite(v)]
    if bad:
        raise AssertionError(f"non-finite losses {sorted(set(bad))}")
    unmoved = [name for name, m in model.model.items()
               if all(torch.equal(a, b.detach()) for a, b in zip(before[name], m.parameters()))]
    if unmoved:
        raise AssertionError(f"parameters of {unmoved} did not change in 3 iterations")
    detail = f"{n}x{size}^2 on {device}, loss/total {outs[-1].losses['loss/total']:.4f}, all 5 modules updated"
    if syncs is not None:
        if syncs > SYNC_BUDGET[precision]:
            raise AssertionError(f"{syncs} host synchronisations in one iteration (at most {SYNC_BUDGET[precision]})")
        detail += f", {syncs} host sync(s) per iteration (budget {SYNC_BUDGET[precision]})"
    return detail


def section_host_reads() -> str:
    """The iteration on ``meta``: any host read other than the guard's one raises there."""
    from medseg.training import guards
    from medseg.training.guards import NonFiniteGuard
    from medseg.training.step import LOSS_KEYS, train_step

    reads: list[int] = []
    original = guards.host_read

    def counted(values: torch.Tensor) -> list[float]:
        reads.append(values.numel())
        return [0.5] * (values.numel() - 2) + [0.0, 0.0]

    guards.host_read = counted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(torch.device("meta"), precision=None)
            guard = NonFiniteGuard(model.model, "stop")
            guard.before_step("meta")
            train_step(model, *batch(32, 2), latent_da=True, generator=torch.Generator().manual_seed(0),
                       before_update=lambda v: guard.decide(v, LOSS_KEYS[:-1]))
    finally:
        guards.host_read = original
    if len(reads) != 1:
        raise AssertionError(f"{len(reads)} guard reads in one iteration, expected 1")
    return "one cooperative iteration on the meta device makes exactly one host read (losses + checks together)"


def section_cpu_vs_cuda(size: int, n: int) -> str:
    from medseg.nn.precision import configure_tf32
    from medseg.training.guards import NonFiniteGuard

    need_cuda()
    configure_tf32(False)
    results = {}
    images, labels = batch(size, n)
    for kind in ("cpu", "cuda"):
        device = torch.device(kind)
        model = build_model(device, "fp32", seed=3)
        masks: list[torch.Tensor] = []
        perturb = model.perturb_latent_code

        def recording(*args, _perturb=perturb, _masks=masks, **kwargs):
            masked, mask = _perturb(*args, **kwargs)
            if mask is not None:
                _masks.append(mask.detach().float().cpu())
            return masked, mask

        model.perturb_latent_code = recording
        grads: list[torch.Tensor] = []
        out = loop_step(model, images, labels, "fp32", torch.Generator().manual_seed(7), None, None,
                        NonFiniteGuard(model.model, "stop"),
                        after_backward=lambda m=model, g=grads: g.extend(p.grad.detach().float().cpu().clone()
                                                                         for p in m.parameters()))
        results[kind] = (out.losses, grads, masks)
    (l_cpu, g_cpu, m_cpu), (l_gpu, g_gpu, m_gpu) = results["cpu"], results["cuda"]
    loss_err = max(abs(l_cpu[k] - l_gpu[k]) / max(abs(l_cpu[k]), 1e-12) for k in l_cpu if l_cpu[k] != 0)
    grad_err = max(float((a - b).abs().max()) / max(float(a.abs().max()), 1e-12) for a, b in zip(g_cpu, g_gpu))
    if len(m_cpu) != len(m_gpu):
        raise AssertionError(f"{len(m_cpu)} masks on the CPU, {len(m_gpu)} on CUDA (different masking methods)")
    agree = min(float(((a < 1) == (b < 1)).float().mean()) for a, b in zip(m_cpu, m_gpu)) if m_cpu else 1.0
    detail = (f"{n}x{size}^2: losses max rel diff {loss_err:.2e}, gradients {grad_err:.2e}, masks "
              f"{100 * agree:.2f} % equal")
    if loss_err > 1e-4 or grad_err > 1e-3 or agree < 0.99:
        raise AssertionError(detail + " (limits 1e-4, 1e-3, 99 %)")
    return detail


def section_predict_folded(device: torch.device, size: int, n: int) -> str:
    from medseg.nn.precision import configure_tf32

    configure_tf32(False)
    model = build_model(device, "fp32", seed=5)
    images, _ = batch(size, n, seed=9)
    # settle the BatchNorm statistics away from their initial values, so the folding has something to fold
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.fast_predict(images.to(device) * 1.7 + 0.1)
    folded = model.predict(images.to(device), n_iter=2).float().cpu()
    model.eval()
    with torch.no_grad():
        _, plain = model.fast_predict(images.to(device))
        plain = model.recon_shape(plain, is_label_map=False).float().cpu()
    err = float((folded - plain).abs().max()) / max(float(plain.abs().max()), 1e-12)
    same = float((folded.argmax(1) == plain.argmax(1)).float().mean())
    detail = f"{n}x{size}^2 on {device}: logits max rel diff {err:.2e}, labels {100 * same:.3f} % equal"
    if err > 1e-4 or same < 0.999:
        raise AssertionError(detail + " (limits 1e-4, 99.9 %)")
    return detail


@dataclass
class Workspace:
    root: Path
    data: Path
    device: torch.device

    def train(self, name: str, *extra: str, device: str | None = None, precision: str | None = None,
              epochs: int = 2, workers: int | None = None) -> subprocess.CompletedProcess:
        device = device or self.device.type
        workers = (2 if device == "cuda" else 0) if workers is None else workers  # CPU: workers only cost time
        precision = precision or ("fp16" if device == "cuda" else "fp32")
        argv = [sys.executable, str(TRAIN), "--json_config_path", str(COOP), "--cval", "0", "--data_setting",
                "one_shot", "--seed", "40", "--save_dir", str(self.root / name), "--n_workers", str(workers),
                "--no_progress", "--device", device, "--precision", precision,
                *tiny_overrides(self.data, epochs), *extra]
        if "--resume" not in extra:  # a fresh run (a kept work folder may hold one of an earlier check)
            argv.append("--overwrite")
        return run(argv, self.root / f"{name}.log")

    def run_dir(self, name: str) -> Path:
        return self.root / name / "train_ACDC_one_shot_n_cls_4" / "ACDC" / "cooperative_training" / "0"


def tiny_overrides(root: Path, epochs: int) -> list[str]:
    pairs = {"data.root_dir": str(root), "data.frame": '"ES"', "data.pad_size": "[48,48,1]",
             "data.crop_size": "[32,32,1]", "learning.batch_size": "4", "learning.n_epochs": str(epochs)}
    return [arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}")]


def run(argv: list[str], log: Path, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        log.write_text(f"$ {' '.join(argv)}\n--- timed out after {timeout} s\n{err.stdout or ''}\n{err.stderr or ''}")
        raise AssertionError(f"no result after {timeout} s (a hung collective?); see {log}") from None
    log.write_text(f"$ {' '.join(argv)}\n--- exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise AssertionError(f"exit {result.returncode} ({log}):\n{tail}")
    return result


def load_snapshot(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def weight_difference(a: dict, b: dict) -> float:
    """Largest difference of a model or optimiser tensor between two snapshots, relative to the tensor's largest."""
    worst = 0.0
    pairs = [(a["model_state"][m][k], b["model_state"][m][k]) for m in a["model_state"] for k in a["model_state"][m]]
    for m, opt in a["optimizer_state"].items():
        for pid, slots in opt["state"].items():
            pairs += [(torch.as_tensor(v), torch.as_tensor(b["optimizer_state"][m]["state"][pid][s]))
                      for s, v in slots.items()]
    for x, y in pairs:
        if x.is_floating_point():
            worst = max(worst, float((x - y).abs().max()) / max(float(x.abs().max()), 1e-12))
        elif not torch.equal(x, y):
            return math.inf
    return worst


def section_train_resume(ws: Workspace) -> str:
    ws.train("two", epochs=2)
    two = load_snapshot(ws.run_dir("two") / SNAPSHOT)
    ws.train("two", "--resume", "auto", epochs=3)
    three = load_snapshot(ws.run_dir("two") / SNAPSHOT)
    if (three["epoch"], three["global_iteration"]) != (3, 3 * two["global_iteration"] // 2):
        raise AssertionError(f"--resume auto to 3 epochs ended at epoch {three['epoch']}, iteration "
                             f"{three['global_iteration']} (2 epochs: {two['global_iteration']} iterations)")
    ws.train("split", epochs=1)
    ws.train("split", "--resume", "auto", epochs=2)
    split = load_snapshot(ws.run_dir("split") / SNAPSHOT)
    counters = ("epoch", "batches_done", "global_iteration")
    if any(split[k] != two[k] for k in counters):
        raise AssertionError(f"1 + 1 epochs: {[split[k] for k in counters]}, 2 epochs: {[two[k] for k in counters]}")
    diff = weight_difference(two, split)
    limit = 0.0 if ws.device.type == "cpu" else 1e-2
    precision = two.get("precision")
    scale = "" if not two.get("scaler_state") else f", loss scale {two['scaler_state']['scale']:g} saved"
    workers = "2 pinned-memory workers" if ws.device.type == "cuda" else "no workers"
    detail = (f"{precision} on {ws.device.type}, {workers}: 2 epochs, resumed to 3; 1 + 1 epochs vs 2 epochs: weights "
              f"and Adam moments max rel diff {diff:.2e} (limit {limit:g}){scale}")
    if diff > limit:
        raise AssertionError(detail)
    return detail


def section_cpu_snapshot_on_cuda(ws: Workspace) -> str:
    need_cuda()
    ws.train("moved", device="cpu", precision="fp32", epochs=1, workers=0)
    result = ws.train("moved", "--resume", "auto", device="cuda", precision="fp32", epochs=2, workers=0)
    lines = [line for line in result.stderr.splitlines() if "re-seeded" in line]
    if len(lines) != 1 or "Traceback" in result.stderr:
        raise AssertionError(f"expected one re-seeding warning, got {len(lines)}")
    snapshot = load_snapshot(ws.run_dir("moved") / SNAPSHOT)
    if snapshot["epoch"] != 2 or snapshot["run"]["device"] != "cuda":
        raise AssertionError(f"snapshot at epoch {snapshot['epoch']} on {snapshot['run']['device']}")
    return "a 1-epoch CPU snapshot continued on CUDA to epoch 2 with one warning: " + lines[0].split(": ", 1)[-1]


def section_test_gpu_vs_cpu(ws: Workspace) -> str:
    import csv

    need_cuda()
    checkpoint = ws.run_dir("two") / "model" / "best" / "checkpoints"
    if not checkpoint.is_dir():
        raise AssertionError(f"{checkpoint} missing (train-resume must run first)")
    dice: dict[str, dict[str, list[float]]] = {}
    for device in ("cuda", "cpu"):
        out = ws.root / f"test_{device}"
        run([sys.executable, str(TEST), "--methods", f"m={checkpoint}", "--data_root", str(ws.data.parent),
             "--datasets", "ACDC", "--crop_size", "96", "--device", device, "--no_progress", "--output_dir", str(out)],
            ws.root / f"test_{device}.log")
        (detailed,) = sorted(out.glob("m/*/ACDC/iter_2_detailed.csv"))
        with open(detailed, newline="") as handle:
            rows = list(csv.DictReader(handle))
        dice[device] = {r["patient_id"]: [float(r[c]) for c in ("LV_Dice", "MYO_Dice", "RV_Dice")] for r in rows}
    if set(dice["cuda"]) != set(dice["cpu"]):
        raise AssertionError("the two runs tested different volumes")
    worst = max((abs(a - b) for pid in dice["cpu"] for a, b in zip(dice["cpu"][pid], dice["cuda"][pid])
                 if not (math.isnan(a) and math.isnan(b))), default=0.0)
    detail = f"{len(dice['cpu'])} volumes: per-volume Dice max |GPU - CPU| {worst:.4f} (limit 0.02)"
    if not worst <= 0.02:
        raise AssertionError(detail)
    return detail


def section_ddp_nccl(ws: Workspace) -> str:
    need_cuda(2)
    for name, extra in (("ddp", []), ("ddp_syncbn", ["--set", "learning.sync_batchnorm=true"])):
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--",
                str(TRAIN), "--json_config_path", str(COOP), "--cval", "0", "--data_setting", "one_shot", "--seed",
                "40", "--save_dir", str(ws.root / name), "--n_workers", "0", "--no_progress", "--device", "cuda",
                "--debug", "--overwrite", *tiny_overrides(ws.data, 2), *extra]
        result = run(argv, ws.root / f"{name}.log", timeout=300)
        snapshot = load_snapshot(ws.run_dir(name) / SNAPSHOT)
        if "2 process(es)" not in result.stderr or snapshot["run"]["world_size"] != 2 or len(snapshot["rng"]) != 2:
            raise AssertionError(f"{name}: the run did not train with 2 processes")
        if extra and "BatchNorm statistics over all 2 processes" not in result.stderr:
            raise AssertionError("learning.sync_batchnorm did not convert the BatchNorm layers")
    return ("2 NCCL processes trained 2 epochs, with and without learning.sync_batchnorm; parameters bit-identical "
            "on both at every epoch end (--debug)")


# -------------------------------------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="check_cuda.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--keep", type=Path, default=None, help="keep runs, logs and reports in this folder (default: a temporary folder, deleted at the end)")
    parser.add_argument("--size", type=int, default=None,
                        help="image size of the step checks (default: 192 on CUDA, the published crop; 32 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch of the step checks (default: 20 on CUDA, "
                        "the published batch; 2 on CPU)")
    parser.add_argument("--sections", nargs="+", default=None, metavar="NAME", help="run only these sections (default: all, in the order of the list above)")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    for flag in ("size", "batch"):
        value = getattr(args, flag)
        if value is not None and (value < 1 or (flag == "size" and value % 16)):
            parser.error(f"--{flag}: expected an integer >= 1{' and a multiple of 16' if flag == 'size' else ''}, "
                         f"got {value}")
    if args.sections:  # before any work
        unknown = sorted(set(args.sections) - set(SECTION_NAMES))
        if unknown:
            parser.error(f"--sections: unknown sections {unknown}; choose from {list(SECTION_NAMES)}")
    return run_cli(parser.prog, lambda: run_checks(args), args.verbose)


SECTION_NAMES = ("step-fp32", "step-bf16", "step-fp16", "host-reads", "cpu-vs-cuda", "predict-folded", "train-resume",
                 "cpu-snapshot-on-cuda", "test-gpu-vs-cpu", "ddp-nccl")


def run_checks(args: argparse.Namespace) -> int:
    """Run the selected sections; returns 1 if one failed, else 0."""
    os.environ.setdefault("OMP_NUM_THREADS", "1" if not cuda_available() else os.environ.get("OMP_NUM_THREADS", "4"))
    device = torch.device("cuda" if cuda_available() else "cpu")
    size = args.size or (192 if device.type == "cuda" else 32)
    n = args.batch or (20 if device.type == "cuda" else 2)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="check_cuda_"))
    root.mkdir(parents=True, exist_ok=True)
    from medseg.phantom.tiny import write_tiny_acdc

    data = root / "data" / "ACDC"
    if not data.is_dir():
        write_tiny_acdc(data)
    ws = Workspace(root, data, device)
    sections: list[tuple[str, Callable[[], str]]] = [
        ("step-fp32", lambda: section_step("fp32", device, size, n)),
        ("step-bf16", lambda: section_step("bf16", device, size, n)),
        ("step-fp16", lambda: section_step("fp16", device, size, n)),
        ("host-reads", section_host_reads),
        ("cpu-vs-cuda", lambda: section_cpu_vs_cuda(min(size, 96), min(n, 4))),
        ("predict-folded", lambda: section_predict_folded(device, size, n)),
        ("train-resume", lambda: section_train_resume(ws)),
        ("cpu-snapshot-on-cuda", lambda: section_cpu_snapshot_on_cuda(ws)),
        ("test-gpu-vs-cpu", lambda: section_test_gpu_vs_cpu(ws)),
        ("ddp-nccl", lambda: section_ddp_nccl(ws)),
    ]
    assert [name for name, _ in sections] == list(SECTION_NAMES)
    if args.sections:
        sections = [(name, fn) for name, fn in sections if name in args.sections]
    name_of_device = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU only"
    print(f"check_cuda: torch {torch.__version__}, {name_of_device}, work folder {root}", flush=True)
    started = time.perf_counter()
    outcomes = []
    for name, fn in sections:
        t0 = time.perf_counter()
        try:
            status, detail = "PASS", fn()
        except Skip as why:
            status, detail = "SKIP", str(why)
        except Exception as err:  # a failed check is reported, and the others still run
            status, detail = "FAIL", f"{type(err).__name__}: {err}"
            if os.environ.get("CHECK_CUDA_TRACEBACK"):
                traceback.print_exc()
        outcomes.append(Outcome(name, status, detail, time.perf_counter() - t0))
        print(f"{status} {name} ({outcomes[-1].seconds:.1f} s): {detail}", flush=True)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("PASS", "FAIL", "SKIP")}
    print(f"check_cuda: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
