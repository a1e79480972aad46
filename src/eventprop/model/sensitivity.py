r"""Gradients of the time constants: the explicit sensitivity of ``V`` at each spike.

A spiking layer's output times are defined implicitly: spike ``k`` of neuron ``j`` is
at ``t_k`` where ``F_k = V_j(t_k^-) - theta = 0``, ``V_j`` being an explicit function
of the time constants and of the earlier event times (input spikes, the layer's own
spikes: their resets and, in a recurrent layer, their recurrent inputs). The implicit
function theorem over all spikes, ordered in time, gives for any parameter ``p`` of
the dynamics::

    dL/dp = sum_k mu_k dF_k/dp|_explicit,    mu_k = -(dL/dt_k) / (dV_j/dt(t_k^-)),

where ``dL/dt_k`` is the total derivative (through every later spike) and
``dF_k/dp|_explicit`` differentiates ``V_j(t_k^-)`` with every event time held fixed.
EventProp computes exactly these ``mu_k``: the jump of ``lambda_V`` at spike ``k``
(:func:`~eventprop.model.neuron.adjoint_jump`) is ``J_k = -mu_k / tau_mem`` (its
weight gradient ``dL/dw_ji = -tau_syn sum lambda_I(t_i)`` is the same sum with
``dF_k/dw_ji = sum_{t_i < t_k} K(t_k - t_i)``), so every engine returns them
(:class:`~eventprop.engines.base.LayerGradients` ``.jumps``).

With the rates ``a = 1/tau_mem``, ``b = 1/tau_syn``, the voltage just before spike
``k`` is, for events ``e`` before it (current jump ``A_e``: ``W[j, i]`` of an input,
``R[j, m]`` of a recurrent spike) and the neuron's own earlier spikes ``p``::

    V_j(t_k^-) = sum_e A_e K(t_k - t_e) - theta sum_p exp(-a (t_k - t_p)),
    K(s) = a s exp(-b s) psi((a - b) s),      psi(x) = (1 - exp(-x)) / x,

so that (:func:`psp_kernel_rate_derivatives` evaluates the kernel's derivatives for
every ratio, equal time constants included)::

    dL/da = sum_e A_e G_a(t_e) + theta sum_p M_a(t_p),      dL/db = sum_e A_e G_b(t_e),
    G_x(t) = sum_{k: t_k > t} mu_k dK/dx(t_k - t),
    M_a(t) = sum_{k: t_k > t} mu_k (t_k - t) exp(-a (t_k - t)),

with the sums over the spikes of the neuron the event reaches, and
``dL/dtau_mem = -a^2 dL/da``, ``dL/dtau_syn = -b^2 dL/db``. The traces are carried
backwards from event to event in closed form, like ``lambda_V`` and ``lambda_I``: over
a gap ``u`` (with ``Q(t) = sum mu_k K(t_k - t)`` and ``M(t) = sum mu_k exp(-a (t_k - t))``),
from ``K(s + u) = K(u) exp(-a s) + exp(-b u) K(s)``::

    M   <- exp(-a u) M                       M_a <- exp(-a u) (M_a + u M)
    Q   <- K(u) M + exp(-b u) Q
    G_a <- dK/da(u) M - K(u) M_a + exp(-b u) G_a
    G_b <- dK/db(u) M - u exp(-b u) Q + exp(-b u) G_b

and at spike ``k`` of the neuron ``M += mu_k`` (the others are 0 at ``u = 0``). The
work is that of one more backward pass, ``O((events + spikes) x neurons)`` per sample;
the compiled pass is :func:`eventprop.engines.numba_cpu.time_constants.time_constant_gradients`.

The threshold needs none of this: ``V`` and ``I`` scale with ``theta``, so a layer with
threshold ``theta_j`` and weights ``W[j, :]``, ``R[j, :]`` fires at the same times as
one with threshold 1 and weights ``W[j, :] / theta_j``, ``R[j, :] / theta_j``; the
layers compute it so, and autograd gives ``dL/dtheta`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .neuron import NeuronParams

__all__ = ["psi", "psi_derivative", "psp_kernel_rate_derivatives"]

#: Below this argument the series of :func:`psi_derivative` is summed (cancellation above is at most 11x).
SERIES_BELOW = 0.5
#: Terms of that series: the first omitted is below 0.5**20 / 22! ~ 1e-27 of the sum.
SERIES_TERMS = 22


def psi(x: Tensor) -> Tensor:
    """``psi(x) = (1 - exp(-x)) / x`` for ``x >= 0`` (``psi(0) = 1``)."""
    zero = x == 0
    safe = torch.where(zero, torch.ones_like(x), x)
    return torch.where(zero, torch.ones_like(x), -torch.expm1(-safe) / safe)


def psi_derivative(x: Tensor) -> Tensor:
    r"""``psi'(x) = (exp(-x) (1 + x) - 1) / x^2`` for ``x >= 0`` (``psi'(0) = -1/2``).

    Below :data:`SERIES_BELOW` the series ``sum_{n >= 2} (-1)^(n+1) (n - 1) x^(n-2) / n!``.
    """
    small = x < SERIES_BELOW
    xs = torch.where(small, x, torch.zeros_like(x))
    total = torch.zeros_like(x)
    term = torch.full_like(x, 0.5)  # x^(n-2) / n! at n = 2
    for n in range(2, 2 + SERIES_TERMS):
        total = total + (-1) ** (n + 1) * (n - 1) * term
        term = term * xs / (n + 1)
    xl = torch.where(small, torch.ones_like(x), x)
    direct = (torch.exp(-xl) * (1 + xl) - 1) / (xl * xl)
    return torch.where(small, total, direct)


def psp_kernel_rate_derivatives(s: Tensor, p: NeuronParams) -> tuple[Tensor, Tensor]:
    r"""``(dK/da, dK/db)`` of the PSP kernel at ``s >= 0``, ``a = 1/tau_mem``, ``b = 1/tau_syn``.

    ``K(s) = a s exp(-min(a, b) s) psi(|a - b| s)``; with ``E = exp(-min(a, b) s)``,
    ``x = |a - b| s``::

        a >= b:  dK/da = s E (psi + a s psi'),             dK/db = -a s^2 E (psi + psi')
        a <  b:  dK/da = s E (psi - a s (psi + psi')),     dK/db = a s^2 E psi'

    (both branches agree at ``a = b``). Multiply by ``-a^2`` (``-b^2``) for the
    derivative with respect to ``tau_mem`` (``tau_syn``).
    """
    a, b = 1.0 / p.tau_mem, 1.0 / p.tau_syn
    e = torch.exp(-min(a, b) * s)
    x = abs(a - b) * s
    ps, dps = psi(x), psi_derivative(x)
    if a >= b:
        return s * e * (ps + a * s * dps), -a * s * s * e * (ps + dps)
    return s * e * (ps - a * s * (ps + dps)), a * s * s * e * dps
