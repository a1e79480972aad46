r"""Numba engine, recurrent layers given as connection lists: delayed recurrence, per-neuron constants.

The layer of :mod:`.connections` (input synapses grouped by target, per-synapse delays,
time constants per neuron, threshold 1) with recurrent synapses grouped by *source*
(:class:`~eventprop.engines.base.RecurrentConnections`): a spike of neuron ``m`` at
``t`` adds ``weight[c]`` to ``I`` of ``target[c]`` at ``t + delay[c]`` for every
``pointer[m] <= c < pointer[m + 1]`` (``delay >= 0``; 0 is allowed).

Forward, per sample, an exact event-driven simulation in true time order: every neuron
keeps its state ``(V, I)`` at the time it was last touched and its predicted next
threshold crossing were nothing else to arrive (the first crossing of the closed-form
flow, :func:`.scalar._may_cross` and :func:`.scalar._crossing` over ``[t, inf)``, kept
only up to the horizon), in an indexed binary heap; the input arrivals are sorted in
advance, the recurrent arrivals wait in a second heap ordered by time and creation
(both in :mod:`.heaps`).
The earliest of the three happens next (a crossing before an arrival at the same
instant: ``V`` is continuous, an arrival changes ``I`` only): a crossing is a spike
(reset ``V = 0``, its recurrent arrivals scheduled), an arrival a current jump; the
touched neuron's crossing is predicted again. Work is ``O(A log N + S F log S)`` per
sample (``A`` input arrivals, ``S`` spikes, ``F`` recurrent fan-out).

Backward, per sample, every event (input arrivals, recurrent arrivals regenerated from
the spikes, spikes) in reverse time order (at one instant the arrivals before the
spikes: what a spike causes happens after it), each neuron's adjoint and the traces
of :mod:`eventprop.model.sensitivity` carried back lazily to the events that touch it::

    arrival c (weight w) at neuron n:  dL/dw += -tau_syn,n lambda_I,n,
                                        dL/d arrival = w (lambda_V,n - lambda_I,n) -> its delay,
                                        and the input time or the sending spike's sum S_k
    spike k of neuron m:               J_k = (lambda_V,m + S_k + dL/dt_k) / (I_k - 1),  lambda_V,m += J_k

(the paper's jump, eq. 30a, with ``sum_n R[n, m] (lambda_V,n - lambda_I,n)`` taken at
the arrival times instead of at the spike). Parallel over samples in chunks whose
number depends on the batch size only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...errors import SpikeLimitError
from .chunks import chunk_count
from .events import spike_limit, spike_trains, to_numpy
from .scalar import (
    _HORIZON,
    _INF,
    _RATIO,
    _THETA,
    _TM,
    _TS,
    _crossing,
    _flow,
    _may_cross,
    require_numba,
    source_sha256,
)
from .connections import _jump
from .heaps import _grow, _pop, _push, _sift
from .threads import launch
from .time_constants import _kernel_derivatives

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["recurrent_connections_forward_numba", "recurrent_connections_backward_numba"]

#: SHA-256 of :mod:`.scalar`'s source these kernels were checked against (see there).
SCALAR_SHA256 = "001c2940016bc489ef8bb7f3058a54959c0ba7e03dfa5f569f15739de0fca4c8"
_CACHE = source_sha256() == SCALAR_SHA256

_OK, _LIMIT, _FULL = 0, 1, 2

if numba is not None:

    @njit(cache=_CACHE)
    def _input_arrivals(b, times, in_ptr, in_src, in_d, arr_t, arr_c, arr_k):
        # every input arrival of sample b (all neurons); returns their number and stable time order
        slots = times.shape[2]
        n = 0
        for j in range(in_ptr.shape[0] - 1):
            for c in range(in_ptr[j], in_ptr[j + 1]):
                i = in_src[c]
                d = in_d[c]
                for k in range(slots):
                    t = times[b, i, k]
                    if not math.isfinite(t):
                        break
                    arr_t[n] = t + d
                    arr_c[n] = c
                    arr_k[n] = k
                    n += 1
        return n, np.argsort(arr_t[:n], kind="mergesort")

    @njit(cache=_CACHE)
    def _predict(v, i, t, c):
        # the first crossing after t from (v, i) at t with nothing else arriving (inf: none up to the horizon)
        if not _may_cross(v, i, c[_INF], 0.0, 0.0, 0.0, c):
            return c[_INF]
        s = _crossing(v, i, c[_INF], 0.0, c)
        p = t + s
        return p if p <= c[_HORIZON] else c[_INF]

    @njit(cache=_CACHE)
    def _forward_sample(b, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn, limit,
                        sp_t, sp_n, sp_i, n_sp, counts, status, where, arr_t, arr_c, arr_k):  # fmt: skip
        n = cn.shape[0]
        cap = sp_t.shape[1]
        n_arr, order = _input_arrivals(b, times, in_ptr, in_src, in_d, arr_t, arr_c, arr_k)
        v = np.zeros(n)
        cur = np.zeros(n)
        touched = np.zeros(n)
        key = np.full(n, np.inf)
        heap = np.arange(n)
        pos = np.arange(n)
        ht = np.empty(16)
        hs = np.empty(16, dtype=np.int64)
        hc = np.empty(16, dtype=np.int64)
        hk = np.empty(16, dtype=np.int64)
        size = 0
        seq = 0
        q = 0
        n_sp[b] = 0
        status[b] = _OK
        for j in range(n):
            counts[b, j] = 0
        while True:
            t_in = arr_t[order[q]] if q < n_arr else np.inf
            t_rec = ht[0] if size > 0 else np.inf
            j = heap[0]
            t_x = key[j]
            if t_x < np.inf and t_x <= t_in and t_x <= t_rec:  # a spike (before arrivals at the same instant)
                c = cn[j]
                s = t_x - touched[j]
                if s > 0:
                    e_mem, e_syn, k = _flow(s, c)
                    cur[j] *= e_syn
                touched[j] = t_x
                count = counts[b, j] + 1
                counts[b, j] = count
                if count > limit:
                    status[b] = _LIMIT
                    where[b, 0] = j
                    where[b, 1] = t_x
                    return
                r = n_sp[b]
                if r >= cap:
                    status[b] = _FULL
                    return
                sp_t[b, r] = t_x
                sp_n[b, r] = j
                sp_i[b, r] = cur[j]
                n_sp[b] = r + 1
                v[j] = 0.0  # reset by subtraction: theta - theta
                key[j] = _predict(0.0, cur[j], t_x, c)
                _sift(heap, pos, key, pos[j])
                for syn in range(rec_ptr[j], rec_ptr[j + 1]):
                    if size + 1 > ht.shape[0]:
                        ht, hs, hc, hk = _grow(ht, size), _grow(hs, size), _grow(hc, size), _grow(hk, size)
                    _push(ht, hs, hc, hk, size, t_x + rec_d[syn], seq, syn, r)
                    size += 1
                    seq += 1
                continue
            if t_in < np.inf and t_in <= t_rec:
                e = order[q]
                syn = arr_c[e]
                j = in_tgt[syn]
                t = t_in
                w = in_w[syn]
                q += 1
            elif t_rec < np.inf:
                syn = hc[0]
                j = rec_tgt[syn]
                t = t_rec
                w = rec_w[syn]
                _pop(ht, hs, hc, hk, size)
                size -= 1
            else:
                return
            c = cn[j]
            if not (t <= c[_HORIZON]) and key[heap[0]] == np.inf:
                return  # past the horizon with no crossing due: nothing more can be emitted
            s = t - touched[j]
            if s > 0:
                e_mem, e_syn, k = _flow(s, c)
                v[j] = v[j] * e_mem + cur[j] * k
                cur[j] *= e_syn
            touched[j] = t
            cur[j] += w
            key[j] = _predict(v[j], cur[j], t, c)
            _sift(heap, pos, key, pos[j])

    @njit(cache=_CACHE)
    def _forward_part(part, parts, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn, limit,
                      sp_t, sp_n, sp_i, n_sp, counts, status, where, width):  # fmt: skip
        batch = times.shape[0]
        arr_t = np.empty(width)
        arr_c = np.empty(width, dtype=np.int64)
        arr_k = np.empty(width, dtype=np.int64)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            _forward_sample(b, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn, limit,
                            sp_t, sp_n, sp_i, n_sp, counts, status, where, arr_t, arr_c, arr_k)  # fmt: skip

    @njit(parallel=True, cache=_CACHE)
    def _forward_parallel(parts, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn, limit,
                          sp_t, sp_n, sp_i, n_sp, counts, status, where, width):  # fmt: skip
        for part in prange(parts):
            _forward_part(part, parts, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn,
                          limit, sp_t, sp_n, sp_i, n_sp, counts, status, where, width)  # fmt: skip

    @njit(cache=_CACHE)
    def _forward_serial(parts, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn, limit,
                        sp_t, sp_n, sp_i, n_sp, counts, status, where, width):  # fmt: skip
        for part in range(parts):
            _forward_part(part, parts, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, cn,
                          limit, sp_t, sp_n, sp_i, n_sp, counts, status, where, width)  # fmt: skip

    @njit(cache=_CACHE)
    def _backward_sample(b, part, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d,
                         cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec, gd_rec, gtm, gts,
                         jumps, tangential, arr_t, arr_c, arr_k):  # fmt: skip
        n = cn.shape[0]
        slots_in = times.shape[2]
        n_spk = n_sp[b]
        if n_spk == 0:
            return
        n_arr, _ = _input_arrivals(b, times, in_ptr, in_src, in_d, arr_t, arr_c, arr_k)
        n_rec = 0
        for r in range(n_spk):
            n_rec += rec_ptr[sp_n[b, r] + 1] - rec_ptr[sp_n[b, r]]
        total = n_spk + n_arr + n_rec
        ev_t = np.empty(total)
        ev_kind = np.empty(total, dtype=np.int64)  # 0 spike, 1 input arrival, 2 recurrent arrival
        ev_a = np.empty(total, dtype=np.int64)  # spike index / synapse
        ev_b = np.empty(total, dtype=np.int64)  # - / input slot / sending spike
        e = 0
        for r in range(n_spk):  # spikes first: the stable sort keeps them before arrivals at one instant
            ev_t[e] = sp_t[b, r]
            ev_kind[e] = 0
            ev_a[e] = r
            e += 1
        for a in range(n_arr):
            ev_t[e] = arr_t[a]
            ev_kind[e] = 1
            ev_a[e] = arr_c[a]
            ev_b[e] = arr_k[a]
            e += 1
        for r in range(n_spk):
            m = sp_n[b, r]
            for syn in range(rec_ptr[m], rec_ptr[m + 1]):
                ev_t[e] = sp_t[b, r] + rec_d[syn]
                ev_kind[e] = 2
                ev_a[e] = syn
                ev_b[e] = r
                e += 1
        order = np.argsort(ev_t, kind="mergesort")
        lv = np.zeros(n)
        li = np.zeros(n)
        last = np.full(n, np.inf)  # the time each neuron's adjoint was carried back to
        m_tr = np.zeros(n)  # the traces of model.sensitivity
        m_a = np.zeros(n)
        q_tr = np.zeros(n)
        g_a = np.zeros(n)
        g_b = np.zeros(n)
        ga = np.zeros(n)
        gb = np.zeros(n)
        pending = np.zeros(n_spk)  # sum of dL/d arrival over each spike's recurrent arrivals
        left = np.empty(n, dtype=np.int64)
        for j in range(n):
            left[j] = counts[b, j]
        for p in range(total - 1, -1, -1):
            e = order[p]
            t = ev_t[e]
            kind = ev_kind[e]
            if kind == 0:
                j = sp_n[b, ev_a[e]]
            elif kind == 1:
                j = in_tgt[ev_a[e]]
            else:
                j = rec_tgt[ev_a[e]]
            c = cn[j]
            u = last[j] - t
            if u > 0 and u < np.inf:
                e_mem, e_syn, k = _flow(u, c)
                li[j] = li[j] * e_syn + lv[j] * c[_RATIO] * k
                lv[j] *= e_mem
                if want_tau:
                    ka, kb = _kernel_derivatives(u, 1.0 / c[_TM], 1.0 / c[_TS])
                    mj = m_tr[j]
                    g_a[j] = ka * mj - k * m_a[j] + e_syn * g_a[j]
                    g_b[j] = kb * mj - u * e_syn * q_tr[j] + e_syn * g_b[j]
                    q_tr[j] = k * mj + e_syn * q_tr[j]
                    m_a[j] = e_mem * (m_a[j] + u * mj)
                    m_tr[j] = e_mem * mj
            last[j] = t
            if kind == 0:
                r = ev_a[e]
                left[j] -= 1
                theta = c[_THETA]
                jump = _jump(theta * lv[j] + pending[r] + grad_out[b, j, left[j]], sp_i[b, r], c, tangential, part)
                jumps[b, j, left[j]] = jump
                if want_tau:
                    ga[j] += theta * m_a[j]
                    m_tr[j] += -c[_TM] * jump
                lv[j] += jump
            else:
                syn = ev_a[e]
                w = in_w[syn] if kind == 1 else rec_w[syn]
                g = w * (lv[j] - li[j])
                if kind == 1:
                    gw_in[part, syn] += -c[_TS] * li[j]
                    gd_in[part, syn] += g
                    grad_times[b, in_src[syn] * slots_in + ev_b[e]] += g
                else:
                    gw_rec[part, syn] += -c[_TS] * li[j]
                    gd_rec[part, syn] += g
                    pending[ev_b[e]] += g
                if want_tau:
                    ga[j] += w * g_a[j]
                    gb[j] += w * g_b[j]
        if want_tau:
            for j in range(n):
                gtm[part, j] += -ga[j] / (cn[j][_TM] * cn[j][_TM])  # dL/dtau = -a^2 dL/da
                gts[part, j] += -gb[j] / (cn[j][_TS] * cn[j][_TS])

    @njit(cache=_CACHE)
    def _backward_part(part, parts, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d,
                       cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec, gd_rec, gtm, gts,
                       jumps, tangential, width):  # fmt: skip
        batch = times.shape[0]
        arr_t = np.empty(width)
        arr_c = np.empty(width, dtype=np.int64)
        arr_k = np.empty(width, dtype=np.int64)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            _backward_sample(b, part, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w,
                             rec_d, cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec,
                             gd_rec, gtm, gts, jumps, tangential, arr_t, arr_c, arr_k)  # fmt: skip

    @njit(parallel=True, cache=_CACHE)
    def _backward_parallel(parts, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d,
                           cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec, gd_rec, gtm,
                           gts, jumps, tangential, width):  # fmt: skip
        for part in prange(parts):
            _backward_part(part, parts, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w,
                           rec_d, cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec,
                           gd_rec, gtm, gts, jumps, tangential, width)  # fmt: skip

    @njit(cache=_CACHE)
    def _backward_serial(parts, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d,
                         cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec, gd_rec, gtm,
                         gts, jumps, tangential, width):  # fmt: skip
        for part in range(parts):
            _backward_part(part, parts, grad_out, times, in_ptr, in_src, in_tgt, in_w, in_d, rec_ptr, rec_tgt, rec_w,
                           rec_d, cn, sp_t, sp_n, sp_i, n_sp, counts, want_tau, grad_times, gw_in, gd_in, gw_rec,
                           gd_rec, gtm, gts, jumps, tangential, width)  # fmt: skip


_CAPACITY: dict[tuple[int, int, int], int] = {}


def _width(pointer: np.ndarray, slots: int) -> int:
    """Scratch for a sample's input arrivals: all synapses times the input slots."""
    return max(1, int(pointer[-1]) * slots)


