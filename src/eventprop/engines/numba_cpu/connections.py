r"""Numba engine, feed-forward layers given as connection lists: delays, sparsity, per-neuron constants.

A layer of ``N`` LIF neurons whose input synapses are listed, grouped by target neuron
(:class:`~eventprop.engines.base.Connections`): synapse ``c`` in
``pointer[j] <= c < pointer[j + 1]`` carries every spike of input ``source[c]`` to
neuron ``j``, ``delay[c]`` later, with weight ``weight[c]``; each neuron has its own
``tau_mem[j]``, ``tau_syn[j]`` (the threshold is 1: the layers divide the weights by
the thresholds, see :mod:`eventprop.model.sensitivity`). Dense layers with delays
per synapse, masked (sparse) layers and convolutions (shared weights gathered per
synapse) are all such lists.

The neurons of a feed-forward layer do not interact, so each ``(sample, neuron)`` is
simulated on its own over its arrivals (``t + delay[c]`` for every input spike ``t``
of every synapse ``c``, sorted stably by time): the same interval solver as the dense
kernel (:func:`.scalar._neuron_interval` after :func:`.scalar._may_cross`) with
the neuron's constants. The backward replays the arrivals in reverse with the
neuron's adjoint ``(lambda_V, lambda_I)`` (paper Table 2), its jumps ``J_k`` at its own
spikes, and, where asked, the traces of :mod:`eventprop.model.sensitivity` for the
time constants::

    dL/dweight[c] = -tau_syn sum_arrivals lambda_I,        dL/d arrival = weight[c] (lambda_V - lambda_I),
    dL/ddelay[c] = sum over the arrivals of c of dL/d arrival,   dL/dt_input += the same.

Work is ``O(sum_j A_j log A_j)`` per sample (``A_j`` arrivals at neuron ``j``): a
convolution's neuron sees only its receptive field. Parallel over samples in chunks
whose number depends on the batch size only (sums independent of the threads).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams
from .chunks import chunk_count
from .events import spike_limit, to_numpy
from .scalar import (
    _HORIZON,
    _INF,
    _RATIO,
    _THETA,
    _TM,
    _TS,
    _ZERO,
    _adjoint_jump,
    _constants,
    _flow,
    _may_cross,
    _neuron_interval,
    require_numba,
    source_sha256,
)
from .threads import launch
from .time_constants import _kernel_derivatives

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["connections_forward_numba", "connections_backward_numba", "neuron_constants"]

#: SHA-256 of :mod:`.scalar`'s source these kernels were checked against (see there).
SCALAR_SHA256 = "001c2940016bc489ef8bb7f3058a54959c0ba7e03dfa5f569f15739de0fca4c8"
_CACHE = source_sha256() == SCALAR_SHA256

#: Up to this many arrivals a neuron's are ordered by insertion (no allocation), beyond by mergesort.
SMALL = 32


def neuron_constants(tau_mem: np.ndarray, tau_syn: np.ndarray, horizon: float, clip: float = 0.0) -> np.ndarray:
    """``(N, 23)`` float64: the kernels' constants (:func:`.scalar._constants`) of each neuron, threshold 1."""
    rows = {}
    out = np.empty((tau_mem.shape[0], 23))
    for j, key in enumerate(zip(tau_mem.tolist(), tau_syn.tolist())):
        if key not in rows:
            rows[key] = np.array(_constants.__wrapped__(NeuronParams(key[0], key[1], 1.0), horizon, clip))
        out[j] = rows[key]
    return out


