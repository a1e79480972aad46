r"""Activity of the spiking layers (per layer) and the paper's weight bumping.

Per spiking layer ``l`` (the hidden layers, and the output layer when the readout
spikes): spikes per sample, and the silent fraction = silent (sample, neuron) pairs /
all pairs. Weight bumping (paper section 3): on a minibatch, the first spiking layer in
network order whose silent fraction exceeds its allowed fraction gets all its input
weights raised by ``bump``; later layers wait until it is active enough, as in the
authors' code (a silent hidden layer also silences the output, and raising the output
weights cannot help then).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..layers import LIFLayer

__all__ = ["layer_names", "Activity", "silent_counts", "bump_first_silent"]


def layer_names(n_hidden: int, spiking_output: bool) -> list[str]:
    """Names of the spiking layers in metrics: ``hidden1 ... hiddenN`` and ``output``."""
    return [f"hidden{k + 1}" for k in range(n_hidden)] + (["output"] if spiking_output else [])


class Activity:
    """Spike statistics of the spiking layers accumulated over minibatches."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.samples = 0
        self.spikes = [0.0] * len(names)
        self.silent = [0.0] * len(names)
        self.pairs = [0] * len(names)

    def add(self, outputs: Sequence[Tensor]) -> None:
        """Add one minibatch: the spike-time outputs of the spiking layers, in order."""
        self.samples += outputs[0].shape[0]
        for k, out in enumerate(outputs[: len(self.names)]):
            self.spikes[k] += float(torch.isfinite(out).sum())
            self.silent[k] += float(torch.isinf(out[..., 0]).sum())
            self.pairs[k] += out.shape[0] * out.shape[1]

    def total(self, sum_over_processes: Callable[[Tensor], Tensor], device: torch.device | str = "cpu") -> None:
        """Replace the counts by their sums over the processes of a data-parallel run."""
        n = len(self.names)
        counts = torch.tensor([self.samples, *self.spikes, *self.silent, *self.pairs], dtype=torch.float64, device=device)
        values = sum_over_processes(counts).tolist()
        self.samples = int(values[0])
        self.spikes = values[1 : 1 + n]
        self.silent = values[1 + n : 1 + 2 * n]
        self.pairs = [int(v) for v in values[1 + 2 * n :]]

    def summary(self) -> dict[str, float]:
        """``{name}_spikes`` (per sample) and ``{name}_silent`` (fraction) of every layer."""
        out: dict[str, float] = {}
        for k, name in enumerate(self.names):
            out[f"{name}_spikes"] = self.spikes[k] / self.samples if self.samples else math.nan
            out[f"{name}_silent"] = self.silent[k] / self.pairs[k] if self.pairs[k] else math.nan
        return out


def silent_counts(outputs: Sequence[Tensor], n_layers: int, device: torch.device | str = "cpu") -> Tensor:
    """``(n_layers, 2)`` float64: silent ``(sample, neuron)`` pairs and all pairs per layer (zeros past ``outputs``)."""
    counts = torch.zeros(n_layers, 2, dtype=torch.float64, device=device)
    for k, out in enumerate(outputs[:n_layers]):
        counts[k, 0] = float(torch.isinf(out[..., 0]).sum())
        counts[k, 1] = out.shape[0] * out.shape[1]
    return counts


def bump_first_silent(
    layers: Sequence[nn.Module],
    outputs: Sequence[Tensor],
    limits: Sequence[float],
    bump: float,
    *,
    total: Callable[[Tensor], Tensor] | None = None,
) -> int | None:
    """Weight bumping (module docstring); returns the index of the bumped layer, or ``None``.

    Args:
        layers, outputs, limits: the spiking layers, their outputs on the minibatch and
            their allowed silent fractions, in network order.
        bump: added to every input weight of the bumped layer (0: no bumping).
        total: sums the :func:`silent_counts` over the processes of a data-parallel
            run, whose shards together are the minibatch (``None``: one process).
    """
    if bump == 0:
        return None
    if total is None:  # one process: the silent fraction as a float32 mean, as ever
        fractions = [float(torch.isinf(out[..., 0]).float().mean()) for out in outputs]
    else:  # the same float32 quotient of the counts summed over the processes
        counts = total(silent_counts(outputs, len(layers), layers[0].weight.device)).float()
        fractions = (counts[:, 0] / counts[:, 1]).tolist()  # NaN (no bump) for an empty layer, as a mean
    with torch.no_grad():
        for k, (layer, fraction, allowed) in enumerate(zip(layers, fractions, limits)):
            if isinstance(layer, LIFLayer) and fraction > allowed:
                layer.weight += bump
                return k
    return None
