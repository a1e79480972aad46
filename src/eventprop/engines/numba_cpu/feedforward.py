r"""Numba engine, feed-forward LIF layers: compiled CPU kernels.

Drop-in replacement for :func:`eventprop.engines.pytorch.feedforward.feedforward_forward`
and :func:`~eventprop.engines.pytorch.feedforward.feedforward_backward`: same
arguments, same shapes, same equations (see :mod:`eventprop.model.neuron` and
:mod:`eventprop.engines.pytorch.feedforward`), same
:class:`~eventprop.model.spikes.EventList`. Each sample is one compiled pass over its
time-ordered input events with the state of all neurons, in parallel over samples
(``numba.prange``) when the work is large enough to pay for waking the thread pool
(:func:`.threads.launch`), serially otherwise:

* forward: at an input event every neuron's current jumps; over the interval to the
  next event (or the horizon) the flow factors ``exp(-L/tau_mem), exp(-L/tau_syn), K(L)``
  are computed once and shared, and a bound test without exponentials (then
  :func:`.scalar._may_cross`) rules out most neurons. The neurons of a feed-forward
  layer do not interact, so each remaining one is solved on its own over the
  interval: the first threshold crossing bracketed analytically (at most one extremum
  of ``V``; same decisions as :func:`eventprop.model.neuron.crossing_bracket`) and
  refined to the tolerances of :func:`eventprop.model.neuron.solve_crossing`
  (:func:`.scalar._crossing`); after a spike ``V = 0`` and the search resumes from the
  spike time in the same interval. Work is ``O(events x neurons + spikes)`` per sample.
* input events: validated (NaN, negative, not ascending) and merged into one
  time-ordered list per sample by a compiled kernel as well (:mod:`.events`).
* backward: the jumps ``J_k`` of ``lambda_V`` come from the reverse recurrence over
  each neuron's own spikes; ``(lambda_V, lambda_I)`` of all neurons are then carried
  backwards through the input events with shared adjoint flow factors
  (:func:`eventprop.model.neuron.adjoint_flow`), the neurons that fired in an interval
  (spikes at ``t_k > t_e``, as in :func:`eventprop.engines.pytorch.feedforward.adjoint_at`)
  on their own through their jumps. ``dL/dW`` is summed over a number of batch chunks
  that depends on the batch size only, in a fixed order: it does not depend on the
  number of threads.

Everything is computed in float64 (the engine's ``compute_dtype``; other dtypes are
widened and the results returned in the input's dtype). Results agree with the
PyTorch engine to rounding (~1e-13 relative on spike times, ~1e-12 on gradients in
practice).

The scalar functions the kernels call (flows, crossing test and solver) live in
:mod:`.scalar`; ``SCALAR_SHA256`` records its source (see there why).

Spike counts are unknown in advance: the kernel stores up to a capacity per neuron
(remembered per layer shape) and keeps counting beyond it; if any neuron exceeded the
capacity, the layer is simulated again with the exact capacity. Spikes are never
dropped; ``max_spikes`` raises :class:`~eventprop.errors.SpikeLimitError`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams
from ...model.spikes import EventList
from .chunks import chunk_total, partial_sums
from .events import input_events, spike_limit, to_numpy
from .threads import launch
from .scalar import (
    _HORIZON,
    _INF,
    _KMAX,
    _RATIO,
    _SPEAK,
    _THETA,
    _TM,
    _TS,
    _ZERO,
    _adjoint_jump,
    _constants,
    _flow,
    _input_adjoint,
    _input_flow,
    _input_gradients,
    _may_cross,
    _near,
    _neuron_interval,
    _weight_gradients,
    require_numba,
    source_sha256,
)

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["feedforward_forward_numba", "feedforward_backward_numba"]

#: SHA-256 of :mod:`.scalar`'s source when these kernels were last checked against it; a
#: mismatch compiles them without numba's on-disk cache (see :mod:`.scalar`).
SCALAR_SHA256 = "001c2940016bc489ef8bb7f3058a54959c0ba7e03dfa5f569f15739de0fca4c8"
_CACHE = source_sha256() == SCALAR_SHA256

if numba is not None:

    @njit(cache=_CACHE)
    def _trim(out_t, out_i, width):
        # the first ``width`` spike slots of every neuron, as new contiguous arrays
        # (a compiled loop: numpy's strided copy of a short last axis is several times slower)
        batch, n_out, _ = out_t.shape
        times = np.empty((batch, n_out, width), dtype=out_t.dtype)
        currents = np.empty((batch, n_out, width), dtype=out_i.dtype)
        for b in range(batch):
            for j in range(n_out):
                for k in range(width):
                    times[b, j, k] = out_t[b, j, k]
                    currents[b, j, k] = out_i[b, j, k]
        return times, currents

    @njit(cache=_CACHE)
    def _forward_row(b, ev_t, ev_src, w_t, c, limit, out_t, out_i, counts, stop_t, status):
        # Sample b, event-major: all neurons' states (V, I) are carried together from input
        # event to input event with shared flow factors. A branch-free pass (it
        # vectorises) applies the event's jumps, flows every neuron to the next event and
        # flags those a bound test without exponentials cannot rule out (as in the
        # recurrent kernel); a second pass, only where some neuron is flagged, solves
        # those on their own over the interval (_may_cross, _neuron_interval): the
        # neurons of a feed-forward layer do not interact. status[b] = 1 when a neuron
        # exceeded the limit.
        n = w_t.shape[1]
        cap = out_t.shape[2]
        n_events = ev_t.shape[1]
        horizon = c[_HORIZON]
        zero = c[_ZERO]
        status[b] = 0
        v = np.zeros(n)  # the state at the current event, before its jump
        i = np.zeros(n)
        v_next = np.empty(n)  # ... and at the next event
        i_next = np.empty(n)
        n_words = (n + 7) // 8
        flag = np.zeros(8 * n_words, dtype=np.uint8)  # (the tail stays 0)
        words = flag.view(np.uint64)  # eight flags per word: the second pass skips unflagged words
        for j in range(n):
            counts[b, j] = 0
            for q in range(cap):
                out_t[b, j, q] = c[_INF]
                out_i[b, j, q] = zero
        n_ev = 0
        while n_ev < n_events and math.isfinite(ev_t[b, n_ev]):
            n_ev += 1
        for e in range(n_ev):
            te = ev_t[b, e]
            if not (te < horizon):
                break
            src = ev_src[b, e]
            end = ev_t[b, e + 1] if e + 1 < n_ev else c[_INF]
            end = min(end, horizon)
            length = end - te
            if not (length > 0):  # an event at the same time follows
                for j in range(n):
                    i[j] += w_t[src, j]
                continue
            finite = math.isfinite(length)
            e_mem = zero
            e_syn = zero
            k = zero
            k_bound = c[_KMAX]
            if finite:
                e_mem, e_syn, k = _flow(length, c)
                if length <= c[_SPEAK]:
                    k_bound = k
            flagged = np.uint8(0)
            for j in range(n):
                i_j = i[j] + w_t[src, j]
                v_j = v[j]
                v_end = v_j * e_mem + i_j * k
                i_end = i_j * e_syn
                f = _near(v_j, i_j, v_end, i_end, k_bound, c)
                flag[j] = f
                flagged |= f
                i[j] = i_j
                v_next[j] = v_end
                i_next[j] = i_end
            if flagged:
                for word in range(n_words):
                    if words[word] == 0:
                        continue
                    for j in range(8 * word, min(8 * word + 8, n)):
                        if flag[j] and _may_cross(v[j], i[j], length, v_next[j], i_next[j], k, c):
                            v_end = _neuron_interval(
                                b, j, te, end, v[j], i[j], e_mem, e_syn, k, c, limit, out_t, out_i, counts, stop_t
                            )
                            if v_end != v_end:
                                status[b] = 1
                                return
                            v_next[j] = v_end
            v, v_next = v_next, v
            i, i_next = i_next, i

    @njit(parallel=True, cache=_CACHE)
    def _forward_kernel_parallel(ev_t, ev_src, w_t, c, limit, out_t, out_i, counts, stop_t, status):
        for b in prange(ev_t.shape[0]):
            _forward_row(b, ev_t, ev_src, w_t, c, limit, out_t, out_i, counts, stop_t, status)

    @njit(cache=_CACHE)
    def _forward_kernel_serial(ev_t, ev_src, w_t, c, limit, out_t, out_i, counts, stop_t, status):
        for b in range(ev_t.shape[0]):
            _forward_row(b, ev_t, ev_src, w_t, c, limit, out_t, out_i, counts, stop_t, status)

    @njit(cache=_CACHE)
    def _jumps(b, part, grad_out, out_t, out_i, cnt, c, jumps, tangential):
        # the jumps J_k of lambda_V at every spike of sample b: a reverse recurrence over
        # each neuron's own spikes; tangential spikes (|I - theta| <= tangent_tolerance
        # theta) are counted, and clipped where the safeguard is on
        theta = c[_THETA]
        for j in range(out_t.shape[1]):
            lv_plus = c[_ZERO]
            for q in range(cnt[j] - 1, -1, -1):
                if q + 1 < cnt[j]:
                    gap = out_t[b, j, q + 1] - out_t[b, j, q]
                    lv_plus = (lv_plus + jumps[b, j, q + 1]) * math.exp(-gap / c[_TM])
                numerator = theta * lv_plus + grad_out[b, j, q]
                jump, tangent = _adjoint_jump(numerator, out_i[b, j, q], c)
                if tangent:
                    tangential[part] += 1
                jumps[b, j, q] = jump

    @njit(cache=_CACHE)
    def _adjoint_row(b, part, grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t,
                     tangential, cnt, jumps, lv, li, sp_t, sp_j, sp_q, t_loc, lv_loc, li_loc, touched, stamp):  # fmt: skip
        # Sample b in reverse, event-major: (lambda_V, lambda_I) of all neurons carried
        # back from event to event with shared adjoint flow factors; the neurons that
        # fired in an interval (spikes at t_k > t_e, latest first) are carried on their own
        # through their jumps and then overwrite the shared result. Without want_times
        # the events' dL/dt (a sum over the neurons per event) is neither computed nor stored.
        n = w_t.shape[1]
        n_events = ev_t.shape[1]
        slots = out_t.shape[2]
        ratio = c[_RATIO]
        tau_syn = c[_TS]
        n_ev = 0
        while n_ev < n_events and math.isfinite(ev_t[b, n_ev]):
            n_ev += 1
        n_sp = 0
        for j in range(n):
            q = 0
            while q < slots and math.isfinite(out_t[b, j, q]):
                sp_t[n_sp] = out_t[b, j, q]
                sp_j[n_sp] = j
                sp_q[n_sp] = q
                n_sp += 1
                q += 1
            cnt[j] = q
            lv[j] = 0.0
            li[j] = 0.0
            stamp[j] = -1
        if n_sp == 0:
            if want_times:
                for e in range(n_ev):
                    grad_times[b, ev_pos[b, e]] = 0.0
            return
        _jumps(b, part, grad_out, out_t, out_i, cnt, c, jumps, tangential)
        order = np.argsort(sp_t[:n_sp], kind="mergesort")  # all spikes of the sample in time order
        r = n_sp - 1  # the latest spike not yet applied
        for e in range(n_ev - 1, -1, -1):
            te = ev_t[b, e]
            upper = ev_t[b, e + 1] if e + 1 < n_ev else c[_INF]
            # the neurons that fired in (te, upper], on their own
            n_touched = 0
            while r >= 0 and sp_t[order[r]] > te:
                j = sp_j[order[r]]
                tk = sp_t[order[r]]
                if stamp[j] != e:
                    stamp[j] = e
                    touched[n_touched] = j
                    n_touched += 1
                    lv_loc[j] = lv[j]
                    li_loc[j] = li[j]
                    t_loc[j] = upper
                if lv_loc[j] != 0 or li_loc[j] != 0:  # (zero beyond the last spike: no flow from +inf)
                    e_mem, e_syn, k_u = _flow(t_loc[j] - tk, c)
                    li_loc[j] = li_loc[j] * e_syn + lv_loc[j] * ratio * k_u
                    lv_loc[j] = lv_loc[j] * e_mem
                lv_loc[j] += jumps[b, j, sp_q[order[r]]]
                t_loc[j] = tk
                r -= 1
            for u in range(n_touched):
                j = touched[u]
                e_mem, e_syn, k_u = _flow(t_loc[j] - te, c)
                li_loc[j] = li_loc[j] * e_syn + lv_loc[j] * ratio * k_u
                lv_loc[j] = lv_loc[j] * e_mem
            # everyone else: the shared flow back over [te, upper] (lambda = 0 beyond the
            # last event), then the input event's dL/dt_e and dL/dW[:, src]: one pass
            # where no neuron fired in the interval
            src = ev_src[b, e]
            w_row = w_t[src]
            g_row = gw_t[part, src]
            if math.isfinite(upper) and upper > te:
                e_mem, e_syn, k_u = _flow(upper - te, c)
                rk = ratio * k_u
                if n_touched == 0:
                    if want_times:
                        grad_times[b, ev_pos[b, e]] = _input_adjoint(lv, li, e_mem, e_syn, rk, w_row, g_row, tau_syn)
                    else:
                        _input_flow(lv, li, e_mem, e_syn, rk, g_row, tau_syn)
                    continue
                for j in range(n):
                    lv_j = lv[j]
                    li[j] = li[j] * e_syn + lv_j * rk
                    lv[j] = lv_j * e_mem
            for u in range(n_touched):
                j = touched[u]
                lv[j] = lv_loc[j]
                li[j] = li_loc[j]
            if want_times:
                grad_times[b, ev_pos[b, e]] = _input_gradients(lv, li, w_row, g_row, tau_syn)
            else:
                _weight_gradients(li, g_row, tau_syn)

    @njit(cache=_CACHE)
    def _backward_part(part, grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t, tangential, jumps):
        # the samples of chunk ``part`` (a contiguous range, in order), with their scratch
        n = w_t.shape[1]
        slots = out_t.shape[2]
        batch = ev_t.shape[0]
        parts = gw_t.shape[0]
        size = n * slots
        cnt = np.empty(n, dtype=np.int64)
        lv = np.empty(n)
        li = np.empty(n)
        sp_t = np.empty(size)
        sp_j = np.empty(size, dtype=np.int64)
        sp_q = np.empty(size, dtype=np.int64)
        t_loc = np.empty(n)
        lv_loc = np.empty(n)
        li_loc = np.empty(n)
        touched = np.empty(n, dtype=np.int64)
        stamp = np.empty(n, dtype=np.int64)
        gw_t[part] = 0.0  # (this chunk's partial sum, zeroed on its own thread)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            _adjoint_row(b, part, grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t,
                         tangential, cnt, jumps, lv, li, sp_t, sp_j, sp_q, t_loc, lv_loc, li_loc, touched, stamp)  # fmt: skip

    @njit(parallel=True, cache=_CACHE)
    def _backward_kernel(grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t, tangential, jumps):
        for part in prange(gw_t.shape[0]):  # one partial sum per chunk
            _backward_part(part, grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t, tangential, jumps)

    @njit(cache=_CACHE)
    def _backward_kernel_serial(grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t, tangential, jumps):
        for part in range(gw_t.shape[0]):
            _backward_part(part, grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, c, want_times, grad_times, gw_t, tangential, jumps)


# simulates each layer once (a second pass only when a neuron fires clearly more than
# in the previous batch).
_CAPACITY: dict[tuple[int, int], int] = {}


def feedforward_forward_numba(
    times: Tensor,
    weight: Tensor,
    p: NeuronParams,
    horizon: float = math.inf,
    max_spikes: int | None = None,
) -> tuple[Tensor, Tensor, EventList]:
    """Compiled equivalent of :func:`eventprop.engines.pytorch.feedforward.feedforward_forward`.

    Same arguments and returns (shapes, padding, ``max_spikes`` behaviour); outputs
    have ``times``' dtype and device, the computation runs on the CPU. The input
    times are validated inside the event-sorting kernel (NaN, negative or
    non-ascending times raise ``ValueError``).
    """
    require_numba()
    batch = times.shape[0]
    n_out = weight.shape[0]
    events, ev_t, ev_src = input_events(times)
    if ev_t.shape[1] == 0 or batch == 0 or n_out == 0:
        out = torch.full((batch, n_out, 1), math.inf, dtype=times.dtype, device=times.device)
        return out, torch.zeros_like(out), events

    ev_t = ev_t.astype(np.float64, copy=False)
    w_t = np.ascontiguousarray(to_numpy(weight, torch.float64).T)
    c = _constants(p, horizon)
    limit = spike_limit(max_spikes)
    key = (n_out, weight.shape[1])
    cap = _CAPACITY.get(key, 4)
    if max_spikes is not None:
        cap = min(cap, max_spikes)
    work = batch * n_out * ev_t.shape[1]
    stop_t = np.empty((batch, n_out))  # the time of the spike past the limit, where one was
    status = np.zeros(batch, dtype=np.int64)
    while True:
        out_t = np.empty((batch, n_out, cap))
        out_i = np.empty((batch, n_out, cap))
        counts = np.empty((batch, n_out), dtype=np.int64)
        launch(_forward_kernel_parallel, _forward_kernel_serial, work, ev_t, ev_src, w_t, c, limit, out_t, out_i, counts, stop_t, status)
        over = np.flatnonzero(status)
        if over.size:
            b = int(over[0])
            j = int(np.argmax(counts[b]))
            raise SpikeLimitError.exceeded(max_spikes, b, j, float(stop_t[b, j]))
        most = int(counts.max())
        if most <= cap:
            break
        cap = most  # some spikes were not stored: simulate again with room for all
    # follows the latest batch with generous slack: a second pass costs a whole simulation
    _CAPACITY[key] = max(4, 2 * most + 2)
    max_out = max(most, 1)
    if max_out < cap:
        out_t, out_i = _trim(out_t, out_i, max_out)
    out_times = torch.from_numpy(out_t).to(times.device, times.dtype)
    out_current = torch.from_numpy(out_i).to(times.device, times.dtype)
    return out_times, out_current, events


def feedforward_backward_numba(
    grad_out: Tensor,
    weight: Tensor,
    events: EventList,
    out_times: Tensor,
    out_current: Tensor,
    p: NeuronParams,
    input_shape: torch.Size,
    clip: float = 0.0,
    want_times: bool = True,
) -> tuple[Tensor | None, Tensor, int, Tensor]:
    """Compiled equivalent of :func:`eventprop.engines.pytorch.feedforward.feedforward_backward`.

    Args:
        grad_out: ``dL/d out_times``, ``(batch, out_features, max_out)``; entries at
            padding are ignored.
        weight, events, out_times, out_current: as saved by the forward.
        input_shape: shape of the forward's ``times``.
        want_times: ``False`` where the input times need no gradient: ``grad_times`` is
            then ``None`` and its sum over the neurons per input event is skipped.

    Returns:
        ``(grad_times, grad_weight, n_tangential, jumps)``: the gradients, of shapes
        ``input_shape`` and ``weight.shape`` in ``out_times``' dtype and device, the
        number of tangential spikes (``|I - theta| <= tangent_tolerance theta``, as
        :func:`eventprop.model.neuron.count_tangential` counts them), counted in the
        kernel that evaluates their jumps, and the jumps ``J_k`` of ``lambda_V`` at the
        output spikes (``out_times``' shape, 0 at padding).
    """
    require_numba()
    dtype = out_times.dtype
    batch, n_in, slots = input_shape
    n_out = weight.shape[0]
    device = out_times.device
    if events.times.shape[1] == 0 or batch == 0 or n_out == 0:
        grad_times = torch.zeros(tuple(input_shape), dtype=dtype, device=device) if want_times else None
        grad_weight = torch.zeros(tuple(weight.shape), dtype=dtype, device=device)
        return grad_times, grad_weight, 0, torch.zeros_like(out_times, dtype=dtype)

    ev_t = to_numpy(events.times, torch.float64)
    grad_times = np.zeros((batch, n_in * slots) if want_times else (batch, 0))
    gw_t = partial_sums(batch, n_in, n_out)
    tangential = np.zeros(gw_t.shape[0], dtype=np.int64)
    jumps = np.zeros(tuple(out_times.shape))
    arrays = (
        to_numpy(grad_out, torch.float64),
        to_numpy(out_times, torch.float64),
        to_numpy(out_current, torch.float64),
        np.ascontiguousarray(to_numpy(weight, torch.float64).T),
        ev_t,
        to_numpy(events.source),
        to_numpy(events.position),
        _constants(p, math.inf, clip),
    )
    work = batch * n_out * ev_t.shape[1]
    launch(_backward_kernel, _backward_kernel_serial, work, *arrays, want_times, grad_times, gw_t, tangential, jumps)
    return (
        torch.from_numpy(grad_times).reshape(tuple(input_shape)).to(device, dtype) if want_times else None,
        torch.from_numpy(chunk_total(gw_t, transpose=True)).to(device, dtype),
        int(tangential.sum()),
        torch.from_numpy(jumps).to(device, dtype),
    )
