r"""Time-stepped surrogate-gradient baseline (BPTT), written the way snnTorch-like libraries do.

The same LIF model as the library (``tau_mem dV/dt = -V + I``, ``tau_syn dI/dt = -I``,
reset by subtraction), on a grid of step ``dt`` over ``[0, t_end]``, with the exact
propagator of the linear dynamics over one step (so the only discretisation is of
the spike times)::

    I <- I + x_k W^T                          input spikes of step k (binned to k dt)
    V <- a_m V + kappa I,  I <- a_s I         a = exp(-dt / tau), kappa = K(dt)
    S  = H(V - theta)                         surrogate dS/dV = 1 / (1 + slope |V - theta|)^2
    V <- V - theta S                          (reset detached, as usual)

Hidden spikes of step k reach the output layer at the end of that step. The output's
first-spike time is ``sum_k t_{k+1} S_k prod_{k' < k} (1 - S_k')`` (``t_end`` when
silent), differentiable through the surrogate, and the loss is the same first-spike
cross-entropy as for EventProp. Autograd stores every step: memory grows with
``t_end / dt``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import common  # noqa: F401  (puts src/ on the path)
from eventprop.model.neuron import NeuronParams, psp_kernel


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid (SuperSpike) surrogate backward."""

    @staticmethod
    def forward(ctx, v_minus_theta: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v_minus_theta)
        ctx.slope = slope
        return (v_minus_theta >= 0).to(v_minus_theta.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (1 + ctx.slope * x.abs()) ** 2, None


def bin_inputs(times: Tensor, dt: float, n_steps: int) -> Tensor:
    """``(n_steps, batch, neurons)`` spike counts per step from ``(batch, neurons, slots)`` times."""
    batch, neurons, _ = times.shape
    counts = torch.zeros(n_steps, batch, neurons, dtype=times.dtype)
    finite = torch.isfinite(times) & (times < n_steps * dt)
    b, n, _ = torch.nonzero(finite, as_tuple=True)
    k = torch.floor(times[finite] / dt).long().clamp(max=n_steps - 1)
    counts.index_put_((k, b, n), torch.ones_like(k, dtype=times.dtype), accumulate=True)
    return counts


def first_spike_times(
    times: Tensor,
    w1: Tensor,
    w2: Tensor,
    *,
    dt: float,
    t_end: float,
    tau_mem: float,
    tau_syn: float,
    threshold: float = 1.0,
    slope: float = 10.0,
) -> tuple[Tensor, Tensor]:
    """Differentiable output first-spike times ``(batch, out)`` and hidden spike counts ``(batch,)``."""
    n_steps = int(round(t_end / dt))
    x = bin_inputs(times, dt, n_steps)
    batch = times.shape[0]
    a_m, a_s = math.exp(-dt / tau_mem), math.exp(-dt / tau_syn)
    kappa = float(psp_kernel(torch.tensor(dt, dtype=torch.float64), NeuronParams(tau_mem, tau_syn)))
    dtype = times.dtype
    v_h = torch.zeros(batch, w1.shape[0], dtype=dtype)
    i_h = torch.zeros_like(v_h)
    v_o = torch.zeros(batch, w2.shape[0], dtype=dtype)
    i_o = torch.zeros_like(v_o)
    not_yet = torch.ones_like(v_o)
    t_first = torch.zeros_like(v_o)
    hidden_spikes = torch.zeros(batch, dtype=dtype)
    for k in range(n_steps):
        i_h = i_h + x[k] @ w1.T
        v_h = a_m * v_h + kappa * i_h
        i_h = a_s * i_h
        s_h = _SpikeFn.apply(v_h - threshold, slope)
        v_h = v_h - threshold * s_h.detach()
        v_o = a_m * v_o + kappa * i_o
        i_o = a_s * i_o
        s_o = _SpikeFn.apply(v_o - threshold, slope)
        v_o = v_o - threshold * s_o.detach()
        t_first = t_first + (k + 1) * dt * s_o * not_yet
        not_yet = not_yet * (1 - s_o)
        i_o = i_o + s_h @ w2.T
        hidden_spikes = hidden_spikes + s_h.detach().sum(1)
    return t_first + t_end * not_yet, hidden_spikes
