"""Distributed data-parallel training (PyTorch DDP) for every ``chestlens train`` command.

A run is distributed when it is started by ``torchrun`` (or ``chestlens train ... --nproc-per-node N``,
which starts ``torchrun`` for you): the launcher sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``, and
:func:`session` joins the process group, NCCL on GPUs (one GPU per process, ``cuda:LOCAL_RANK``), gloo on
CPU. Multi-node runs use torchrun's rendezvous (``--nnodes``, ``--rdzv-endpoint``); see
``docs/scale-out.md``.

What changes under DDP, and nothing else:

* ``batch_size`` in the config stays the GLOBAL batch: each of the ``W`` processes takes
  ``batch_size / W`` samples of every step (it must divide), so the same config trains the same
  optimisation on one process or many, learning rate included.
* The sampler draws the epoch's order (a permutation, or the class-balanced weighted draw) on every
  process from the same seeded generator, cuts it into global batches exactly as one process would, and
  gives process ``r`` the ``r``-th slice of each (:class:`ShardedBatchSampler`): class balancing and the
  patient-level split (made once, by rank 0, before the others read it) are those of the 1-process run.
* Gradients are averaged by DDP; BatchNorm is synchronised across GPUs (SyncBatchNorm, NCCL only; on
  CPU each process normalises its own slice, the one difference from a 1-process run).
* Only rank 0 validates (and broadcasts the record, so early stopping agrees), writes TensorBoard logs,
  the curve PNG, checkpoints, the bundle and the reports.
* Resume: every process reads rank 0's checkpoint (a shared folder across nodes). A run whose worker was
  killed resumes with ``--resume``, or by itself when torchrun restarts the group
  (``--max-restarts``; :func:`restarted`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from chestlens.errors import ChestlensInputError

T = TypeVar("T")

#: Generous collective timeout: rank 0 validates (and at the end evaluates) while the others wait.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0


def placement() -> Placement:
    """The current process's placement (rank 0 of 1 outside a process group)."""
    if not dist.is_available() or not dist.is_initialized():
        return Placement()
    return Placement(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched_by_torchrun() -> bool:
    """True when the launcher's environment (``WORLD_SIZE`` and ``LOCAL_RANK``) is set."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def restarted() -> bool:
    """True when torchrun restarted the worker group after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def backend_for(device: str) -> str:
    """``nccl`` when the processes train on CUDA (``device`` auto with a GPU, or cuda), else ``gloo``."""
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda else "gloo"


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Placement]:
    """Join the process group when launched by torchrun (a no-op otherwise) and leave it at the end.

    On CUDA the process is pinned to ``cuda:LOCAL_RANK``, so ``"cuda"`` and ``"auto"`` name its own GPU.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1 or dist.is_initialized():
        yield placement()
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield placement()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if placement().world_size > 1:
        dist.barrier()


def main_first(make: Callable[[], T]) -> T:
    """Rank 0 calls ``make`` first (e.g. builds and saves the split); the others call it after, when its
    files exist (e.g. they load that split)."""
    if placement().is_main:
        value = make()
        barrier()
        return value
    barrier()
    return make()


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value`` on every process (a picklable object)."""
    if placement().world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_processes(total: float, count: int) -> float:
    """``sum(total) / sum(count)`` over the processes (a per-process sum and count); NaN for no count."""
    if placement().world_size > 1:
        pair = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(pair)
        total, count = float(pair[0]), int(pair[1])
    return total / count if count else float("nan")


def local_batch_size(global_batch: int) -> int:
    """Samples per process per step for a global batch of ``global_batch``."""
    world = placement().world_size
    if global_batch % world:
        raise ChestlensInputError(
            None, f"batch_size {global_batch} (the global batch) is not divisible by {world} processes"
        )
    return global_batch // world


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel (SyncBatchNorm on CUDA), or itself outside a group."""
    if placement().world_size == 1:
        return model
    if device.type != "cuda":
        return torch.nn.parallel.DistributedDataParallel(model)
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[index])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DDP wrapper (the module itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This process's slice of every global batch of ``sampler``'s order.

    The order is drawn in full on every process (same generator seed, so the same order everywhere), cut
    into global batches of ``global_batch`` (the last partial one dropped when ``drop_last``), and each
    global batch is cut into ``world_size`` contiguous slices (``numpy.array_split``): process ``rank``
    gets slice ``rank``. With one process this is ``BatchSampler(sampler, global_batch, drop_last)``.
    """

    def __init__(
        self, sampler: torch.utils.data.Sampler[int], global_batch: int, drop_last: bool, where: Placement
    ) -> None:
        self.sampler, self.global_batch, self.drop_last, self.where = sampler, global_batch, drop_last, where

    def _global_batches(self, order: list[int]) -> list[list[int]]:
        cut = range(0, len(order), self.global_batch)
        batches = [order[i : i + self.global_batch] for i in cut]
        if self.drop_last and batches and len(batches[-1]) < self.global_batch:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches(list(self.sampler)):
            part = np.array_split(np.asarray(batch), self.where.world_size)[self.where.rank]
            if len(part) == 0:
                raise ChestlensInputError(
                    None, f"a batch of {len(batch)} samples cannot feed {self.where.world_size} processes"
                )
            yield part.tolist()

    def __len__(self) -> int:
        size = len(self.sampler)  # type: ignore[arg-type]
        return size // self.global_batch if self.drop_last else -(-size // self.global_batch)