def _input_target(pointer: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(pointer.shape[0] - 1), np.diff(pointer))


def recurrent_connections_forward_numba(
    times: Tensor,
    inputs: tuple[Tensor, Tensor, Tensor, Tensor],
    recurrent: tuple[Tensor, Tensor, Tensor, Tensor],
    constants: np.ndarray,
    max_spikes: int | None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Spike times ``(batch, N, max_out)`` and the firing-order tape ``(time, neuron, current, count, per_neuron)``.

    ``inputs`` = ``(source, pointer, weight, delay)`` grouped by target, ``recurrent`` =
    ``(pointer, target, weight, delay)`` grouped by source (module docstring).
    """
    require_numba()
    batch, _, slots = times.shape
    n = constants.shape[0]
    in_src, in_ptr, in_w, in_d = (to_numpy(x, torch.float64 if x.is_floating_point() else None) for x in inputs)
    rec_ptr, rec_tgt, rec_w, rec_d = (to_numpy(x, torch.float64 if x.is_floating_point() else None) for x in recurrent)
    arrays = (to_numpy(times, torch.float64), in_ptr, in_src, _input_target(in_ptr), in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, constants)
    limit = spike_limit(max_spikes)
    width = _width(in_ptr, slots)
    parts = chunk_count(batch)
    key = (n, int(in_src.shape[0]), int(rec_tgt.shape[0]))
    cap = _CAPACITY.get(key, 64)
    counts = np.zeros((batch, n), dtype=np.int64)
    n_sp = np.zeros(batch, dtype=np.int64)
    status = np.zeros(batch, dtype=np.int64)
    where = np.zeros((batch, 2))
    work = batch * (int(in_src.shape[0]) * slots + n)
    while True:
        sp_t = np.empty((batch, cap))
        sp_n = np.empty((batch, cap), dtype=np.int64)
        sp_i = np.empty((batch, cap))
        if batch and n:
            launch(_forward_parallel, _forward_serial, work, parts, *arrays, limit, sp_t, sp_n, sp_i, n_sp, counts, status, where, width)
        over = np.flatnonzero(status == _LIMIT)
        if over.size:
            b = int(over[0])
            raise SpikeLimitError.exceeded(max_spikes, b, int(where[b, 0]), float(where[b, 1]))
        if not (status == _FULL).any():
            break
        cap *= 4  # a sample filled its spike list: simulate again with more room
    most = int(n_sp.max()) if batch else 0
    _CAPACITY[key] = max(64, 2 * most + 16)
    width_out = max(int(counts.max()) if counts.size else 0, 1)
    out = spike_trains(sp_t, sp_n, n_sp, counts, width_out) if batch and n else np.full((batch, n, 1), np.inf)
    s = max(most, 1)
    tape = tuple(torch.from_numpy(np.ascontiguousarray(x[:, :s])) for x in (sp_t, sp_n, sp_i)) + (
        torch.from_numpy(n_sp),
        torch.from_numpy(counts),
    )
    return torch.from_numpy(out), tape


def recurrent_connections_backward_numba(
    grad_out: Tensor,
    times: Tensor,
    inputs: tuple[Tensor, Tensor, Tensor, Tensor],
    recurrent: tuple[Tensor, Tensor, Tensor, Tensor],
    constants: np.ndarray,
    tape: tuple[Tensor, ...],
    want_tau: bool,
) -> tuple[Tensor, ...]:
    """EventProp backward of :func:`recurrent_connections_forward_numba`.

    Returns ``(grad_times, grad_input_weight, grad_input_delay, grad_recurrent_weight,
    grad_recurrent_delay, grad_tau_mem, grad_tau_syn, n_tangential, jumps)`` (float64, CPU).
    """
    require_numba()
    batch, n_in, slots = times.shape
    n = constants.shape[0]
    in_src, in_ptr, in_w, in_d = (to_numpy(x, torch.float64 if x.is_floating_point() else None) for x in inputs)
    rec_ptr, rec_tgt, rec_w, rec_d = (to_numpy(x, torch.float64 if x.is_floating_point() else None) for x in recurrent)
    sp_t, sp_n, sp_i, n_sp, counts = (to_numpy(x) for x in tape)
    parts = chunk_count(batch)
    grad_times = np.zeros((batch, n_in * slots))
    gw_in, gd_in = np.zeros((parts, in_src.shape[0])), np.zeros((parts, in_src.shape[0]))
    gw_rec, gd_rec = np.zeros((parts, rec_tgt.shape[0])), np.zeros((parts, rec_tgt.shape[0]))
    gtm, gts = np.zeros((parts, n)), np.zeros((parts, n))
    jumps = np.zeros(tuple(grad_out.shape))
    tangential = np.zeros(parts, dtype=np.int64)
    if batch and n:
        arrays = (
            to_numpy(grad_out, torch.float64), to_numpy(times, torch.float64), in_ptr, in_src, _input_target(in_ptr),
            in_w, in_d, rec_ptr, rec_tgt, rec_w, rec_d, constants, sp_t, sp_n, sp_i, n_sp, counts, bool(want_tau),
        )  # fmt: skip
        work = batch * (int(in_src.shape[0]) * slots + int(n_sp.max(initial=0)) * max(1, rec_tgt.shape[0] // max(n, 1)))
        launch(_backward_parallel, _backward_serial, work, parts, *arrays, grad_times, gw_in, gd_in, gw_rec, gd_rec, gtm,
               gts, jumps, tangential, _width(in_ptr, slots))  # fmt: skip
    sums = (x.sum(axis=0) for x in (gw_in, gd_in, gw_rec, gd_rec, gtm, gts))
    return (
        torch.from_numpy(grad_times.reshape(batch, n_in, slots)),
        *(torch.from_numpy(x) for x in sums),
        int(tangential.sum()),
        torch.from_numpy(jumps),
    )
