r"""Functional API for layers given as synapse lists: per-synapse delays, sparse and shared weights, per-neuron constants.

:func:`lif_connections` is :func:`eventprop.lif_layer` for a feed-forward layer whose
synapses are listed (:class:`~eventprop.layers.connectivity.Connectivity`): one weight
and one delay per synapse, time constants and thresholds per neuron. It runs the
engine's ``connections`` kind (:class:`eventprop.engines.Connections`) inside one
:class:`torch.autograd.Function`, whose backward returns the exact EventProp gradients
of the input times, the weights, the delays and the time constants (the thresholds by
autograd through ``weight / threshold``, :mod:`eventprop.model.sensitivity`).
:func:`eventprop.lif_layer` calls it for dense layers with a delay per synapse, a
mask, or time constants that differ between neurons; :class:`eventprop.LIFConv2d` for
convolutions.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from ..engines import Connections, Engine, LayerKind, LayerSpec, RecurrentConnections, check_engine_name, select_engine
from ..errors import DEFAULT_MAX_SPIKES, TangentialCrossingWarning, checked_adjoint, refuse_create_graph
from ..model.neuron import NeuronParams
from ..model.spikes import check_spike_layout, check_spike_values
from ..validation import check_weight, optional_positive_int, positive
from .connectivity import Connectivity
from .constants import check_constant, check_delays

__all__ = ["lif_connections"]


class _ConnectionsFunction(torch.autograd.Function):
    """Input spike times -> output spike times of a connection-list layer, by one engine."""

    @staticmethod
    def forward(
        ctx: Any,
        times: Tensor,
        weight: Tensor,
        delay: Tensor,
        tau_mem: Tensor,
        tau_syn: Tensor,
        recurrent_weight: Tensor | None,
        recurrent_delay: Tensor | None,
        source: Tensor,
        pointer: Tensor,
        recurrent_lists: tuple[Tensor, Tensor] | None,
        engine: Engine,
        spec: LayerSpec,
    ) -> Tensor:
        wide = engine.compute_dtype or times.dtype
        connections = Connections(source, pointer, *(x.detach().to(wide) for x in (weight, delay, tau_mem, tau_syn)))
        recurrent = None
        if recurrent_lists is not None:
            recurrent = RecurrentConnections(*recurrent_lists, recurrent_weight.detach().to(wide), recurrent_delay.detach().to(wide))
        out_times, saved = engine.simulate_connections(spec, times.detach().to(wide), connections, recurrent)
        ctx.save_for_backward(*saved, out_times)
        ctx.engine, ctx.spec, ctx.input_shape, ctx.wide = engine, spec, times.shape, wide
        return out_times.to(times.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("a LIF layer's EventProp gradient")
        *saved, out_times = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads, n_tangential = checked_adjoint(
            grad_out,
            out_times,
            lambda: ctx.engine.adjoint_connections(ctx.spec, grad_out.to(ctx.wide), tuple(saved), ctx.input_shape, needs[3] or needs[4]),
        )
        if n_tangential:
            n_spikes = int(torch.isfinite(out_times).sum())
            warnings.warn(TangentialCrossingWarning(n_tangential, n_spikes, ctx.spec.tangent_safeguard), stacklevel=2)
        dtype = grad_out.dtype
        values = (grads.times, grads.weight, grads.delay, grads.tau_mem, grads.tau_syn, grads.recurrent_weight, grads.recurrent_delay)
        return (*(g.to(dtype) if need else None for g, need in zip(values, needs[:7])), None, None, None, None, None)


def _per_neuron(value: float | Tensor, n: int, like: Tensor) -> Tensor:
    """A constant as an ``(n,)`` tensor (a tensor of shape ``()`` expanded: its gradient is the sum)."""
    if isinstance(value, Tensor):
        return value.to(like.dtype).expand(n)
    return torch.full((n,), value, dtype=like.dtype, device=like.device)


def lif_connections(
    times: Tensor,
    weight: Tensor,
    connectivity: Connectivity,
    *,
    tau_mem: float | Tensor,
    tau_syn: float | Tensor,
    threshold: float | Tensor = 1.0,
    delay: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    recurrent_delay: Tensor | None = None,
    horizon: float = math.inf,
    max_spikes: int | None = DEFAULT_MAX_SPIKES,
    engine: str = "auto",
    tangent_safeguard: bool = False,
) -> Tensor:
    r"""Output spike times of a LIF layer given as a synapse list, differentiable by EventProp.

    The dynamics of :func:`eventprop.lif_layer`; synapse ``c`` of neuron ``j`` adds
    ``weight[c]`` to ``I_j`` at ``t + delay[c]`` for every spike ``t`` of input
    ``connectivity.source[c]``; neuron ``j`` has its own ``tau_mem``, ``tau_syn`` and
    threshold where they are given per neuron. With ``recurrent_weight`` a spike of
    neuron ``m`` at ``t`` adds ``recurrent_weight[n, m]`` to ``I_n`` at
    ``t + recurrent_delay[n, m]`` (``n != m``; the diagonal is ignored).

    Args:
        times: input spike times (data contract), ``connectivity.in_features`` inputs.
        weight: ``(C,)`` one weight per synapse.
        connectivity: the synapses (:class:`~eventprop.layers.connectivity.Connectivity`).
        tau_mem, tau_syn, threshold: numbers or tensors of shape ``()`` or
            ``(out_features,)``, positive.
        delay: ``None`` or ``(C,)``, finite and ``>= 0``.
        recurrent_weight: ``None`` (feed-forward) or ``(out_features, out_features)``.
        recurrent_delay: ``None`` (no delay) or ``(out_features, out_features)``,
            finite and ``>= 0`` (0 allowed); only with ``recurrent_weight``.
        horizon, max_spikes, engine, tangent_safeguard: as in :func:`eventprop.lif_layer`
            (the engine must serve the ``connections`` kind: ``"numba"``).

    Shape:
        - times: ``(batch, in_features, max_in)``
        - output: ``(batch, out_features, max_out)``, ``+inf`` padded

    Examples:
        >>> conn = Connectivity.from_mask(torch.tensor([[True, False], [True, True]]))
        >>> times = torch.tensor([[[0.0], [3.0]]], dtype=torch.float64)
        >>> lif_connections(times, torch.tensor([3.0, 2.0, 2.5], dtype=torch.float64), conn,
        ...                 tau_mem=20.0, tau_syn=5.0).shape
        torch.Size([1, 2, 1])
    """
    if not isinstance(connectivity, Connectivity):
        raise ValueError(f"connectivity must be a Connectivity, got {type(connectivity).__name__}")
    horizon = positive("horizon", horizon, allow_inf=True)
    if not isinstance(tangent_safeguard, bool):
        raise ValueError(f"tangent_safeguard must be True or False, got {tangent_safeguard!r}")
    max_spikes = optional_positive_int("max_spikes", max_spikes)
    check_engine_name(engine)
    check_spike_layout(times, connectivity.in_features)
    check_spike_values(times)
    n_out, n_syn = connectivity.out_features, connectivity.n_synapses
    if not isinstance(weight, Tensor) or weight.shape != (n_syn,):
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must have shape (n_synapses,) = ({n_syn},) for this connectivity, got {shape}")
    check_weight(weight, "weight", (n_syn,), times)
    if connectivity.source.device != times.device:
        connectivity = connectivity.to(times.device)
    taus = [_per_neuron(check_constant(name, v, n_out, times), n_out, times) for name, v in (("tau_mem", tau_mem), ("tau_syn", tau_syn))]
    threshold = check_constant("threshold", threshold, n_out, times)
    if delay is None:
        delay = torch.zeros(n_syn, dtype=times.dtype, device=times.device)
    else:
        check_delays("delay", delay, {(n_syn,): f"(n_synapses,) = ({n_syn},)"}, times)
    theta = threshold.to(weight.dtype).expand(n_out) if isinstance(threshold, Tensor) else None
    # the same spike times as threshold 1 with every weight onto neuron j divided by threshold_j
    weight = weight / theta[connectivity.target] if theta is not None else weight / threshold
    rec_lists = rec_weight = rec_delay = None
    if recurrent_weight is not None:
        check_weight(recurrent_weight, "recurrent_weight", (n_out, n_out), times)
        if recurrent_delay is not None:
            check_delays("recurrent_delay", recurrent_delay, {(n_out, n_out): f"({n_out}, {n_out})"}, times)
        pointer, target, index = recurrent_synapses(n_out, times.device)
        rec_weight = recurrent_weight.reshape(-1)[index]
        rec_weight = rec_weight / (theta[target] if isinstance(threshold, Tensor) else threshold)
        rec_delay = recurrent_delay.reshape(-1)[index] if recurrent_delay is not None else rec_weight.new_zeros(index.shape)
        rec_lists = (pointer, target)
    elif recurrent_delay is not None:
        raise ValueError("recurrent_delay is given but recurrent_weight is not")
    chosen = select_engine(engine, LayerKind.CONNECTIONS, times.device, times.dtype)
    nominal = NeuronParams(float(taus[0][0].detach()), float(taus[1][0].detach()), 1.0)  # per-neuron values: the tensors
    spec = LayerSpec(nominal, horizon, max_spikes, tangent_safeguard)
    return _ConnectionsFunction.apply(
        times, weight, delay, *taus, rec_weight, rec_delay, connectivity.source, connectivity.pointer, rec_lists, chosen, spec
    )


def recurrent_synapses(n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """All-to-all recurrent synapses without self-connections, grouped by source.

    Returns ``(pointer (n + 1,), target (n (n - 1),), index)``: synapse ``c`` from neuron
    ``m`` (``pointer[m] <= c < pointer[m + 1]``) to ``target[c]`` has the weight
    ``recurrent_weight.reshape(-1)[index[c]]`` (``= recurrent_weight[target, m]``).
    """
    source, target = torch.meshgrid(torch.arange(n, device=device), torch.arange(n, device=device), indexing="ij")
    keep = source != target
    pointer = torch.arange(0, n * (n - 1) + 1, max(n - 1, 1), device=device) if n > 1 else torch.zeros(2, dtype=torch.long, device=device)
    return pointer, target[keep], (target * n + source)[keep]

