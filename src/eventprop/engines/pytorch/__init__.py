"""The PyTorch engine: vectorised tensor code for every layer kind, on any device.

- feed-forward layers (:mod:`.feedforward`): spike rounds vectorised over batch x
  neurons x input events;
- recurrent layers (:mod:`.recurrent`): a true event-order loop vectorised over the
  batch;
- trajectories (:mod:`.trajectory`): a log-depth prefix scan, differentiated by autograd.

It is the reference the compiled engines are tested against, and the engine for
devices without a compiled one. Spiking layers compute in float64
(``compute_dtype``): float32 results are correctly rounded (error at most half a
float32 step of the spike time) and the spike-round loops cannot stall.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.neuron import NeuronParams, count_tangential
from ...model.spikes import EventList
from ...model.trajectory import VoltageTrajectory
from ..base import Engine, LayerGradients, LayerKind, LayerSpec
from .feedforward import feedforward_backward, feedforward_forward
from .recurrent import RecurrentTape, recurrent_backward, recurrent_forward
from .trajectory import ScanTrajectory

__all__ = ["TorchEngine"]


class TorchEngine(Engine):
    """Vectorised PyTorch: feed-forward, recurrent and trajectory, any device."""

    name = "torch"
    kinds = frozenset({LayerKind.FEEDFORWARD, LayerKind.RECURRENT, LayerKind.TRAJECTORY})
    devices = None
    priority = 0
    compute_dtype = torch.float64

    def simulate(
        self, kind: LayerKind, spec: LayerSpec, times: Tensor, weight: Tensor, recurrent_weight: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        if kind is LayerKind.FEEDFORWARD:
            out, current, events = feedforward_forward(times, weight, spec.params, spec.horizon, spec.max_spikes)
            return out, (weight, events.times, events.source, events.position, out, current)
        out, events, tape = recurrent_forward(times, weight, recurrent_weight, spec.params, spec.horizon, spec.max_spikes)
        return out, (weight, recurrent_weight, events.times, events.source, events.position, *tape.tensors())

    def adjoint(
        self,
        kind: LayerKind,
        spec: LayerSpec,
        grad_out: Tensor,
        saved: tuple[Tensor, ...],
        input_shape: torch.Size,
        want_times: bool = True,
    ) -> LayerGradients:
        clip = spec.clip(grad_out.dtype)
        if kind is LayerKind.FEEDFORWARD:
            weight, ev_times, ev_source, ev_position, out, current = saved
            events = EventList(ev_times, ev_source, ev_position)
            grad_times, grad_weight, jumps = feedforward_backward(
                grad_out, weight, events, out, current, spec.params, input_shape, clip
            )
            n_tangential = count_tangential(current, torch.isfinite(out), spec.params)
            return LayerGradients(grad_times, grad_weight, None, n_tangential, jumps)
        weight, recurrent_weight, ev_times, ev_source, ev_position, *parts = saved
        events = EventList(ev_times, ev_source, ev_position)
        tape = RecurrentTape(*parts)
        grad_times, grad_weight, grad_rec, jumps = recurrent_backward(
            grad_out, weight, recurrent_weight, events, tape, spec.params, input_shape, clip
        )
        n_tangential = count_tangential(tape.current, tape.fired, spec.params)
        return LayerGradients(grad_times, grad_weight, grad_rec, n_tangential, jumps)

    def trajectory(
        self,
        times: Tensor,
        spikes: Tensor | None,
        weight: Tensor,
        recurrent_weight: Tensor | None,
        params: NeuronParams,
        window: float,
    ) -> VoltageTrajectory:
        return ScanTrajectory.from_spikes(times, spikes, weight, recurrent_weight, params, window)
