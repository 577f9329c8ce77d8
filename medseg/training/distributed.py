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
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    logger.info("distributed: rank %d/%d (local %d) on %s, backend %s", rank, world_size, local_rank, device, backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
