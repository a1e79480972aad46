"""The Numba engine: compiled CPU kernels, parallel over samples (and neurons).

Serves feed-forward (:mod:`.feedforward`) and recurrent (:mod:`.recurrent`) layers,
layers given as synapse lists (:mod:`.connections`, :mod:`.recurrent_connections`:
per-synapse and recurrent delays, masks, convolutions, per-neuron time constants) and
voltage trajectories (:mod:`.trajectory`) on CPU tensors in float32 and float64, with
the same spike times, voltages and gradients as the PyTorch engine to rounding. As there, layers compute in float64 (``compute_dtype``:
float32 results are correctly rounded at any trial length); ``engine="auto"`` prefers it wherever it can serve. It needs the ``numba`` package (installed by
``requirements.txt``); without it the engine reports itself unavailable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...model.neuron import NeuronParams
from ...model.spikes import EventList, ValueChecks
from ...model.trajectory import VoltageTrajectory
from ...validation import check_finite
from ..base import ConnectionGradients, Connections, Engine, LayerGradients, LayerKind, LayerSpec, RecurrentConnections
from .connections import connections_backward_numba, connections_forward_numba, neuron_constants
from .feedforward import feedforward_backward_numba, feedforward_forward_numba
from .recurrent import NumbaRecurrentTape, recurrent_backward_numba, recurrent_forward_numba
from .recurrent_connections import recurrent_connections_backward_numba, recurrent_connections_forward_numba
from .scalar import numba_available
from .trajectory import CompiledTrajectory

__all__ = ["NumbaEngine"]


class NumbaEngine(Engine):
    """Compiled CPU kernels for feed-forward, recurrent and synapse-list layers and for trajectories."""

    name = "numba"
    kinds = frozenset({LayerKind.FEEDFORWARD, LayerKind.RECURRENT, LayerKind.CONNECTIONS, LayerKind.TRAJECTORY})
    devices = frozenset({"cpu"})
    priority = 10
    compute_dtype = torch.float64
    checks_values = True

    def unavailable(self) -> str | None:
        return None if numba_available() else "it needs the numba package (pip install numba)"

    def simulate(
        self, kind: LayerKind, spec: LayerSpec, times: Tensor, weight: Tensor, recurrent_weight: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        check_finite("weight", weight)  # (the input times: in the compiled event sort)
        if kind is LayerKind.RECURRENT:
            check_finite("recurrent_weight", recurrent_weight)
            out, events, tape = recurrent_forward_numba(
                times, weight, recurrent_weight, spec.params, spec.horizon, spec.max_spikes
            )
            return out, (weight, recurrent_weight, events.times, events.source, events.position, *tape.tensors())
        out, current, events = feedforward_forward_numba(times, weight, spec.params, spec.horizon, spec.max_spikes)
        return out, (weight, events.times, events.source, events.position, out, current)

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
        if kind is LayerKind.RECURRENT:
            weight, recurrent_weight, ev_times, ev_source, ev_position, *parts = saved
            events = EventList(ev_times, ev_source, ev_position)
            tape = NumbaRecurrentTape(*parts)
            return LayerGradients(
                *recurrent_backward_numba(
                    grad_out, weight, recurrent_weight, events, tape, spec.params, input_shape, clip, want_times
                )
            )
        weight, ev_times, ev_source, ev_position, out, current = saved
        events = EventList(ev_times, ev_source, ev_position)
        grad_times, grad_weight, n_tangential, jumps = feedforward_backward_numba(
            grad_out, weight, events, out, current, spec.params, input_shape, clip, want_times
        )
        return LayerGradients(grad_times, grad_weight, None, n_tangential, jumps)

    def simulate_connections(
        self, spec: LayerSpec, times: Tensor, connections: Connections, recurrent: RecurrentConnections | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        constants = self._neuron_constants(spec, connections.tau_mem, connections.tau_syn, spec.horizon)
        device, dtype = times.device, times.dtype
        if recurrent is not None:
            inputs = (connections.source, connections.pointer, connections.weight, connections.delay)
            out, tape = recurrent_connections_forward_numba(times, inputs, tuple(recurrent), constants, spec.max_spikes)
            return out.to(device, dtype), (times, *connections, *recurrent, *tape)
        out, current = connections_forward_numba(
            times, connections.source, connections.pointer, connections.weight, connections.delay, constants, spec.max_spikes
        )
        out = out.to(device, dtype)
        return out, (times, *connections, out, current.to(device, dtype))

    def adjoint_connections(
        self, spec: LayerSpec, grad_out: Tensor, saved: tuple[Tensor, ...], input_shape: torch.Size, want_tau: bool
    ) -> ConnectionGradients:
        times, source, pointer, weight, delay, tau_mem, tau_syn, *rest = saved
        constants = self._neuron_constants(spec, tau_mem, tau_syn, float("inf"), spec.clip(grad_out.dtype))
        dtype, device = grad_out.dtype, grad_out.device
        if len(rest) > 2:  # recurrent: its synapses and the forward's tape
            recurrent, tape = tuple(rest[:4]), tuple(rest[4:])
            g_t, g_w, g_d, g_rw, g_rd, g_tm, g_ts, n_tangential, jumps = recurrent_connections_backward_numba(
                grad_out, times, (source, pointer, weight, delay), recurrent, constants, tape, want_tau
            )
            grads = [g.to(device, dtype) for g in (g_t, g_w, g_d, g_tm, g_ts)]
            return ConnectionGradients(
                *grads, n_tangential, jumps.to(device, dtype), g_rw.to(device, dtype), g_rd.to(device, dtype)
            )
        out, current = rest
        *grads, n_tangential, jumps = connections_backward_numba(
            grad_out, out, current, times, source, pointer, weight, delay, constants, want_tau
        )
        grads = [g.to(device, dtype) for g in grads]
        return ConnectionGradients(*grads, n_tangential, jumps.to(device, dtype))

    @staticmethod
    def _neuron_constants(spec: LayerSpec, tau_mem: Tensor, tau_syn: Tensor, horizon: float, clip: float = 0.0) -> Any:
        """Each neuron's kernel constants (threshold ``spec.params.threshold`` = 1)."""
        if spec.params.threshold != 1.0:
            raise ValueError(f"a connection-list layer has threshold 1 (weights divided by it), got {spec.params.threshold}")
        taus = [t.detach().to("cpu", torch.float64).numpy() for t in (tau_mem, tau_syn)]
        return neuron_constants(*taus, horizon, clip)

    def trajectory(
        self,
        times: Tensor,
        spikes: Tensor | None,
        weight: Tensor,
        recurrent_weight: Tensor | None,
        params: NeuronParams,
        window: float,
    ) -> VoltageTrajectory:
        checks = ValueChecks({"times": times, "spikes": spikes}, {"weight": weight, "recurrent_weight": recurrent_weight})
        return CompiledTrajectory.from_spikes(times, spikes, weight, recurrent_weight, params, window, checks)
