"""The PyTorch engine: vectorised tensor code for every layer kind, on any device.

- feed-forward layers (:mod:`.feedforward`): spike rounds vectorised over batch x
  neurons x input events;
- recurrent layers (:mod:`.recurrent`): a true event-order loop vectorised over the
  batch;
- trajectories (:mod:`.trajectory`): a log-depth prefix scan, differentiated by autograd.

It is the reference the compiled engines are tested against, and the engine for
devices without a compiled one. Spiking layers given float32 tensors are simulated
(and differentiated) in float64 and the results rounded to float32: in float32 the
spike-round loops could stall where a spike follows the previous one by less than half
a float32 step of the time (``t + s == t`` for long trials), and the float32 result is
then correctly rounded (error at most half a float32 step of the spike time).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.neuron import NeuronParams, count_tangential
from ...model.spikes import EventList
from ...model.trajectory import VoltageTrajectory
from ..base import Engine, LayerKind, LayerSpec
from .feedforward import feedforward_backward, feedforward_forward
from .recurrent import RecurrentTape, recurrent_backward, recurrent_forward
from .trajectory import trajectory

__all__ = ["TorchEngine"]


class TorchEngine(Engine):
    """Vectorised PyTorch: feed-forward, recurrent and trajectory, any device."""

    name = "torch"
    kinds = frozenset({LayerKind.FEEDFORWARD, LayerKind.RECURRENT, LayerKind.TRAJECTORY})
    devices = None
    priority = 0

    def simulate(
        self, kind: LayerKind, spec: LayerSpec, times: Tensor, weight: Tensor, recurrent_weight: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        if times.dtype != torch.float64:  # simulated in float64, returned in the input dtype (module docstring)
            wide = (t.double() if t is not None else None for t in (times, weight, recurrent_weight))
            out, saved = self.simulate(kind, spec, *wide)
            return out.to(times.dtype), saved
        if kind is LayerKind.FEEDFORWARD:
            out, current, events = feedforward_forward(times, weight, spec.params, spec.horizon, spec.max_spikes)
            return out, (weight, events.times, events.source, events.position, out, current)
        out, events, tape = recurrent_forward(times, weight, recurrent_weight, spec.params, spec.horizon, spec.max_spikes)
        return out, (weight, recurrent_weight, events.times, events.source, events.position, *tape.tensors())

    def adjoint(
        self, kind: LayerKind, spec: LayerSpec, grad_out: Tensor, saved: tuple[Tensor, ...], input_shape: torch.Size
    ) -> tuple[Tensor, Tensor, Tensor | None, int]:
        if grad_out.dtype != torch.float64:
            *grads, n_tangential = self.adjoint(kind, spec, grad_out.double(), saved, input_shape)
            gt, gw, gr = (g.to(grad_out.dtype) if g is not None else None for g in grads)
            return gt, gw, gr, n_tangential
        clip = spec.clip(grad_out.dtype)
        if kind is LayerKind.FEEDFORWARD:
            weight, ev_times, ev_source, ev_position, out, current = saved
            events = EventList(ev_times, ev_source, ev_position)
            grad_times, grad_weight = feedforward_backward(grad_out, weight, events, out, current, spec.params, input_shape, clip)
            return grad_times, grad_weight, None, count_tangential(current, torch.isfinite(out), spec.params)
        weight, recurrent_weight, ev_times, ev_source, ev_position, *parts = saved
        events = EventList(ev_times, ev_source, ev_position)
        tape = RecurrentTape(*parts)
        grads = recurrent_backward(grad_out, weight, recurrent_weight, events, tape, spec.params, input_shape, clip)
        return (*grads, count_tangential(tape.current, tape.fired, spec.params))

    def trajectory(
        self,
        times: Tensor,
        spikes: Tensor | None,
        weight: Tensor,
        recurrent_weight: Tensor | None,
        params: NeuronParams,
        window: float,
    ) -> VoltageTrajectory:
        return trajectory(times, spikes, weight, recurrent_weight, params, window)
