"""Functional API: LIF layers as autograd Functions from input to output spike times.

Each layer is one :class:`torch.autograd.Function` whose forward is the exact
simulation and whose backward is EventProp (see :mod:`eventprop.feedforward` and
:mod:`eventprop.recurrent`). The backward returns ``dL/dW`` and ``dL/d input_times``,
so autograd chains layers into exactly the network's EventProp gradient. Every
parameter is an explicit argument: nothing escapes the gradient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._feedforward_numba import feedforward_backward_numba, feedforward_forward_numba, numba_available
from .feedforward import feedforward_backward, feedforward_forward
from .neuron import NeuronParams
from .recurrent import RecurrentTape, recurrent_backward, recurrent_forward
from .spikes import EventList, check_spike_layout, check_spike_values

__all__ = ["lif_layer", "validate_options", "ENGINES"]

ENGINES = ("auto", "torch", "numba")


def _use_numba(engine: str, times: Tensor) -> bool:
    """``auto``: the compiled kernel for CPU tensors when numba is installed, else PyTorch."""
    if engine == "torch":
        return False
    if engine == "numba":
        if not numba_available():
            raise ValueError("engine='numba' needs the numba package (pip install numba)")
        if times.device.type != "cpu":
            raise ValueError(f"engine='numba' runs on CPU tensors only, times is on {times.device}")
        return True
    return numba_available() and times.device.type == "cpu"


class _FeedForwardLIF(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, times: Tensor, weight: Tensor, p: NeuronParams, t_max: float, max_spikes: int | None, compiled: bool
    ) -> Tensor:
        simulate = feedforward_forward_numba if compiled else feedforward_forward
        out_times, out_current, events = simulate(times, weight, p, t_max, max_spikes)
        ctx.save_for_backward(weight, events.times, events.source, events.position, out_times, out_current)
        ctx.p = p
        ctx.input_shape = times.shape
        ctx.compiled = compiled
        return out_times

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        weight, ev_times, ev_source, ev_position, out_times, out_current = ctx.saved_tensors
        events = EventList(ev_times, ev_source, ev_position)
        adjoint = feedforward_backward_numba if ctx.compiled else feedforward_backward
        grad_times, grad_weight = adjoint(
            grad_out, weight, events, out_times, out_current, ctx.p, ctx.input_shape
        )
        return (
            grad_times if ctx.needs_input_grad[0] else None,
            grad_weight if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
            None,
        )


class _RecurrentLIF(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        times: Tensor,
        weight: Tensor,
        recurrent_weight: Tensor,
        p: NeuronParams,
        t_max: float,
        max_spikes: int | None,
    ) -> Tensor:
        out_times, events, tape = recurrent_forward(times, weight, recurrent_weight, p, t_max, max_spikes)
        ctx.save_for_backward(weight, recurrent_weight, events.times, events.source, events.position, *tape.tensors())
        ctx.p = p
        ctx.input_shape = times.shape
        return out_times

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        weight, recurrent_weight, ev_times, ev_source, ev_position, *tape_parts = ctx.saved_tensors
        events = EventList(ev_times, ev_source, ev_position)
        grad_times, grad_weight, grad_rec = recurrent_backward(
            grad_out, weight, recurrent_weight, events, RecurrentTape(*tape_parts), ctx.p, ctx.input_shape
        )
        return (
            grad_times if ctx.needs_input_grad[0] else None,
            grad_weight if ctx.needs_input_grad[1] else None,
            grad_rec if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


def validate_options(t_max: float, max_spikes: int | None) -> None:
    """Raise ``ValueError`` for a bad horizon ``t_max`` or spike cap ``max_spikes``."""
    if isinstance(t_max, bool) or not isinstance(t_max, (int, float)) or math.isnan(t_max) or t_max <= 0:
        raise ValueError(f"t_max must be a positive number or inf, got {t_max!r}")
    if max_spikes is not None and (isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or max_spikes < 1):
        raise ValueError(f"max_spikes must be a positive int or None, got {max_spikes!r}")


def _check_weight(weight: Tensor, name: str, shape: tuple[int, int], times: Tensor) -> None:
    if not isinstance(weight, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if tuple(weight.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(weight.shape)}")
    if weight.dtype != times.dtype:
        raise ValueError(f"{name} has dtype {weight.dtype} but times has dtype {times.dtype}")
    if weight.device != times.device:
        raise ValueError(f"{name} is on {weight.device} but times is on {times.device}")
    if not _all_finite(weight):
        raise ValueError(f"{name} contains NaN or inf")


def _all_finite(x: Tensor) -> bool:
    """``torch.isfinite(x).all()``; through a numpy view for CPU float32/float64 tensors,
    which takes a third of the time of the two tensor operations (this runs every call)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(x.detach().numpy()).all())
    return bool(torch.isfinite(x).all())


def lif_layer(
    times: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor | None = None,
    *,
    tau_mem: float,
    tau_syn: float,
    threshold: float = 1.0,
    t_max: float = math.inf,
    max_spikes: int | None = None,
    engine: str = "auto",
) -> Tensor:
    r"""Output spike times of a layer of LIF neurons, differentiable by EventProp.

    Dynamics (paper Table 1): ``tau_mem dV/dt = -V + I``, ``tau_syn dI/dt = -I``; an
    input spike of neuron ``i`` adds ``weight[j, i]`` to ``I_j``; when ``V_j`` reaches
    ``threshold`` neuron ``j`` spikes, ``V_j -> V_j - threshold`` and (recurrent layers)
    ``I_m += recurrent_weight[m, j]``. ``V = I = 0`` at ``t = 0``.

    Args:
        times: ``(batch, in_features, max_in)`` input spike times, ascending along the
            last axis, ``+inf`` padded (any non-negative times; the user's time unit).
        weight: ``(out_features, in_features)``.
        recurrent_weight: ``(out_features, out_features)`` or ``None`` for a
            feed-forward layer; its diagonal is ignored (treated as zero).
        tau_mem, tau_syn: time constants (> 0; any ratio, equal included).
        threshold: firing threshold (> 0).
        t_max: horizon: no spike is emitted after it.
        max_spikes: optional cap on spikes per neuron; exceeding it raises
            :class:`~eventprop.feedforward.SpikeLimitError`, nothing is truncated.
        engine: feed-forward layers only: ``"torch"`` (vectorised PyTorch, any
            device), ``"numba"`` (compiled CPU kernel, same results) or ``"auto"``
            (numba for CPU tensors when it is installed). Recurrent layers always
            use the PyTorch event loop.

    Returns:
        ``(batch, out_features, max_out)`` output spike times, ``max_out >= 1``.
    """
    p = NeuronParams(tau_mem, tau_syn, threshold)
    validate_options(t_max, max_spikes)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError("weight must be a 2-d tensor of shape (out_features, in_features)")
    check_spike_layout(times, weight.shape[1])
    n_out = weight.shape[0]
    _check_weight(weight, "weight", (n_out, weight.shape[1]), times)
    t_max = float(t_max)
    compiled = recurrent_weight is None and _use_numba(engine, times)
    if not compiled:  # the compiled engine checks the values inside its event-sorting kernel
        check_spike_values(times)
    if recurrent_weight is None:
        return _FeedForwardLIF.apply(times, weight, p, t_max, max_spikes, compiled)
    _check_weight(recurrent_weight, "recurrent_weight", (n_out, n_out), times)
    off_diagonal = 1 - torch.eye(n_out, dtype=times.dtype, device=times.device)
    return _RecurrentLIF.apply(times, weight, recurrent_weight * off_diagonal, p, t_max, max_spikes)
