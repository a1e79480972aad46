r"""The gradients of a spiking layer's time constants: one compiled reverse pass.

Evaluates the formulas of :mod:`eventprop.model.sensitivity` from what a layer's
forward and backward leave: the input events, the weights, the output spikes and the
jumps ``J_k`` of ``lambda_V`` at them (``mu_k = -tau_mem J_k``). Per sample, the
input events and the layer's spikes are visited in reverse time order; the traces
``M, M_a, Q, G_a, G_b`` of every neuron are carried from event to event with shared
closed-form factors, and each event adds its current jump times ``G_a, G_b`` of the
neurons it reaches (an input: all; a recurrent spike: all others, through ``R``), each
own spike ``theta M_a``. Work is ``O((events + spikes) x neurons)`` per sample, in
parallel over batch chunks whose number depends on the batch size only (so the sum
does not depend on the number of threads).

Any engine's results can be passed (tensors on another device are copied to the CPU:
one host synchronisation per layer and backward).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...model.neuron import NeuronParams
from ...model.sensitivity import SERIES_BELOW, SERIES_TERMS
from .chunks import chunk_count
from .events import input_events, to_numpy
from .scalar import _TM, _TS, _THETA, _constants, _flow, require_numba, source_sha256
from .threads import launch

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["time_constant_gradients"]

#: SHA-256 of :mod:`.scalar`'s source these kernels were checked against (see there).
SCALAR_SHA256 = "001c2940016bc489ef8bb7f3058a54959c0ba7e03dfa5f569f15739de0fca4c8"
_CACHE = source_sha256() == SCALAR_SHA256


if numba is not None:

    @njit(cache=_CACHE)
    def _psi_pair(x):
        # (psi(x), psi'(x)) for x >= 0 (model.sensitivity.psi and psi_derivative)
        if x == 0:
            return 1.0, -0.5
        psi = -math.expm1(-x) / x
        if x >= SERIES_BELOW:
            return psi, (math.exp(-x) * (1.0 + x) - 1.0) / (x * x)
        total = 0.0
        term = 0.5
        sign = -1.0
        for n in range(2, 2 + SERIES_TERMS):
            total += sign * (n - 1) * term
            term *= x / (n + 1)
            sign = -sign
        return psi, total

    @njit(cache=_CACHE)
    def _kernel_derivatives(u, a, b):
        # (dK/da, dK/db) at u >= 0 (model.sensitivity.psp_kernel_rate_derivatives)
        e = math.exp(-min(a, b) * u)
        ps, dps = _psi_pair(abs(a - b) * u)
        if a >= b:
            return u * e * (ps + a * u * dps), -a * u * u * e * (ps + dps)
        return u * e * (ps - a * u * (ps + dps)), a * u * u * e * dps

    @njit(cache=_CACHE)
    def _sample(b, part, ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb, sp_t, sp_j, m, m_a, q, g_a, g_b):
        # the reverse pass of sample b into the partial sums ga[part], gb[part]
        n = w_t.shape[1]
        slots = out_t.shape[2]
        recurrent = r_t.shape[0] > 0
        rate_mem = 1.0 / c[_TM]
        rate_syn = 1.0 / c[_TS]
        theta = c[_THETA]
        n_sp = 0
        for j in range(n):
            for k in range(slots):
                if math.isfinite(out_t[b, j, k]):
                    sp_t[n_sp] = out_t[b, j, k]
                    sp_j[n_sp] = j * slots + k
                    n_sp += 1
            m[j] = 0.0
            m_a[j] = 0.0
            q[j] = 0.0
            g_a[j] = 0.0
            g_b[j] = 0.0
        if n_sp == 0:
            return
        order = np.argsort(sp_t[:n_sp], kind="mergesort")
        e = 0
        while e < ev_t.shape[1] and math.isfinite(ev_t[b, e]):
            e += 1
        e -= 1
        r = n_sp - 1
        cursor = sp_t[order[r]]
        if e >= 0 and ev_t[b, e] > cursor:
            cursor = ev_t[b, e]
        while r >= 0 or e >= 0:
            spike = r >= 0 and (e < 0 or sp_t[order[r]] >= ev_t[b, e])
            t = sp_t[order[r]] if spike else ev_t[b, e]
            u = cursor - t
            cursor = t
            if u > 0:
                e_mem, e_syn, k_u = _flow(u, c)
                ka, kb = _kernel_derivatives(u, rate_mem, rate_syn)
                for j in range(n):
                    mj = m[j]
                    if mj == 0.0 and m_a[j] == 0.0 and q[j] == 0.0 and g_a[j] == 0.0 and g_b[j] == 0.0:
                        continue  # no spike of this neuron after t yet
                    g_a[j] = ka * mj - k_u * m_a[j] + e_syn * g_a[j]
                    g_b[j] = kb * mj - u * e_syn * q[j] + e_syn * g_b[j]
                    q[j] = k_u * mj + e_syn * q[j]
                    m_a[j] = e_mem * (m_a[j] + u * mj)
                    m[j] = e_mem * mj
            if spike:
                code = sp_j[order[r]]
                j = code // slots
                ga[part, j] += theta * m_a[j]
                if recurrent:
                    row = r_t[j]
                    for i in range(n):
                        ga[part, i] += row[i] * g_a[i]
                        gb[part, i] += row[i] * g_b[i]
                m[j] += -c[_TM] * jumps[b, j, code - j * slots]
                r -= 1
            else:
                row = w_t[ev_src[b, e]]
                for i in range(n):
                    ga[part, i] += row[i] * g_a[i]
                    gb[part, i] += row[i] * g_b[i]
                e -= 1

    @njit(cache=_CACHE)
    def _part(part, ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb):
        n = w_t.shape[1]
        batch = ev_t.shape[0]
        parts = ga.shape[0]
        size = n * out_t.shape[2]
        sp_t = np.empty(size)
        sp_j = np.empty(size, dtype=np.int64)
        m = np.empty(n)
        m_a = np.empty(n)
        q = np.empty(n)
        g_a = np.empty(n)
        g_b = np.empty(n)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            _sample(b, part, ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb, sp_t, sp_j, m, m_a, q, g_a, g_b)

    @njit(parallel=True, cache=_CACHE)
    def _kernel_parallel(ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb):
        for part in prange(ga.shape[0]):
            _part(part, ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb)

    @njit(cache=_CACHE)
    def _kernel_serial(ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb):
        for part in range(ga.shape[0]):
            _part(part, ev_t, ev_src, w_t, r_t, out_t, jumps, c, ga, gb)


def time_constant_gradients(
    times: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor | None,
    out_times: Tensor,
    jumps: Tensor,
    p: NeuronParams,
) -> tuple[Tensor, Tensor]:
    r"""``(dL/dtau_mem, dL/dtau_syn)`` of each neuron of a spiking layer (:mod:`eventprop.model.sensitivity`).

    Args:
        times: the layer's input spike times (data contract).
        weight: ``(N, in_features)``; recurrent_weight: ``(N, N)``, zero diagonal, or
            ``None`` (feed-forward), as the engine used them.
        out_times: the layer's output spikes; jumps: the engine's ``J_k`` at them
            (:class:`~eventprop.engines.base.LayerGradients` ``.jumps``).
        p: the layer's constants (as the engine used them).

    Returns:
        Two ``(N,)`` float64 tensors on ``out_times``' device: the derivative of the
        loss with respect to neuron ``j``'s ``tau_mem`` and ``tau_syn`` (their sums for
        constants shared by the layer).
    """
    require_numba()
    _, ev_t, ev_src = input_events(times)
    n = weight.shape[0]
    batch = out_times.shape[0]
    parts = chunk_count(batch)
    ga = np.zeros((parts, n))
    gb = np.zeros((parts, n))
    if batch:
        w_t = np.ascontiguousarray(to_numpy(weight, torch.float64).T)
        r_t = (
            np.ascontiguousarray(to_numpy(recurrent_weight, torch.float64).T)
            if recurrent_weight is not None
            else np.zeros((0, n))
        )
        arrays = (
            ev_t.astype(np.float64, copy=False),
            ev_src,
            w_t,
            r_t,
            to_numpy(out_times, torch.float64),
            to_numpy(jumps, torch.float64),
            _constants(p),
        )
        work = batch * n * (ev_t.shape[1] + out_times.shape[1] * out_times.shape[2])
        launch(_kernel_parallel, _kernel_serial, work, *arrays, ga, gb)
    device = out_times.device
    d_tau_mem = -(ga.sum(axis=0)) / (p.tau_mem * p.tau_mem)  # dL/dtau = -a^2 dL/da, a = 1/tau
    d_tau_syn = -(gb.sum(axis=0)) / (p.tau_syn * p.tau_syn)
    return torch.from_numpy(d_tau_mem).to(device), torch.from_numpy(d_tau_syn).to(device)