if numba is not None:

    @njit(cache=_CACHE)
    def _jump(numerator, current, c, tangential, part):
        # the jump of lambda_V at a spike with current I: numerator / (I - theta), as
        # neuron.adjoint_jump (tangential spikes counted into tangential[part], clipped
        # where the safeguard is on, a double root bounded)
        jump, tangent = _adjoint_jump(numerator, current, c)
        if tangent:
            tangential[part] += 1
        return jump

    @njit(cache=_CACHE)
    def _arrivals(b, j, times, pointer, source, delay, arr_t, arr_c, arr_k, order):
        # the arrivals at neuron j of sample b into arr_*; returns their number and their
        # stable time order (in ``order`` for a few, by insertion: no allocation; else a new array)
        slots = times.shape[2]
        n = 0
        for c in range(pointer[j], pointer[j + 1]):
            i = source[c]
            d = delay[c]
            for k in range(slots):
                t = times[b, i, k]
                if not math.isfinite(t):
                    break  # +inf padding (ascending along the last axis)
                arr_t[n] = t + d
                arr_c[n] = c
                arr_k[n] = k
                n += 1
        if n > SMALL:
            return n, np.argsort(arr_t[:n], kind="mergesort")
        for q in range(n):
            e = q
            t = arr_t[q]
            while e > 0 and arr_t[order[e - 1]] > t:
                order[e] = order[e - 1]
                e -= 1
            order[e] = q
        return n, order

    @njit(cache=_CACHE)
    def _forward_neuron(b, j, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, arr_t, arr_c, arr_k, order):
        # neuron j of sample b over its arrivals; False once it exceeded the limit
        c = cn[j]
        cap = out_t.shape[2]
        counts[b, j] = 0
        for q in range(cap):
            out_t[b, j, q] = c[_INF]
            out_i[b, j, q] = c[_ZERO]
        n, order = _arrivals(b, j, times, pointer, source, delay, arr_t, arr_c, arr_k, order)
        horizon = c[_HORIZON]
        v = 0.0
        i = 0.0
        for q in range(n):
            e = order[q]
            te = arr_t[e]
            if not (te < horizon):
                break
            i += weight[arr_c[e]]
            end = arr_t[order[q + 1]] if q + 1 < n else c[_INF]
            end = min(end, horizon)
            length = end - te
            if not (length > 0):  # an arrival at the same time follows
                continue
            e_mem = 0.0
            e_syn = 0.0
            k = 0.0
            if math.isfinite(length):
                e_mem, e_syn, k = _flow(length, c)
            v_end = v * e_mem + i * k
            i_end = i * e_syn
            if _may_cross(v, i, length, v_end, i_end, k, c):
                v_end = _neuron_interval(b, j, te, end, v, i, e_mem, e_syn, k, c, limit, out_t, out_i, counts, stop_t)
                if v_end != v_end:
                    return False
            v = v_end
            i = i_end
        return True

    @njit(cache=_CACHE)
    def _forward_part(part, parts, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, status, width):
        batch = times.shape[0]
        arr_t = np.empty(width)
        arr_c = np.empty(width, dtype=np.int64)
        arr_k = np.empty(width, dtype=np.int64)
        order = np.empty(width, dtype=np.int64)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            status[b] = 0
            for j in range(cn.shape[0]):
                if not _forward_neuron(b, j, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, arr_t, arr_c, arr_k, order):
                    status[b] = 1
                    break

    @njit(parallel=True, cache=_CACHE)
    def _forward_parallel(parts, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, status, width):
        for part in prange(parts):
            _forward_part(part, parts, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, status, width)

    @njit(cache=_CACHE)
    def _forward_serial(parts, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, status, width):
        for part in range(parts):
            _forward_part(part, parts, times, pointer, source, delay, weight, cn, limit, out_t, out_i, counts, stop_t, status, width)

    @njit(cache=_CACHE)
    def _backward_neuron(b, j, part, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                         grad_times, gw, gd, gtm, gts, jumps, tangential, arr_t, arr_c, arr_k, order):  # fmt: skip
        c = cn[j]
        slots_out = out_t.shape[2]
        slots_in = times.shape[2]
        theta = c[_THETA]
        tau_mem = c[_TM]
        tau_syn = c[_TS]
        cnt = 0
        while cnt < slots_out and math.isfinite(out_t[b, j, cnt]):
            cnt += 1
        if cnt == 0:
            return
        lv_plus = 0.0  # the jumps J_k of lambda_V: reverse recurrence over the neuron's own spikes
        for q in range(cnt - 1, -1, -1):
            if q + 1 < cnt:
                lv_plus = (lv_plus + jumps[b, j, q + 1]) * math.exp(-(out_t[b, j, q + 1] - out_t[b, j, q]) / tau_mem)
            jumps[b, j, q] = _jump(theta * lv_plus + grad_out[b, j, q], out_i[b, j, q], c, tangential, part)
        n, order = _arrivals(b, j, times, pointer, source, delay, arr_t, arr_c, arr_k, order)
        rate_mem = 1.0 / tau_mem
        rate_syn = 1.0 / tau_syn
        lv = 0.0
        li = 0.0
        m = 0.0  # the traces of model.sensitivity
        m_a = 0.0
        q_tr = 0.0
        g_a = 0.0
        g_b = 0.0
        ga = 0.0
        gb = 0.0
        r = cnt - 1
        e = n - 1
        cursor = out_t[b, j, r]
        if e >= 0 and arr_t[order[e]] > cursor:
            cursor = arr_t[order[e]]
        while r >= 0 or e >= 0:
            # in reverse: a spike strictly after an arrival acts on it (at a tie, the arrival first)
            spike = r >= 0 and (e < 0 or out_t[b, j, r] > arr_t[order[e]])
            t = out_t[b, j, r] if spike else arr_t[order[e]]
            u = cursor - t
            cursor = t
            if u > 0:
                e_mem, e_syn, k = _flow(u, c)
                li = li * e_syn + lv * c[_RATIO] * k
                lv = lv * e_mem
                if want_tau:
                    ka, kb = _kernel_derivatives(u, rate_mem, rate_syn)
                    g_a = ka * m - k * m_a + e_syn * g_a
                    g_b = kb * m - u * e_syn * q_tr + e_syn * g_b
                    q_tr = k * m + e_syn * q_tr
                    m_a = e_mem * (m_a + u * m)
                    m = e_mem * m
            if spike:
                jump = jumps[b, j, r]
                if want_tau:
                    ga += theta * m_a
                    m += -tau_mem * jump
                lv += jump
                r -= 1
            else:
                idx = order[e]
                syn = arr_c[idx]
                w = weight[syn]
                gw[part, syn] += -tau_syn * li
                g = w * (lv - li)
                gd[part, syn] += g
                grad_times[b, source[syn] * slots_in + arr_k[idx]] += g
                if want_tau:
                    ga += w * g_a
                    gb += w * g_b
                e -= 1
        if want_tau:
            gtm[part, j] += -ga * rate_mem * rate_mem  # dL/dtau = -a^2 dL/da
            gts[part, j] += -gb * rate_syn * rate_syn

    @njit(cache=_CACHE)
    def _backward_part(part, parts, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                       grad_times, gw, gd, gtm, gts, jumps, tangential, width):  # fmt: skip
        batch = times.shape[0]
        arr_t = np.empty(width)
        arr_c = np.empty(width, dtype=np.int64)
        arr_k = np.empty(width, dtype=np.int64)
        order = np.empty(width, dtype=np.int64)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            for j in range(cn.shape[0]):
                _backward_neuron(b, j, part, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                                 grad_times, gw, gd, gtm, gts, jumps, tangential, arr_t, arr_c, arr_k, order)  # fmt: skip

    @njit(parallel=True, cache=_CACHE)
    def _backward_parallel(parts, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                           grad_times, gw, gd, gtm, gts, jumps, tangential, width):  # fmt: skip
        for part in prange(parts):
            _backward_part(part, parts, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                           grad_times, gw, gd, gtm, gts, jumps, tangential, width)  # fmt: skip

    @njit(cache=_CACHE)
    def _backward_serial(parts, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                         grad_times, gw, gd, gtm, gts, jumps, tangential, width):  # fmt: skip
        for part in range(parts):
            _backward_part(part, parts, grad_out, out_t, out_i, times, pointer, source, delay, weight, cn, want_tau,
                           grad_times, gw, gd, gtm, gts, jumps, tangential, width)  # fmt: skip


