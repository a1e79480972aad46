r"""The mathematics of one leaky integrate-and-fire neuron between events.

Everything here is elementwise and broadcasts over any leading shape; the engines
call it on ``(batch, neurons)`` or ``(batch, neurons, events)`` tensors.

Model (paper Table 1), between events::

    tau_mem dV/dt = -V + I,        tau_syn dI/dt = -I.

From a state ``(v0, i0)`` at local time ``s = 0`` the flow is closed-form::

    I(s) = i0 exp(-s / tau_syn)
    V(s) = v0 exp(-s / tau_mem) + i0 K(s)

with the post-synaptic potential kernel (response of ``V`` to a unit current jump)::

    K(s) = tau_syn / (tau_syn - tau_mem) (exp(-s/tau_syn) - exp(-s/tau_mem))
         = (s / tau_mem) exp(-s / tau_slow) phi(-s |1/tau_syn - 1/tau_mem|),

where ``tau_slow = max(tau_mem, tau_syn)`` and ``phi(x) = expm1(x) / x`` (``phi(0) = 1``).
The second form is the one evaluated: it never overflows, loses no precision when the
time constants are close, and is exactly the limit ``(s / tau) exp(-s / tau)`` when
``tau_mem == tau_syn``.

The adjoint (paper Table 2) runs in reverse time ``u``. With ``l_V = 0``::

    tau_mem d lambda_V/du = -lambda_V,     tau_syn d lambda_I/du = -lambda_I + lambda_V,

so from ``(lv0, li0)`` at ``u = 0``::

    lambda_V(u) = lv0 exp(-u / tau_mem)
    lambda_I(u) = li0 exp(-u / tau_syn) + lv0 (tau_mem / tau_syn) K(u).

``V`` has at most one extremum between events (where ``I = V``); threshold crossings
are bracketed with it and refined by Newton's method with a bisection safeguard to
machine precision. Times are in the user's unit (the paper uses ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..validation import positive

__all__ = [
    "NeuronParams",
    "MAX_TAU_RATIO",
    "psp_kernel",
    "free_voltage",
    "free_current",
    "adjoint_flow",
    "adjoint_jump",
    "tangent_tolerance",
    "voltage_extremum",
    "crossing_bracket",
    "solve_crossing",
    "GRADIENT_TOLERANCE",
    "first_crossing",
]


#: The largest ratio of the two time constants (either way round) a layer accepts.
MAX_TAU_RATIO = 1e307


@dataclass(frozen=True)
class NeuronParams:
    """Parameters shared by all neurons of a layer.

    Attributes:
        tau_mem: membrane time constant (> 0, time unit).
        tau_syn: synaptic time constant (> 0, time unit).
        threshold: firing threshold ``theta`` (> 0, voltage unit); reset is by
            subtraction of ``theta``.

    The two time constants must lie within ``MAX_TAU_RATIO`` (1e307) of each other:
    beyond it ``tau_mem / tau_syn`` overflows float64 (the ``ValueError`` says so).
    """

    tau_mem: float
    tau_syn: float
    threshold: float = 1.0

    def __post_init__(self) -> None:
        for name in ("tau_mem", "tau_syn", "threshold"):
            object.__setattr__(self, name, positive(name, getattr(self, name)))
        ratio = self.tau_mem / self.tau_syn
        if not 1 / MAX_TAU_RATIO <= ratio <= MAX_TAU_RATIO:
            raise ValueError(
                f"tau_mem / tau_syn = {self.tau_mem:g} / {self.tau_syn:g} is outside [1e-307, 1e307]: the time "
                "constants must lie within a factor 1e307 of each other (their ratio would overflow float64)"
            )

    @property
    def tau_slow(self) -> float:
        """The larger of the two time constants."""
        return max(self.tau_mem, self.tau_syn)

    @property
    def rate_gap(self) -> float:
        """``|1/tau_syn - 1/tau_mem|`` (0 when the time constants are equal)."""
        return abs(1.0 / self.tau_syn - 1.0 / self.tau_mem)


def _phi(x: Tensor) -> Tensor:
    """``expm1(x) / x`` with ``phi(0) = 1``, for ``x <= 0``."""
    zero = x == 0
    safe = torch.where(zero, torch.ones_like(x), x)
    return torch.where(zero, torch.ones_like(x), torch.expm1(safe) / safe)


def psp_kernel(s: Tensor, p: NeuronParams) -> Tensor:
    """Voltage response ``K(s)`` to a unit current jump at ``s = 0`` (``s >= 0``)."""
    return (s / p.tau_mem) * torch.exp(-s / p.tau_slow) * _phi(-s * p.rate_gap)


def free_current(i0: Tensor, s: Tensor, p: NeuronParams) -> Tensor:
    """``I(s) = i0 exp(-s / tau_syn)``."""
    return i0 * torch.exp(-s / p.tau_syn)


def free_voltage(v0: Tensor, i0: Tensor, s: Tensor, p: NeuronParams) -> Tensor:
    """``V(s) = v0 exp(-s / tau_mem) + i0 K(s)`` for finite ``s >= 0``."""
    return v0 * torch.exp(-s / p.tau_mem) + i0 * psp_kernel(s, p)


def adjoint_flow(lv0: Tensor, li0: Tensor, u: Tensor, p: NeuronParams) -> tuple[Tensor, Tensor]:
    """Propagate ``(lambda_V, lambda_I)`` backwards in time by ``u >= 0`` (finite).

    Returns ``(lambda_V(u), lambda_I(u))`` as in the module docstring.
    """
    lv = lv0 * torch.exp(-u / p.tau_mem)
    li = li0 * torch.exp(-u / p.tau_syn) + lv0 * (p.tau_mem / p.tau_syn) * psp_kernel(u, p)
    return lv, li


def tangent_tolerance(dtype: torch.dtype) -> float:
    """Relative size of ``|I - theta|`` below which a spike is tangential: ``8 sqrt(eps)``.

    Near a tangential crossing ``V`` is flat, and a relative rounding error ``eps`` in
    ``V`` moves the root by about ``sqrt(eps)`` of the time constants; ``I - theta`` at
    the computed root is then of that order, and so is the relative error of the
    ``1 / (I - theta)`` factor of the gradient (see
    :class:`~eventprop.errors.TangentialCrossingWarning`).
    """
    return 8 * math.sqrt(torch.finfo(dtype).eps)


def adjoint_jump(
    lambda_v: Tensor, sent_back: Tensor | float, g: Tensor, current: Tensor, p: NeuronParams, clip: float = 0.0
) -> Tensor:
    r"""Jump of ``lambda_V`` of a neuron at its own spike (paper eq. 30a, reverse time).

    With values just after the spike in forward time, ``g = dL/dt_k`` the direct loss
    term, ``sent_back = sum_m R[m, n] (lambda_V[m] - lambda_I[m])`` what the recurrent
    targets send (0 in a feed-forward layer) and ``current = I_n`` at the spike
    (``tau_mem dV/dt = I_n - theta`` just before it, since ``V = theta`` there)::

        Delta lambda_V = (theta lambda_V + sent_back + g) / (I_n - theta)

    ``clip > 0`` (the tangent safeguard) bounds the denominator away from zero:
    ``|I_n - theta|`` below ``clip`` counts as ``clip`` (sign kept). Without it the
    exact expression is used, except at an exactly zero denominator (a double root,
    where the exact value is infinite): there it counts as
    ``tangent_tolerance * theta``, so the gradient stays finite, never a division error
    or NaN (the layer's :class:`~eventprop.errors.TangentialCrossingWarning` reports
    these spikes either way). The compiled engines evaluate the same expression in
    scalar code.
    """
    numerator = p.threshold * lambda_v + sent_back + g
    denominator = current - p.threshold
    if clip > 0:
        small = denominator.abs() < clip
        denominator = torch.where(small, torch.where(denominator < 0, -clip, clip), denominator)
    else:
        denominator = torch.where(denominator == 0, tangent_tolerance(denominator.dtype) * p.threshold, denominator)
    return numerator / denominator


def count_tangential(current: Tensor, spiked: Tensor, p: NeuronParams) -> int:
    """Number of spikes (``spiked``) with ``|I - theta| <= tangent_tolerance * theta``."""
    tol = tangent_tolerance(current.dtype) * p.threshold
    if current.device.type == "cpu":  # through numpy: this runs on every backward
        c = current.detach().numpy()
        return int(np.count_nonzero((np.abs(c - p.threshold) <= tol) & spiked.numpy()))
    return int(((current - p.threshold).abs() <= tol).logical_and_(spiked).sum())


def voltage_extremum(v0: Tensor, i0: Tensor, p: NeuronParams) -> Tensor:
    """Local time ``s* > 0`` of the single extremum of ``V`` (``+inf`` if none).

    ``dV/ds = 0`` where ``I(s) = V(s)``. With ``q = 1 - v0 / i0`` and
    ``eps = (tau_syn - tau_mem) / tau_mem``::

        s* = tau_syn q log1p(eps q) / (eps q)

    which exists when ``q > 0`` and ``1 + eps q > 0``; it is a maximum when
    ``i0 > v0`` (V rising at ``s = 0``) and a minimum otherwise. For equal time
    constants this is ``tau (1 - v0 / i0)``.
    """
    nonzero = i0 != 0
    q = torch.where(nonzero, (i0 - v0) / torch.where(nonzero, i0, torch.ones_like(i0)), torch.zeros_like(i0))
    eps = (p.tau_syn - p.tau_mem) / p.tau_mem
    y = eps * q
    exists = nonzero & (q > 0) & (1 + y > 0)
    y_safe = torch.where(exists & (y != 0), y, torch.ones_like(y))
    psi = torch.where(y != 0, torch.log1p(y_safe) / y_safe, torch.ones_like(y))
    s_star = p.tau_syn * q * psi
    return torch.where(exists, s_star, torch.full_like(s_star, math.inf))


def crossing_bracket(
    v0: Tensor, i0: Tensor, length: Tensor, p: NeuronParams
) -> tuple[Tensor, Tensor, Tensor]:
    """Find whether ``V`` reaches ``theta`` within ``[0, length]`` and bracket the first crossing.

    Args:
        v0, i0: state at the start of the interval (``v0 < theta`` expected).
        length: interval length (``>= 0``, may be ``+inf``).

    Returns:
        ``(crosses, lo, hi)``: a boolean mask and a bracket on which ``V`` increases
        with ``V(lo) < theta <= V(hi)`` wherever ``crosses`` holds.
    """
    s_ext = voltage_extremum(v0, i0, p)
    inside = s_ext < length
    is_max = inside & (i0 > v0)
    is_min = inside & ~(i0 > v0)
    hi = torch.where(is_max, s_ext, length)
    lo = torch.where(is_min, s_ext, torch.zeros_like(s_ext))
    finite_hi = torch.isfinite(hi)
    v_hi = free_voltage(v0, i0, torch.where(finite_hi, hi, torch.zeros_like(hi)), p)
    # V(+inf) = 0 < theta: an unbounded interval crosses only before its maximum.
    crosses = finite_hi & (v_hi >= p.threshold)
    return crosses, lo, hi


#: A root estimate ``x`` with ``|V - theta|`` at rounding level is accepted when the
#: relative error it implies for the crossing's slope, hence for the gradient
#: (``|V - theta| |V''| / V'^2``: the time error ``|V - theta| / V'`` times
#: ``|V''| / V'``), is below ``GRADIENT_TOLERANCE``; near a tangential crossing (``V'``
#: small) the root is refined further, down to the time tolerance.
GRADIENT_TOLERANCE = 1e-10


def solve_crossing(
    v0: Tensor, i0: Tensor, lo: Tensor, hi: Tensor, p: NeuronParams, max_iter: int = 100
) -> Tensor:
    """Root of ``V(s) = theta`` in ``[lo, hi]`` to machine precision.

    Newton's method on ``f(s) = V(s) - theta`` with ``tau_mem f'(s) = I(s) - V(s)``,
    falling back to bisection whenever a step leaves the bracket or is not below half
    the previous step (as rtsafe does), so the bracket shrinks at every iteration and
    the steps at least geometrically. Converged when ``|f|`` is at rounding level and either the
    Newton correction ``|f| / f'`` is below the time tolerance or the gradient error it
    implies is below ``GRADIENT_TOLERANCE``, or else when the bracket is below the time
    tolerance (a near-tangential crossing, where ``V`` is flat). Never on the step size
    alone: near a maximum of ``V`` a tiny step does not mean a nearby root, and where
    ``V`` rises like a step (``tau_mem`` far below ``tau_syn``) a tiny Newton
    correction does not either. All inputs share one
    shape; entries must satisfy ``V(lo) < theta <= V(hi)`` (entries that do not are
    returned clamped to the bracket).
    """
    if lo.numel() == 0:
        return lo.clone()
    theta = p.threshold
    eps = torch.finfo(lo.dtype).eps
    x = 0.5 * (lo + hi)
    f_tol = 8 * eps * (theta + v0.abs() + i0.abs())
    t_tol = 16 * eps * (x.abs() + min(p.tau_mem, p.tau_syn))
    done = torch.zeros_like(x, dtype=torch.bool)
    step_last = torch.full_like(x, math.inf)  # the previous step
    for _ in range(max_iter):
        v = free_voltage(v0, i0, x, p)
        i = free_current(i0, x, p)
        f = v - theta
        slope = (i - v) / p.tau_mem
        curvature = (-i / p.tau_syn - slope) / p.tau_mem
        rising = slope > 0
        size = f.abs()
        accept = rising & (size <= f_tol) & (
            (size <= slope * t_tol) | (size * curvature.abs() <= GRADIENT_TOLERANCE * slope * slope)
        )
        done = done | accept
        below = f < 0
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        width = hi - lo
        newton = x - f / torch.where(rising, slope, torch.ones_like(slope))
        ok = rising & (newton >= lo) & (newton <= hi) & ((newton - x).abs() <= 0.5 * step_last)
        x_new = torch.where(ok, newton, 0.5 * (lo + hi))
        step_last = (x_new - x).abs()
        x = torch.where(done, x, x_new)
        done = done | (width <= t_tol)
        if bool(done.all()):
            break
    return x


def first_crossing(v0: Tensor, i0: Tensor, length: Tensor, p: NeuronParams) -> Tensor:
    """Local time of the first threshold crossing in ``[0, length]``, ``+inf`` if none."""
    crosses, lo, hi = crossing_bracket(v0, i0, length, p)
    s = torch.full_like(v0, math.inf)
    if bool(crosses.any()):
        s[crosses] = solve_crossing(v0[crosses], i0[crosses], lo[crosses], hi[crosses], p)
    return s
