r"""Numba engine, feed-forward LIF layers: compiled CPU kernels.

Drop-in replacement for :func:`eventprop.engines.pytorch.feedforward.feedforward_forward`
and :func:`~eventprop.engines.pytorch.feedforward.feedforward_backward`: same
arguments, same shapes, same equations (see :mod:`eventprop.model.neuron` and
:mod:`eventprop.engines.pytorch.feedforward`), same
:class:`~eventprop.model.spikes.EventList`. Instead of vectorised spike rounds, each
(batch element, neuron) pair is simulated by a scalar event loop in time order,
in parallel (``numba.prange``) over tasks = (batch element, block of neurons) when the
work is large enough to pay for waking the thread pool (``PARALLEL_MIN_WORK``), serially
otherwise:

* forward: the state ``(V, I)`` is carried from event to event with the closed-form
  flow; in each inter-event interval ``[t_e, min(t_{e+1}, horizon)]`` the first threshold
  crossing is bracketed analytically (at most one extremum of ``V``; same decisions as
  :func:`eventprop.model.neuron.crossing_bracket`; at an extremum ``V = I``, so its value
  costs one exponential) and refined to the tolerances of
  :func:`eventprop.model.neuron.solve_crossing` from a regula-falsi guess by safeguarded
  Halley steps (``V''`` comes free with ``V'``); after a spike ``V = 0`` and the
  search resumes from the spike time in the same interval. The flow factors
  ``exp(-L/tau_mem), exp(-L/tau_syn), K(L)`` of each whole interval are computed once
  per batch element and shared by its neurons, and cheap upper bounds of ``V`` skip
  the extremum for intervals that cannot reach threshold. Work is
  ``O(events + spikes)`` per pair.
* input events: validated (NaN, negative, not ascending) and merged into one
  time-ordered list per sample by a compiled kernel as well (:mod:`.events`).
* backward: the jumps ``J_k`` of ``lambda_V`` come from the reverse recurrence over
  the neuron's own spikes; ``(lambda_V, lambda_I)`` are then carried backwards in
  time through the input events with :func:`eventprop.model.neuron.adjoint_flow`
  (``O(events + spikes)`` per pair; only spikes with ``t_k > t_e`` count at event
  ``e``, as in :func:`eventprop.engines.pytorch.feedforward.adjoint_at`). Each thread handles a
  contiguous chunk of the batch; ``dL/dW`` is accumulated in one partial sum per
  chunk, reduced afterwards, so there are no races.

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
from .events import input_events, spike_limit, to_numpy, use_thread_pool
from .scalar import (
    _CLIP,
    _DOUBLE_ROOT,
    _HORIZON,
    _INF,
    _RATIO,
    _THETA,
    _TM,
    _TS,
    _ZERO,
    _constants,
    _crossing,
    _flow,
    _may_cross,
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
SCALAR_SHA256 = "95557cf31561f50775af039860f661faa3fd718a5df8868d39af51e623869040"
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
    def _interval_flows(b, ev_t, c, flows):
        # flows[e] = flow factors over the inter-event interval [t_e, min(t_{e+1}, horizon)]
        # of batch element b; shared by all neurons (bitwise the values they would compute)
        n_events = ev_t.shape[1]
        for e in range(n_events):
            te = ev_t[b, e]
            if not math.isfinite(te):
                break
            end = c[_INF]
            if e + 1 < n_events:
                end = ev_t[b, e + 1]
            length = min(end, c[_HORIZON]) - te
            if math.isfinite(length) and length > 0:
                e_mem, e_syn, k = _flow(length, c)
                flows[e, 0] = e_mem
                flows[e, 1] = e_syn
                flows[e, 2] = k

    @njit(cache=_CACHE)
    def _forward_pairs(b, j0, j1, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows):
        # Simulate neurons j0 <= j < j1 of batch element b serially (the parallel loop is
        # outside; flows: _interval_flows of b). Same decisions as
        # neuron.crossing_bracket, ordered so that the common case (no crossing) costs a
        # few products per interval: the flow over a whole interval is shared by all
        # neurons, and its end state is reused as the state at the next event.
        n_events = ev_t.shape[1]
        cap = out_t.shape[2]
        horizon = c[_HORIZON]
        zero = c[_ZERO]
        for j in range(j0, j1):
            for k in range(cap):
                out_t[b, j, k] = c[_INF]
                out_i[b, j, k] = zero
            n_ev = 0
            while n_ev < n_events and math.isfinite(ev_t[b, n_ev]):
                n_ev += 1
            count = 0
            # (v_s, i_s): state at time t_s; i_ev: current right after the last event t_ev
            v_s = zero
            i_s = zero
            t_s = zero
            i_ev = zero
            t_ev = zero
            for e in range(n_ev):
                te = ev_t[b, e]
                if e > 0 and te != t_s:
                    e_mem, e_syn, k = _flow(te - t_s, c)
                    v_s = v_s * e_mem + i_s * k
                    if t_s == t_ev:
                        i_s = i_s * e_syn
                    else:
                        i_s = i_ev * math.exp(-(te - t_ev) / c[_TS])
                i_ev = i_s + weight[j, ev_src[b, e]]
                t_ev = te
                i_s = i_ev
                t_s = te
                if not (te < horizon):
                    break
                end = c[_INF]
                if e + 1 < n_ev:
                    end = ev_t[b, e + 1]
                end = min(end, horizon)
                stop = False
                while True:
                    length = end - t_s
                    if not (length > 0):
                        break
                    v_end = c[_INF]
                    i_end = c[_INF]
                    k = c[_INF]
                    if math.isfinite(length):
                        if t_s == te:  # no spike yet in this interval: shared flow
                            e_mem = flows[e, 0]
                            e_syn = flows[e, 1]
                            k = flows[e, 2]
                        else:
                            e_mem, e_syn, k = _flow(length, c)
                        v_end = v_s * e_mem + i_s * k
                        i_end = i_s * e_syn
                    s = c[_INF]
                    if _may_cross(v_s, i_s, length, v_end, i_end, k, c):
                        s = _crossing(v_s, i_s, length, v_end, c)
                    if not (s < c[_INF]):
                        if math.isfinite(length):
                            # carry the state to the end of the interval (the next event)
                            v_s = v_end
                            i_s = i_end
                            t_s = end
                        break
                    t_k = t_s + s
                    count += 1
                    if count > limit:
                        stop_t[b, j] = t_k
                        stop = True
                        break
                    if count <= cap:
                        out_t[b, j, count - 1] = t_k
                        out_i[b, j, count - 1] = i_s * math.exp(-s / c[_TS])
                    # reset by subtraction: V = theta - theta = 0; I unchanged
                    v_s = zero
                    i_s = i_ev * math.exp(-(t_k - t_ev) / c[_TS])
                    t_s = t_k
                if stop:
                    break
            counts[b, j] = count

    @njit(cache=_CACHE)
    def _forward_task(task, n_blocks, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows):
        # task = (batch element, block of neurons); each task has its own flows row
        n_out = weight.shape[0]
        b = task // n_blocks
        block = task - b * n_blocks
        _interval_flows(b, ev_t, c, flows[task])
        _forward_pairs(
            b, block * n_out // n_blocks, (block + 1) * n_out // n_blocks,
            ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows[task],
        )

    @njit(parallel=True, cache=_CACHE)
    def _forward_kernel_parallel(ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows, n_blocks):
        for task in prange(ev_t.shape[0] * n_blocks):
            _forward_task(task, n_blocks, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows)

    @njit(cache=_CACHE)
    def _forward_kernel_serial(ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows, n_blocks):
        for task in range(ev_t.shape[0] * n_blocks):
            _forward_task(task, n_blocks, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, stop_t, flows)

    @njit(cache=_CACHE)
    def _backward_chunk(
        chunk, b0, b1, grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, grad_times, gw_part, flows, tangential
    ):
        # batch elements b0 <= b < b1 (serial); dL/dW and the count of tangential spikes
        # (|I - theta| <= tangent_tolerance theta) go to the chunk's partial sums
        n_events = ev_t.shape[1]
        n_out = weight.shape[0]
        slots_out = out_t.shape[2]
        theta = c[_THETA]
        zero = c[_ZERO]
        jumps = np.empty_like(out_t[0, 0, :])
        g_ev = np.empty_like(ev_t[0, :])
        for b in range(b0, b1):
            n_ev = 0
            while n_ev < n_events and math.isfinite(ev_t[b, n_ev]):
                n_ev += 1
            for e in range(n_ev):
                g_ev[e] = zero
            _interval_flows(b, ev_t, c, flows[chunk])  # flows[chunk, e]: from t_{e+1} back to t_e
            for j in range(n_out):
                cnt = 0
                while cnt < slots_out and math.isfinite(out_t[b, j, cnt]):
                    cnt += 1
                if cnt == 0:
                    continue
                # jumps J_k: reverse recurrence over the neuron's own spikes
                lv_plus = zero
                for k in range(cnt - 1, -1, -1):
                    if k + 1 < cnt:
                        gap = out_t[b, j, k + 1] - out_t[b, j, k]
                        lv_plus = (lv_plus + jumps[k + 1]) * math.exp(-gap / c[_TM])
                    numerator = theta * lv_plus + grad_out[b, j, k]
                    denominator = out_i[b, j, k] - theta
                    if abs(denominator) <= c[_DOUBLE_ROOT]:
                        tangential[chunk] += 1
                    if abs(denominator) < c[_CLIP]:  # the tangent safeguard (c[_CLIP] = 0: off)
                        denominator = -c[_CLIP] if denominator < 0 else c[_CLIP]
                    if denominator == 0:  # a double root: the exact value is infinite (neuron.adjoint_jump)
                        denominator = c[_DOUBLE_ROOT]
                    jumps[k] = numerator / denominator
                # adjoint carried backwards through the events; spikes at t_k > t_e only
                k = cnt - 1
                lv = zero
                li = zero
                t_c = zero
                live = False
                for e in range(n_ev - 1, -1, -1):
                    te = ev_t[b, e]
                    while k >= 0 and out_t[b, j, k] > te:
                        tk = out_t[b, j, k]
                        if live:
                            e_mem, e_syn, k_u = _flow(t_c - tk, c)
                            li = li * e_syn + lv * c[_RATIO] * k_u
                            lv = lv * e_mem
                        lv = lv + jumps[k]
                        t_c = tk
                        live = True
                        k -= 1
                    if not live:
                        continue
                    if e + 1 < n_ev and t_c == ev_t[b, e + 1] and t_c > te:
                        e_mem = flows[chunk, e, 0]
                        e_syn = flows[chunk, e, 1]
                        k_u = flows[chunk, e, 2]
                    else:
                        e_mem, e_syn, k_u = _flow(t_c - te, c)
                    li = li * e_syn + lv * c[_RATIO] * k_u
                    lv = lv * e_mem
                    t_c = te
                    src = ev_src[b, e]
                    g_ev[e] += weight[j, src] * (lv - li)
                    gw_part[chunk, j, src] += -c[_TS] * li
            for e in range(n_ev):
                grad_times[b, ev_pos[b, e]] = g_ev[e]

    @njit(parallel=True, cache=_CACHE)
    def _backward_kernel(
        grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, n_chunks, grad_times, gw_part, flows, tangential
    ):
        batch = ev_t.shape[0]
        for chunk in prange(n_chunks):
            b0 = chunk * batch // n_chunks
            b1 = (chunk + 1) * batch // n_chunks
            _backward_chunk(
                chunk, b0, b1, grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, grad_times, gw_part, flows,
                tangential,
            )

    @njit(cache=_CACHE)
    def _backward_kernel_serial(
        grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, grad_times, gw_part, flows, tangential
    ):
        _backward_chunk(
            0, 0, ev_t.shape[0], grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, grad_times, gw_part, flows,
            tangential,
        )

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
    w = to_numpy(weight, torch.float64)
    c = _constants(p, horizon)
    limit = spike_limit(max_spikes)
    key = (n_out, weight.shape[1])
    cap = _CAPACITY.get(key, 4)
    if max_spikes is not None:
        cap = min(cap, max_spikes)
    # tasks: (batch element, block of neurons), at least ~4 per thread for load balance
    parallel = use_thread_pool(batch * n_out * ev_t.shape[1])
    n_blocks = max(1, min(n_out, -(-4 * numba.get_num_threads() // batch))) if parallel else 1
    kernel = _forward_kernel_parallel if parallel else _forward_kernel_serial
    flows = np.empty((batch * n_blocks, ev_t.shape[1], 3))
    stop_t = np.empty((batch, n_out))  # the time of the spike past the limit, where one was
    while True:
        out_t = np.empty((batch, n_out, cap))
        out_i = np.empty((batch, n_out, cap))
        counts = np.empty((batch, n_out), dtype=np.int64)
        kernel(ev_t, ev_src, w, c, limit, out_t, out_i, counts, stop_t, flows, n_blocks)
        most = int(counts.max())
        if max_spikes is not None and most > max_spikes:
            b, j = np.unravel_index(int(np.argmax(counts)), counts.shape)
            raise SpikeLimitError.exceeded(max_spikes, int(b), int(j), float(stop_t[b, j]))
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
) -> tuple[Tensor, Tensor, int]:
    """Compiled equivalent of :func:`eventprop.engines.pytorch.feedforward.feedforward_backward`.

    Args:
        grad_out: ``dL/d out_times``, ``(batch, out_features, max_out)``; entries at
            padding are ignored.
        weight, events, out_times, out_current: as saved by the forward.
        input_shape: shape of the forward's ``times``.

    Returns:
        ``(grad_times, grad_weight, n_tangential)``: the gradients, of shapes
        ``input_shape`` and ``weight.shape`` in ``out_times``' dtype and device, and the
        number of tangential spikes (``|I - theta| <= tangent_tolerance theta``, as
        :func:`eventprop.model.neuron.count_tangential` counts them), counted in the
        kernel that evaluates their jumps.
    """
    require_numba()
    dtype = out_times.dtype
    batch, n_in, slots = input_shape
    n_out = weight.shape[0]
    device = out_times.device
    if events.times.shape[1] == 0 or batch == 0 or n_out == 0:
        grad_times = torch.zeros(tuple(input_shape), dtype=dtype, device=device)
        return grad_times, torch.zeros(tuple(weight.shape), dtype=dtype, device=device), 0

    ev_t = to_numpy(events.times, torch.float64)
    parallel = use_thread_pool(batch * n_out * ev_t.shape[1])
    n_chunks = max(1, min(batch, numba.get_num_threads())) if parallel else 1
    grad_times = np.zeros((batch, n_in * slots))
    gw_part = np.zeros((n_chunks, n_out, n_in))
    flows = np.empty((n_chunks, ev_t.shape[1], 3))
    tangential = np.zeros(n_chunks, dtype=np.int64)
    arrays = (
        to_numpy(grad_out, torch.float64),
        to_numpy(out_times, torch.float64),
        to_numpy(out_current, torch.float64),
        to_numpy(weight, torch.float64),
        ev_t,
        to_numpy(events.source),
        to_numpy(events.position),
        _constants(p, math.inf, clip),
    )
    if parallel:
        _backward_kernel(*arrays, n_chunks, grad_times, gw_part, flows, tangential)
    else:
        _backward_kernel_serial(*arrays, grad_times, gw_part, flows, tangential)
    grad_weight = gw_part[0] if n_chunks == 1 else gw_part.sum(axis=0)
    return (
        torch.from_numpy(grad_times).reshape(tuple(input_shape)).to(device, dtype),
        torch.from_numpy(np.ascontiguousarray(grad_weight)).to(device, dtype),
        int(tangential.sum()),
    )