# spike capacity per neuron remembered per layer shape (a second pass only when exceeded)
_CAPACITY: dict[tuple[int, int], int] = {}


def _width(pointer: np.ndarray, slots: int) -> int:
    """Scratch size for one neuron's arrivals: the largest fan-in times the input slots."""
    return max(1, int(np.diff(pointer).max(initial=0)) * slots)


def connections_forward_numba(
    times: Tensor,
    source: Tensor,
    pointer: Tensor,
    weight: Tensor,
    delay: Tensor,
    constants: np.ndarray,
    max_spikes: int | None,
) -> tuple[Tensor, Tensor]:
    """Spike times ``(batch, N, max_out)`` and the currents ``I`` at them (module docstring).

    ``times`` must satisfy the data contract (checked by the caller); ``constants`` from
    :func:`neuron_constants`. Exceeding ``max_spikes`` raises :class:`~eventprop.SpikeLimitError`.
    """
    require_numba()
    batch, _, slots = times.shape
    n = pointer.shape[0] - 1
    arrays = (
        to_numpy(times, torch.float64),
        to_numpy(pointer),
        to_numpy(source),
        to_numpy(delay, torch.float64),
        to_numpy(weight, torch.float64),
        constants,
    )
    limit = spike_limit(max_spikes)
    width = _width(arrays[1], slots)
    parts = chunk_count(batch)
    key = (n, int(source.shape[0]))
    cap = _CAPACITY.get(key, 4)
    if max_spikes is not None:
        cap = min(cap, max_spikes)
    stop_t = np.empty((batch, n))
    status = np.zeros(batch, dtype=np.int64)
    work = batch * int(source.shape[0]) * slots
    while True:
        out_t = np.empty((batch, n, cap))
        out_i = np.empty((batch, n, cap))
        counts = np.zeros((batch, n), dtype=np.int64)
        if batch and n:
            launch(_forward_parallel, _forward_serial, work, parts, *arrays, limit, out_t, out_i, counts, stop_t, status, width)
        over = np.flatnonzero(status)
        if over.size:
            b = int(over[0])
            j = int(np.argmax(counts[b]))
            raise SpikeLimitError.exceeded(max_spikes, b, j, float(stop_t[b, j]))
        most = int(counts.max()) if counts.size else 0
        if most <= cap:
            break
        cap = most
    _CAPACITY[key] = max(4, 2 * most + 2)
    width_out = max(most, 1)
    out_t = np.ascontiguousarray(out_t[:, :, :width_out])
    out_i = np.ascontiguousarray(out_i[:, :, :width_out])
    return torch.from_numpy(out_t), torch.from_numpy(out_i)


