"""Data-parallel training over several processes (``torchrun``), through ``torch.distributed``.

``torchrun --nproc-per-node N -m eventprop train TASK ...`` starts N processes; each
finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...) and joins one process group (gloo on CPU, nccl on CUDA). Every
process holds the same model (same seed; rank 0's parameters are broadcast once) and
draws the same minibatch order and input noise; each takes a contiguous shard of every
minibatch (sizes differ by at most one sample). With ``n_r`` samples on rank ``r`` of a
minibatch of ``n``, rank ``r`` back-propagates ``(n_r / n) * loss_r`` (its mean loss)
and the gradients are summed over the ranks, which is the gradient of the minibatch's
mean loss: the same update as one process on the whole minibatch, up to the order of
floating-point additions. Statistics that steer training (the minibatch's silent
fractions for weight bumping, the loss for the finiteness check) are summed over the
ranks first, so every process takes the same decisions. Validation and test run on
every process (identical models, identical numbers); rank 0 alone writes files and
prints.

A single process (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) is a group of one: every
operation here is then the identity.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["DataParallel"]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run.

    Attributes:
        rank: this process's index, ``0 <= rank < world``.
        world: the number of processes.
    """

    rank: int = 0
    world: int = 1

    @classmethod
    def from_environment(cls, device: str) -> DataParallel:
        """Join the run torchrun started (initialising ``torch.distributed`` once), or a group of one.

        ``device``: the run's device; ``cuda`` runs use nccl and this process's
        ``LOCAL_RANK`` GPU, CPU runs gloo.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_available():  # pragma: no cover - torch builds without distributed
            raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def writer(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` samples."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over the ranks (in place, also returned)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(values)
        return values

    def sum_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Sum ``.grad`` over the ranks.

        A parameter without a gradient on every rank keeps ``None`` (the optimiser
        skips it, as it would in one process); one with a gradient on some rank gets
        zeros where it had none before the sum.
        """
        if self.world == 1:
            return
        params = list(parameters)
        if not params:
            return
        present = self.sum(torch.tensor([p.grad is not None for p in params], dtype=torch.float64, device=params[0].device))
        grads = []
        for p, anywhere in zip(params, present.tolist()):
            if anywhere:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        if grads:
            flat = self.sum(torch.cat([g.reshape(-1) for g in grads]))
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast(self, tensors: Sequence[Tensor]) -> None:
        """Overwrite ``tensors`` with rank 0's."""
        if self.world > 1:
            import torch.distributed as dist

            for t in tensors:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
