"""The Numba engine: compiled CPU kernels (:mod:`.feedforward`), parallel over samples and neurons.

Serves feed-forward layers on CPU tensors in float32 and float64, with the same spike
times and gradients as the PyTorch engine to rounding; ``engine="auto"`` prefers it
wherever it can serve. It needs the ``numba`` package (installed by
``requirements.txt``); without it the engine reports itself unavailable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.spikes import EventList
from ..base import Engine, LayerKind, LayerSpec
from .feedforward import feedforward_backward_numba, feedforward_forward_numba, numba_available

__all__ = ["NumbaEngine"]


class NumbaEngine(Engine):
    """Compiled CPU kernels for feed-forward layers."""

    name = "numba"
    kinds = frozenset({LayerKind.FEEDFORWARD})
    devices = frozenset({"cpu"})
    priority = 10
    checks_spike_values = True

    def unavailable(self) -> str | None:
        return None if numba_available() else "it needs the numba package (pip install numba)"

    def simulate(
        self, kind: LayerKind, spec: LayerSpec, times: Tensor, weight: Tensor, recurrent_weight: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        out, current, events = feedforward_forward_numba(times, weight, spec.params, spec.horizon, spec.max_spikes)
        return out, (weight, events.times, events.source, events.position, out, current)

    def adjoint(
        self, kind: LayerKind, spec: LayerSpec, grad_out: Tensor, saved: tuple[Tensor, ...], input_shape: torch.Size
    ) -> tuple[Tensor, Tensor, Tensor | None, int]:
        weight, ev_times, ev_source, ev_position, out, current = saved
        events = EventList(ev_times, ev_source, ev_position)
        clip = spec.clip(grad_out.dtype)
        grad_times, grad_weight, n_tangential = feedforward_backward_numba(
            grad_out, weight, events, out, current, spec.params, input_shape, clip
        )
        return grad_times, grad_weight, None, n_tangential
