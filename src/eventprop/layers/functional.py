r"""Functional API: LIF layers and voltage trajectories as differentiable functions.

:func:`lif_layer` maps input spike times to output spike times. It validates the
arguments, picks an engine (:func:`eventprop.engines.select_engine`) and runs it inside
one :class:`torch.autograd.Function` whose forward is the engine's exact simulation and
whose backward is its EventProp adjoint, returning ``dL/dW``, ``dL/dR`` and
``dL/d input_times``; autograd chains layers into exactly the network's EventProp
gradient. Every parameter is an explicit argument: nothing escapes the gradient.

:func:`readout_trajectory` and :func:`lif_trajectory` give the exact ``V(t)`` of a
readout or of a LIF layer (given its spikes) as a
:class:`~eventprop.model.trajectory.VoltageTrajectory`, differentiated by autograd.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from ..engines import Engine, LayerKind, LayerSpec, check_engine_name, select_engine
from ..engines.numba_cpu.time_constants import time_constant_gradients
from ..errors import DEFAULT_MAX_SPIKES, TangentialCrossingWarning, checked_adjoint, refuse_create_graph
from ..model.neuron import NeuronParams
from ..model.spikes import ValueChecks, check_spike_layout
from ..model.trajectory import VoltageTrajectory
from ..validation import check_finite, check_matrix, check_weight, optional_positive_int, positive, renamed
from .connected import lif_connections
from .connectivity import Connectivity
from .constants import check_constant, check_delays, check_mask

__all__ = ["lif_layer", "readout_trajectory", "lif_trajectory", "without_self_connections", "check_horizon"]


class _LIFFunction(torch.autograd.Function):
    """Input spike times -> output spike times, forward and backward by one engine.

    ``tau_mem`` and ``tau_syn`` are tensors of shape ``()`` holding ``spec.params``'
    values (their gradients: :mod:`eventprop.model.sensitivity`), or ``None``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        times: Tensor,
        weight: Tensor,
        recurrent_weight: Tensor | None,
        tau_mem: Tensor | None,
        tau_syn: Tensor | None,
        engine: Engine,
        kind: LayerKind,
        spec: LayerSpec,
    ) -> Tensor:
        wide = engine.compute_dtype or times.dtype  # the engine's dtype (engine contract), results rounded back
        times_w, weight_w = times.to(wide), weight.to(wide)
        rec_w = recurrent_weight.to(wide) if recurrent_weight is not None else None
        out_times, saved = engine.simulate(kind, spec, times_w, weight_w, rec_w)
        ctx.taus = ctx.needs_input_grad[3] or ctx.needs_input_grad[4]
        ctx.tau_dtypes = tuple(tau.dtype if tau is not None else times.dtype for tau in (tau_mem, tau_syn))
        ctx.n_saved = len(saved)
        extra = (times_w, weight_w, rec_w if rec_w is not None else weight_w.new_zeros(0)) if ctx.taus else ()
        ctx.save_for_backward(*saved, out_times, *extra)  # the output marks where dL/dt must be a number
        ctx.engine, ctx.kind, ctx.spec, ctx.input_shape, ctx.wide = engine, kind, spec, times.shape, wide
        return out_times.to(times.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("a LIF layer's EventProp gradient")
        tensors = ctx.saved_tensors
        saved, out_times, extra = tensors[: ctx.n_saved], tensors[ctx.n_saved], tensors[ctx.n_saved + 1 :]
        dtype = grad_out.dtype
        grads, n_tangential = checked_adjoint(
            grad_out,
            out_times,
            lambda: ctx.engine.adjoint(
                ctx.kind, ctx.spec, grad_out.to(ctx.wide), tuple(saved), ctx.input_shape, want_times=ctx.needs_input_grad[0]
            ),
        )
        grad_times = grads.times.to(dtype) if ctx.needs_input_grad[0] else None
        grad_weight = grads.weight.to(dtype)
        grad_rec = grads.recurrent_weight.to(dtype) if grads.recurrent_weight is not None else None
        if n_tangential:
            n_spikes = int(torch.isfinite(out_times).sum())
            warnings.warn(TangentialCrossingWarning(n_tangential, n_spikes, ctx.spec.tangent_safeguard), stacklevel=2)
        grad_tau_mem = grad_tau_syn = None
        if ctx.taus:
            times_w, weight_w, rec_w = extra
            d_mem, d_syn = time_constant_gradients(
                times_w, weight_w, rec_w if ctx.kind is LayerKind.RECURRENT else None, out_times, grads.jumps, ctx.spec.params
            )
            # the layer's one time constant: the sum over its neurons
            grad_tau_mem, grad_tau_syn = (
                d.sum().to(device=out_times.device, dtype=tau_dtype) for d, tau_dtype in zip((d_mem, d_syn), ctx.tau_dtypes)
            )
        needs = ctx.needs_input_grad
        return (
            grad_times if needs[0] else None,
            grad_weight if needs[1] else None,
            grad_rec if needs[2] else None,
            grad_tau_mem if needs[3] else None,
            grad_tau_syn if needs[4] else None,
            None,
            None,
            None,
        )


def check_horizon(horizon: Any) -> float:
    """The layer horizon as a float: positive, ``inf`` allowed (``ValueError`` otherwise)."""
    return positive("horizon", horizon, allow_inf=True)


def without_self_connections(recurrent_weight: Tensor) -> Tensor:
    """``recurrent_weight`` with its diagonal set to zero (differentiably: the diagonal gets no gradient)."""
    n = recurrent_weight.shape[0]
    return recurrent_weight * (1 - torch.eye(n, dtype=recurrent_weight.dtype, device=recurrent_weight.device))


def lif_layer(
    times: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor | None = None,
    *,
    tau_mem: float | Tensor,
    tau_syn: float | Tensor,
    threshold: float | Tensor = 1.0,
    delay: Tensor | None = None,
    recurrent_delay: Tensor | None = None,
    mask: Tensor | None = None,
    horizon: float = math.inf,
    max_spikes: int | None = DEFAULT_MAX_SPIKES,
    engine: str = "auto",
    tangent_safeguard: bool = False,
    t_max: float | None = None,
) -> Tensor:
    r"""Output spike times of a layer of LIF neurons, differentiable by EventProp.

    Dynamics (paper Table 1): ``tau_mem dV/dt = -V + I``, ``tau_syn dI/dt = -I``; an
    input spike of neuron ``i`` at ``t_i`` adds ``weight[j, i]`` to ``I_j`` at
    ``t_i + delay[i]``; when ``V_j`` reaches ``threshold_j`` neuron ``j`` spikes,
    ``V_j -> V_j - threshold_j`` and (recurrent layers) ``I_m += recurrent_weight[m, j]``.
    ``V = I = 0`` at ``t = 0``.

    Gradients flow to every tensor argument that requires grad: ``times``, the weights,
    the time constants (:mod:`eventprop.model.sensitivity`), the thresholds (the layer
    fires as one with threshold 1 and weights ``W[j, :] / threshold_j``) and the delays
    (a delayed spike is an input at ``t_i + delay[i]``).

    Args:
        times: input spike times, ascending along the last axis, ``+inf`` padded
            (any non-negative times; the user's time unit).
        weight: ``(out_features, in_features)``.
        recurrent_weight: ``(out_features, out_features)`` or ``None`` for a
            feed-forward layer; its diagonal is ignored (treated as zero).
        tau_mem, tau_syn: time constants (> 0; any ratio, equal included): numbers or
            tensors of shape ``()`` or ``(out_features,)`` (one per neuron).
        threshold: firing threshold (> 0): a number or a tensor of shape ``()`` or
            ``(out_features,)``.
        delay: ``None``; an axonal delay per input neuron, ``(in_features,)``; or a
            delay per synapse, ``(out_features, in_features)`` (spikes of input ``i``
            reach neuron ``j`` at ``t_i + delay[j, i]``); finite and ``>= 0``.
        recurrent_delay: ``None`` or ``(out_features, out_features)``, finite and
            ``>= 0`` (0 allowed): a spike of ``m`` reaches ``n`` ``recurrent_delay[n, m]``
            later (recurrent layers).
        mask: ``None`` or a bool ``(out_features, in_features)``: fixed connectivity,
            only the synapses where it is true exist (the others' weights get zero
            gradient).
        horizon: no spike is emitted after it (default: none).
        max_spikes: spike budget per neuron and sample (default
            :data:`~eventprop.errors.DEFAULT_MAX_SPIKES` = 1000; ``None``: no limit);
            exceeding it raises :class:`~eventprop.SpikeLimitError` naming the sample,
            the neuron and the time reached, nothing is truncated.
        engine: ``"auto"`` (the best registered engine for the device, dtype and
            layer kind: the compiled ``"numba"`` engine for CPU tensors,
            else ``"torch"``) or a registered name (:func:`eventprop.engines.engine_names`);
            a name that cannot serve the call raises ``ValueError`` saying why.
        tangent_safeguard: at tangential spikes (``|I - theta|`` at rounding level,
            where the exact gradient's ``1 / (I - theta)`` diverges) clip that factor to
            ``1 / (tangent_tolerance * theta)``. Off by default: the gradient is then the
            exact formula's value. Either way the backward warns with
            :class:`~eventprop.errors.TangentialCrossingWarning` and their number.
        t_max: deprecated spelling of ``horizon``.

    Per-synapse delays, recurrent delays, a mask and time constants given per neuron
    (shape ``(out_features,)``, whatever their values) run as synapse lists
    (:func:`eventprop.layers.connected.lif_connections`, engines with the ``connections``
    kind).

    Shape:
        - times: ``(batch, in_features, max_in)``
        - output: ``(batch, out_features, max_out)``, ``max_out >= 1``, ``+inf`` padded

    Examples:
        >>> times = torch.tensor([[[0.0], [3.0]]], dtype=torch.float64)
        >>> weight = torch.tensor([[3.0, 2.0]], dtype=torch.float64)
        >>> lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0).shape
        torch.Size([1, 1, 1])
    """
    horizon = check_horizon(renamed("lif_layer", "t_max", t_max, "horizon", horizon, math.inf))
    if not isinstance(tangent_safeguard, bool):
        raise ValueError(f"tangent_safeguard must be True or False, got {tangent_safeguard!r}")
    max_spikes = optional_positive_int("max_spikes", max_spikes)
    check_engine_name(engine)
    check_spike_layout(times, check_matrix("weight", weight).shape[1])
    n_out, n_in = weight.shape
    if n_out == 0:
        raise ValueError("weight must have at least one output neuron (out_features >= 1), got shape (0, ...)")
    check_weight(weight, "weight", tuple(weight.shape), times, finite=False)  # values: below, or by the engine
    taus = {name: check_constant(name, value, n_out, times) for name, value in (("tau_mem", tau_mem), ("tau_syn", tau_syn))}
    threshold = check_constant("threshold", threshold, n_out, times)
    if delay is not None:
        shapes = {(n_in,): f"(in_features,) = ({n_in},)", (n_out, n_in): f"(out_features, in_features) = ({n_out}, {n_in})"}
        delay = check_delays("delay", delay, shapes, times)
    if mask is not None:
        check_mask(mask, (n_out, n_in))
    per_synapse = delay is not None and delay.dim() == 2
    # one time constant per neuron (a tensor of shape (out_features,)), whatever its values: the synapse-list engines
    per_neuron = [name for name, v in taus.items() if isinstance(v, Tensor) and v.dim() == 1]
    if recurrent_delay is not None and recurrent_weight is None:
        raise ValueError("recurrent_delay is given but recurrent_weight is not")
    listed = {
        "a delay per synapse": per_synapse,
        "recurrent delays": recurrent_delay is not None,
        "a mask": mask is not None,
        f"{' and '.join(per_neuron)} per neuron": bool(per_neuron),
    }
    if any(listed.values()):  # a synapse list (layers.connected)
        check_finite("weight", weight)
        try:
            select_engine(engine, LayerKind.CONNECTIONS, times.device, times.dtype)
        except ValueError as exc:
            what = ", ".join(k for k, v in listed.items() if v)
            raise ValueError(f"a layer with {what} runs as a synapse list (the 'connections' engine kind): {exc}") from None
        if delay is not None and not per_synapse:
            times, delay = times + delay[None, :, None], None
        if mask is not None:
            connectivity, weight = Connectivity.from_mask(mask), weight[mask]
            delay = delay[mask] if delay is not None else None
        else:
            connectivity, weight = Connectivity.dense(n_out, n_in, times.device), weight.reshape(-1)
            delay = delay.reshape(-1) if delay is not None else None
        return lif_connections(
            times, weight, connectivity, tau_mem=taus["tau_mem"], tau_syn=taus["tau_syn"], threshold=threshold,
            delay=delay, recurrent_weight=recurrent_weight, recurrent_delay=recurrent_delay, horizon=horizon,
            max_spikes=max_spikes, engine=engine, tangent_safeguard=tangent_safeguard,
        )  # fmt: skip
    kind = LayerKind.FEEDFORWARD if recurrent_weight is None else LayerKind.RECURRENT
    chosen = select_engine(engine, kind, times.device, times.dtype)
    if recurrent_weight is not None:
        check_weight(recurrent_weight, "recurrent_weight", (n_out, n_out), times, finite=False)
    if not chosen.checks_values:
        ValueChecks({"times": times}, {"weight": weight, "recurrent_weight": recurrent_weight}).check()
    if recurrent_weight is not None:
        recurrent_weight = without_self_connections(recurrent_weight)
    if delay is not None:
        times = times + delay[None, :, None]  # +inf padding stays +inf; the order along the last axis is kept
    if isinstance(threshold, Tensor):  # the same spike times as threshold 1 with the weights divided (module docstring)
        scale = threshold.to(weight.dtype).reshape(-1, 1)
        weight = weight / scale
        recurrent_weight = recurrent_weight / scale if recurrent_weight is not None else None
        threshold = 1.0
    params = NeuronParams(*(float(v.detach()) if isinstance(v, Tensor) else v for v in taus.values()), threshold)
    spec = LayerSpec(params, horizon, max_spikes, tangent_safeguard)
    tau_tensors = [value if isinstance(value, Tensor) and value.requires_grad else None for value in taus.values()]
    return _LIFFunction.apply(times, weight, recurrent_weight, *tau_tensors, chosen, kind, spec)


def readout_trajectory(
    times: Tensor, weight: Tensor, *, tau_mem: float, tau_syn: float, window: float, engine: str = "auto"
) -> VoltageTrajectory:
    r"""Trajectory of non-spiking leaky integrators driven by spike trains.

    ``V_n(t) = sum_i weight[n, i] sum_{t_i <= t} K(t - t_i)`` on ``[0, window]`` (PSP
    kernel ``K`` of :func:`eventprop.model.neuron.psp_kernel`).

    Args:
        times: input spike times (data contract).
        weight: ``(out_features, in_features)``, finite.
        tau_mem, tau_syn: time constants (> 0, any ratio).
        window: ``T`` (> 0, finite): inputs at or after ``T`` are ignored.
        engine: ``"auto"`` or a registered engine with the ``trajectory`` capability.

    Shape:
        - times: ``(batch, in_features, max_spikes)``
        - output: a trajectory of ``(batch, out_features)`` neurons
    """
    p = NeuronParams(tau_mem, tau_syn)
    window = positive("window", window)
    check_spike_layout(times, name="times")
    if check_matrix("weight", weight).shape[1] != times.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} inputs, times has {times.shape[1]} neurons")
    check_weight(weight, "weight", tuple(weight.shape), times, finite=False)
    chosen = select_engine(check_engine_name(engine), LayerKind.TRAJECTORY, times.device, times.dtype)
    if not chosen.checks_values:
        ValueChecks({"times": times}, {"weight": weight}).check()
    return chosen.trajectory(times, None, weight, None, p, window)


