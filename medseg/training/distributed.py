"""Multi-process data-parallel training (``torchrun``), CPU (gloo) or CUDA (NCCL).

Each process holds a full model replica and trains on its own share of the training slices
(:class:`torch.utils.data.DistributedSampler`). After the single ``backward`` of an iteration the gradients of all
five modules are averaged across processes (:meth:`DistContext.allreduce_gradients`, passed to ``train_step`` as
``after_backward``); this is the arithmetic that :class:`torch.nn.parallel.DistributedDataParallel` performs. DDP's
wrapper itself is not used because one iteration calls the same modules several times, with frozen-parameter
phases and ``autograd.grad`` probes (hard example generation), which its reducer does not support
(every parameter must be marked ready exactly once per backward). Initial weights are broadcast from rank 0, and
BatchNorm running statistics are averaged before rank 0 validates or saves. Validation and every file write happen
on rank 0 only.

BatchNorm: by default each process normalises with the statistics of its own slices (as DDP does). With few slices
per GPU (e.g. 2-3 of a batch of 20 over 8 GPUs) those statistics are noise; ``learning.sync_batchnorm: true`` then
replaces every BatchNorm layer by :class:`torch.nn.SyncBatchNorm`, which normalises with the statistics of the
whole batch (one all-reduce per BatchNorm layer and forward pass). PyTorch implements it on GPUs only: on the CPU,
and in a single process, the option changes nothing (a note is logged). Because every training forward pass is then a
collective, all ranks must run the same passes: the loop shares the masking draws between the ranks (see
``medseg.training.loop``).

Each process uses one GPU (``LOCAL_RANK``); ``--nproc_per_node`` above the number of visible GPUs is refused
(two processes on one GPU would share it and NCCL refuses it).

Multi-node: start ``torchrun --nnodes=N --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT
--nproc_per_node=K medseg/train_adv_supervised_segmentation_triplet.py ...`` on every node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medseg.utils.device import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Rank information; ``world_size == 1`` means a plain single-process run (all collectives are no-ops)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True in a multi-process run."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that validates and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for all processes."""
        if self.enabled:
            dist.barrier()

    def broadcast_modules(self, modules: Iterable[nn.Module]) -> None:
        """Copy parameters and buffers of rank 0 to every rank (identical initial weights)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for module in modules:
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)

    def allreduce_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Average ``.grad`` over ranks (one flat all-reduce per dtype). Missing gradients count as zero."""
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)  # type: ignore[union-attr]
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset: offset + g.numel()].view_as(g))
                offset += g.numel()

    def average_buffers(self, modules: Iterable[nn.Module]) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over ranks, on every rank."""
        if not self.enabled:
            return
        with torch.no_grad():
            for module in modules:
                for buf in module.buffers():
                    if buf.is_floating_point():
                        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                        buf /= self.world_size

    def check_in_sync(self, modules: Iterable[nn.Module]) -> None:
        """Verify that parameters are bit-identical on every rank (a debugging aid; costs one broadcast).

        Raises:
            RuntimeError: naming the rank whose parameters differ from rank 0.
        """
        if not self.enabled:
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for m in modules for p in m.parameters()])
            reference = flat.clone()
            dist.broadcast(reference, src=0)
            diff = torch.tensor([float((flat - reference).abs().max())], device=self.device)
            dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        if diff.item() != 0.0:
            raise RuntimeError(f"rank {self.rank}: parameters differ between processes (max |diff| {diff.item():.3g})")
        logger.debug("parameters identical on all %d processes", self.world_size)

    def all_reduce_max_(self, tensor: torch.Tensor) -> None:
        """In place: the element-wise maximum of ``tensor`` over the ranks (no host read; NCCL runs it on the GPU)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)

    def any(self, flag: bool) -> bool:
        """True if ``flag`` is true on any rank (used to stop all ranks together on a signal)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def sum_dict(self, values: Mapping[str, float]) -> dict[str, float]:
        """Sum a dict of floats over ranks (same keys on every rank)."""
        if not self.enabled or not values:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return dict(zip(keys, tensor.tolist(), strict=True))

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device_name: str = "auto") -> DistContext:
    """Read the torchrun environment, start the process group and resolve the device once.

    Without ``WORLD_SIZE`` > 1 in the environment this is a single-process run on ``resolve_device(device_name)``.
    On CUDA each process uses GPU ``LOCAL_RANK`` and NCCL; on CPU gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistContext(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        check_gpu_count(local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1)))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    logger.info("distributed: rank %d/%d (local %d) on %s, backend %s", rank, world_size, local_rank, device, backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def check_gpu_count(local_rank: int, local_world_size: int) -> None:
    """Refuse more processes on this node than it has GPUs (each process needs its own GPU).

    Raises:
        ValueError: naming ``--nproc_per_node`` and the number of visible GPUs.
    """
    available = torch.cuda.device_count()
    if max(local_world_size, local_rank + 1) > available:
        raise ValueError(f"--nproc_per_node {max(local_world_size, local_rank + 1)} is more than the {available} "
                         "visible CUDA device(s) of this node: each process needs its own GPU (lower "
                         "--nproc_per_node, or set CUDA_VISIBLE_DEVICES)")


def convert_sync_batchnorm(model: Any, enabled: bool, context: DistContext) -> bool:
    """Replace the BatchNorm layers of ``model``'s five networks by SyncBatchNorm if ``enabled`` and the run has
    several CUDA processes (parameters and buffers are kept, so optimisers and checkpoints are unaffected); returns
    whether it did."""
    if not enabled:
        return False
    if not (context.enabled and context.device.type == "cuda"):
        if context.is_main:
            logger.info("learning.sync_batchnorm: only for several CUDA processes (this run: %d process(es) on %s); "
                        "BatchNorm left as it is", context.world_size, context.device.type)
        return False
    for name in list(model.model):
        model.model[name] = nn.SyncBatchNorm.convert_sync_batchnorm(model.model[name])
    logger.info("learning.sync_batchnorm: BatchNorm statistics over all %d processes", context.world_size)
    return True


def shutdown_distributed() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