def connections_backward_numba(
    grad_out: Tensor,
    out_times: Tensor,
    out_current: Tensor,
    times: Tensor,
    source: Tensor,
    pointer: Tensor,
    weight: Tensor,
    delay: Tensor,
    constants: np.ndarray,
    want_tau: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int, Tensor]:
    """EventProp backward of :func:`connections_forward_numba`.

    Returns ``(grad_times, grad_weight, grad_delay, grad_tau_mem, grad_tau_syn,
    n_tangential, jumps)``, float64 on the CPU: shapes of ``times``, ``weight``,
    ``delay``, ``(N,)``, ``(N,)`` (zeros unless ``want_tau``), the tangential spikes
    and the jumps ``J_k`` (``out_times``' shape).
    """
    require_numba()
    batch, n_in, slots = times.shape
    n = pointer.shape[0] - 1
    n_syn = int(source.shape[0])
    parts = chunk_count(batch)
    arrays = (
        to_numpy(grad_out, torch.float64),
        to_numpy(out_times, torch.float64),
        to_numpy(out_current, torch.float64),
        to_numpy(times, torch.float64),
        to_numpy(pointer),
        to_numpy(source),
        to_numpy(delay, torch.float64),
        to_numpy(weight, torch.float64),
        constants,
        bool(want_tau),
    )
    grad_times = np.zeros((batch, n_in * slots))
    gw = np.zeros((parts, n_syn))
    gd = np.zeros((parts, n_syn))
    gtm = np.zeros((parts, n))
    gts = np.zeros((parts, n))
    jumps = np.zeros(tuple(out_times.shape))
    tangential = np.zeros(parts, dtype=np.int64)
    if batch and n:
        work = batch * n_syn * slots
        launch(_backward_parallel, _backward_serial, work, parts, *arrays, grad_times, gw, gd, gtm, gts, jumps, tangential,
               _width(arrays[4], slots))  # fmt: skip
    return (
        torch.from_numpy(grad_times.reshape(batch, n_in, slots)),
        torch.from_numpy(gw.sum(axis=0)),
        torch.from_numpy(gd.sum(axis=0)),
        torch.from_numpy(gtm.sum(axis=0)),
        torch.from_numpy(gts.sum(axis=0)),
        int(tangential.sum()),
        torch.from_numpy(jumps),
    )