def lif_trajectory(
    times: Tensor,
    spikes: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor | None = None,
    *,
    tau_mem: float,
    tau_syn: float,
    threshold: float = 1.0,
    window: float,
    engine: str = "auto",
) -> VoltageTrajectory:
    r"""Trajectory of a layer of LIF neurons, given its input and its own spikes.

    ``spikes`` must be the output of :func:`lif_layer` (or :class:`eventprop.LIFLayer`)
    for the same ``times``, weights and constants; its spike times carry their exact
    EventProp gradients, so a loss of this trajectory is differentiated exactly (see
    :mod:`eventprop.model.trajectory`). ``V`` resets by ``-threshold`` at each own
    spike; with ``recurrent_weight`` each layer spike of neuron ``m`` also adds
    ``recurrent_weight[n, m]`` (diagonal ignored, as in the layer) to ``I_n``.

    Args:
        times: the layer's input spike times.
        spikes: the layer's output spike times.
        weight: ``(out_features, in_features)``.
        recurrent_weight: ``(out_features, out_features)`` or ``None``.
        tau_mem, tau_syn, threshold: as in the layer.
        window: ``T`` (> 0, finite): events at or after ``T`` are ignored.
        engine: ``"auto"`` or a registered engine with the ``trajectory`` capability.

    Shape:
        - times: ``(batch, in_features, max_in)``
        - spikes: ``(batch, out_features, max_out)``
        - output: a trajectory of ``(batch, out_features)`` neurons
    """
    p = NeuronParams(tau_mem, tau_syn, threshold)
    window = positive("window", window)
    check_spike_layout(times, name="times")
    check_weight(check_matrix("weight", weight), "weight", tuple(weight.shape), times, finite=False)
    n_out, n_in = weight.shape
    check_spike_layout(spikes, n_neurons=n_out, name="spikes")
    if times.shape[1] != n_in or spikes.shape[0] != times.shape[0]:
        raise ValueError(f"times must have shape (batch={spikes.shape[0]}, {n_in}, max_in), got {tuple(times.shape)}")
    if spikes.dtype != times.dtype or spikes.device != times.device:
        raise ValueError("spikes must match times in dtype and device")
    if recurrent_weight is not None:
        check_weight(recurrent_weight, "recurrent_weight", (n_out, n_out), times, finite=False)
    chosen = select_engine(check_engine_name(engine), LayerKind.TRAJECTORY, times.device, times.dtype)
    if not chosen.checks_values:
        ValueChecks({"times": times, "spikes": spikes}, {"weight": weight, "recurrent_weight": recurrent_weight}).check()
    if recurrent_weight is not None:
        recurrent_weight = without_self_connections(recurrent_weight)
    return chosen.trajectory(times, spikes, weight, recurrent_weight, p, window)
