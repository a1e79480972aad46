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
  time-ordered list per sample by a compiled kernel as well.
* backward: the jumps ``J_k`` of ``lambda_V`` come from the reverse recurrence over
  the neuron's own spikes; ``(lambda_V, lambda_I)`` are then carried backwards in
  time through the input events with :func:`eventprop.model.neuron.adjoint_flow`
  (``O(events + spikes)`` per pair; only spikes with ``t_k > t_e`` count at event
  ``e``, as in :func:`eventprop.engines.pytorch.feedforward.adjoint_at`). Each thread handles a
  contiguous chunk of the batch; ``dL/dW`` is accumulated in one partial sum per
  chunk, reduced afterwards, so there are no races.

Everything is computed in the input's dtype (float32 or float64): the kernels
receive all constants as a tuple of numpy scalars of that dtype, so float32
arithmetic stays float32. Results agree with the PyTorch engine to rounding
(float64: ~1e-13 relative on spike times, ~1e-12 on gradients in practice).

The kernels and the scalar functions they call (crossing solver, flows) stay in this one
module on purpose: numba's on-disk cache (``cache=True``) does not notice edits to a
compiled function imported from another module, so a split would let stale machine code
survive a change.

Spike counts are unknown in advance: the kernel stores up to a capacity per neuron
(remembered per layer shape) and keeps counting beyond it; if any neuron exceeded the
capacity, the layer is simulated again with the exact capacity. Spikes are never
dropped; ``max_spikes`` raises :class:`~eventprop.errors.SpikeLimitError`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import FLAT_FACTOR, NeuronParams
from ...model.spikes import EventList, check_spike_values

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["numba_available", "feedforward_forward_numba", "feedforward_backward_numba"]

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

# Indices into the constants tuple ``c`` passed to the kernels (all of the data dtype).
(_TM, _TS, _THETA, _TSLOW, _GAP, _EXT, _RATIO, _FTOL, _TTOL, _MINTAU, _HALF, _ONE, _ZERO, _HORIZON, _INF, _KMAX,
 _MARGIN, _SPEAK, _PEAK_TIME, _PEAK_K, _FLAT, _CLIP, _DOUBLE_ROOT) = range(23)


def numba_available() -> bool:
    """Whether the compiled engine can run (``numba`` is importable)."""
    return numba is not None


@functools.lru_cache(maxsize=64)
def _constants(p: NeuronParams, np_dtype: type, horizon: float = math.inf, clip: float = 0.0) -> tuple:
    # A tuple of numpy scalars of the data dtype: passed by value (no reference counting
    # in the inner calls), and float32 arithmetic with them stays float32.
    eps = float(np.finfo(np_dtype).eps)
    values = [0.0] * 23
    values[_TM] = p.tau_mem
    values[_TS] = p.tau_syn
    values[_THETA] = p.threshold
    values[_TSLOW] = p.tau_slow
    values[_GAP] = p.rate_gap
    values[_EXT] = (p.tau_syn - p.tau_mem) / p.tau_mem
    values[_RATIO] = p.tau_mem / p.tau_syn
    values[_FTOL] = 8 * eps
    values[_TTOL] = 16 * eps
    values[_FLAT] = FLAT_FACTOR
    values[_CLIP] = clip
    values[_DOUBLE_ROOT] = 8 * math.sqrt(eps) * p.threshold  # neuron.tangent_tolerance
    values[_MINTAU] = min(p.tau_mem, p.tau_syn)
    values[_HALF] = 0.5
    values[_ONE] = 1.0
    values[_ZERO] = 0.0
    values[_HORIZON] = float(horizon)
    values[_INF] = math.inf
    # Upper bound of K (its maximum, enlarged a little), the time of that maximum
    # (shrunk a little) and a relative rounding margin: on [0, L],
    # V <= max(v0, 0) + max(i0, 0) K(min(L, s_peak)) rules out most intervals cheaply.
    ext = values[_EXT]
    if ext == 0:
        s_peak = p.tau_syn
    elif 1 + ext > 0:
        s_peak = p.tau_syn * (math.log1p(ext) / ext)
    else:  # tau_syn / tau_mem below rounding (ext rounds to -1): the same peak, as a ratio of logs
        s_peak = math.log(p.tau_mem / p.tau_syn) / (1 / p.tau_syn - 1 / p.tau_mem)
    k_peak = (s_peak / p.tau_mem) * math.exp(-s_peak / p.tau_slow) * (
        math.expm1(-s_peak * p.rate_gap) / (-s_peak * p.rate_gap) if p.rate_gap * s_peak != 0 else 1.0
    )
    values[_KMAX] = k_peak * (1 + 1e-6)
    values[_MARGIN] = 64 * eps
    values[_SPEAK] = s_peak * (1 - 1e-6)  # K increases on [0, s_peak]
    # exact extremum of V when V = 0 (at t = 0 and after every reset): at s_peak,
    # V = I = i0 exp(-s_peak / tau_syn) (= i0 K(s_peak))
    values[_PEAK_TIME] = s_peak
    values[_PEAK_K] = math.exp(-s_peak / p.tau_syn)
    return tuple(np_dtype(v) for v in values)


if numba is not None:

    @njit(cache=True)
    def _phi(x, c):
        # expm1(x) / x with phi(0) = 1, for x <= 0
        if x == 0:
            return c[_ONE]
        return math.expm1(x) / x

    @njit(cache=True)
    def _flow(s, c):
        # (exp(-s/tau_mem), exp(-s/tau_syn), K(s)) with
        # K(s) = (s / tau_mem) exp(-s / tau_slow) phi(-s |1/tau_syn - 1/tau_mem|);
        # exp(-s/tau_slow) is shared (bitwise the same value) with the other two.
        e_slow = math.exp(-s / c[_TSLOW])
        e_mem = e_slow if c[_TM] == c[_TSLOW] else math.exp(-s / c[_TM])
        e_syn = e_slow if c[_TS] == c[_TSLOW] else math.exp(-s / c[_TS])
        return e_mem, e_syn, (s / c[_TM]) * e_slow * _phi(-s * c[_GAP], c)

    @njit(cache=True)
    def _extremum_voltage(v0, i0, s, c):
        # V at its extremum s (from _extremum): there V' = (I - V) / tau_mem = 0, so
        # V(s) = I(s) = i0 exp(-s / tau_syn): one exponential instead of three. Within
        # rounding of the threshold (a near-tangential crossing) the value is recomputed
        # as _solve computes V, so that the crossing decision and the root agree.
        if v0 == 0 and s == c[_PEAK_TIME]:
            v = i0 * c[_PEAK_K]
        else:
            v = i0 * math.exp(-s / c[_TS])
        if abs(v - c[_THETA]) <= c[_MARGIN] * c[_THETA]:
            e_mem, e_syn, k = _flow(s, c)
            v = v0 * e_mem + i0 * k
        return v

    @njit(cache=True)
    def _extremum(v0, i0, c):
        # local time of the single extremum of V (+inf if none), as neuron.voltage_extremum
        if i0 == 0:
            return c[_INF]
        if v0 == 0:  # at t = 0 and after a reset: the peak of the PSP kernel
            return c[_PEAK_TIME]
        q = (i0 - v0) / i0
        y = c[_EXT] * q
        if not (q > 0 and c[_ONE] + y > 0):
            return c[_INF]
        psi = c[_ONE]
        if y != 0:
            psi = math.log1p(y) / y
        return c[_TS] * q * psi

    @njit(cache=True)
    def _event_row(b, flat, slots, ev_t, ev_pos, counts, status):
        # Validate and merge one sample's spike trains (flat: (batch, neurons * slots))
        # into a time-ordered event list: ev_t/ev_pos rows get the finite times in
        # ascending order (stable: ties keep input order; the caller pads); counts[b] =
        # number of events; status[b] bits: 1 NaN, 2 negative time, 4 not ascending.
        n = flat.shape[1]
        bad = 0
        m = 0
        for q in range(n):
            t = flat[b, q]
            if t != t:
                bad |= 1
            elif t < 0:
                bad |= 2
            if q % slots != 0 and t < flat[b, q - 1]:
                bad |= 4
            if t < math.inf and t == t:
                ev_t[b, m] = t
                ev_pos[b, m] = q
                m += 1
        order = np.argsort(ev_t[b, :m], kind="mergesort")
        times = ev_t[b, :m][order]
        positions = ev_pos[b, :m][order]
        ev_t[b, :m] = times
        ev_pos[b, :m] = positions
        counts[b] = m
        status[b] = bad

    @njit(parallel=True, cache=True)
    def _event_kernel_parallel(flat, slots, ev_t, ev_pos, counts, status):
        for b in prange(flat.shape[0]):
            _event_row(b, flat, slots, ev_t, ev_pos, counts, status)

    @njit(cache=True)
    def _event_kernel_serial(flat, slots, ev_t, ev_pos, counts, status):
        for b in range(flat.shape[0]):
            _event_row(b, flat, slots, ev_t, ev_pos, counts, status)

    @njit(cache=True)
    def _event_arrays(ev_t, ev_pos, counts, slots):
        # The merged rows trimmed to the longest one, contiguous, padded with +inf
        # events at position 0 (never read), and the source neuron of every event.
        batch = ev_t.shape[0]
        n_events = 0
        for b in range(batch):
            n_events = max(n_events, counts[b])
        times = np.full((batch, n_events), np.inf, dtype=ev_t.dtype)
        positions = np.zeros((batch, n_events), dtype=np.int64)
        sources = np.zeros((batch, n_events), dtype=np.int64)
        for b in range(batch):
            for e in range(counts[b]):
                times[b, e] = ev_t[b, e]
                positions[b, e] = ev_pos[b, e]
                sources[b, e] = ev_pos[b, e] // slots
        return times, positions, sources

    @njit(cache=True)
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

    @njit(cache=True)
    def _solve(v0, i0, lo, hi, v_lo, v_hi, c):
        # Root of V(s) = theta in [lo, hi] (V(lo) = v_lo < theta <= V(hi) = v_hi; v_lo
        # may be NaN = unknown) to the tolerances of neuron.solve_crossing: a
        # regula-falsi first guess, then Halley steps (V'' costs no extra exponential:
        # tau_mem V' = I - V, tau_mem V'' = -I / tau_syn - V'), falling back to Newton
        # and then to bisection whenever a step leaves the bracket, which shrinks at
        # every iteration.
        theta = c[_THETA]
        x = c[_HALF] * (lo + hi)
        if v_hi > v_lo:
            guess = lo + (hi - lo) * ((theta - v_lo) / (v_hi - v_lo))
            if guess >= lo and guess <= hi:
                x = guess
        f_tol = c[_FTOL] * (theta + abs(v0) + abs(i0))
        t_tol = c[_TTOL] * (abs(hi) + c[_MINTAU])
        for _ in range(100):
            e_mem, e_syn, k = _flow(x, c)
            v = v0 * e_mem + i0 * k
            f = v - theta
            i = i0 * e_syn
            slope = (i - v) / c[_TM]
            # |f| at rounding level is enough only where V is not flat: near a tangential
            # crossing (slope -> 0) the root is bracketed down to t_tol instead
            if abs(f) <= f_tol and abs(f) <= slope * (c[_FLAT] * t_tol):
                return x
            if f < 0:
                lo = x
            else:
                hi = x
            x_new = c[_HALF] * (lo + hi)
            if slope > 0:
                curvature = (-i / c[_TS] - slope) / c[_TM]
                denominator = 2 * slope * slope - f * curvature
                halley = x - 2 * f * slope / denominator
                newton = x - f / slope
                if denominator > 0 and halley >= lo and halley <= hi:
                    x_new = halley
                elif newton >= lo and newton <= hi:
                    x_new = newton
            converged = abs(x_new - x) <= t_tol or hi - lo <= t_tol
            x = x_new
            if converged:
                return x
        return x

    @njit(cache=True)
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

    @njit(cache=True)
    def _forward_pairs(b, j0, j1, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows):
        # Simulate neurons j0 <= j < j1 of batch element b serially (the parallel loop is
        # outside; flows: _interval_flows of b). Same decisions as
        # neuron.crossing_bracket, ordered so that the common case (no crossing) costs a
        # few products per interval: the flow over a whole interval is shared by all
        # neurons, and its end state is reused as the state at the next event.
        n_events = ev_t.shape[1]
        cap = out_t.shape[2]
        theta = c[_THETA]
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
                    rising = i_s > v_s
                    lo = zero
                    hi = length
                    v_lo = v_s
                    v_hi = c[_INF]
                    crosses = False
                    if math.isfinite(length):
                        if t_s == te:  # no spike yet in this interval: shared flow
                            e_mem = flows[e, 0]
                            e_syn = flows[e, 1]
                            k = flows[e, 2]
                        else:
                            e_mem, e_syn, k = _flow(length, c)
                        v_end = v_s * e_mem + i_s * k
                        i_end = i_s * e_syn
                        v_hi = v_end
                        k_bound = k if length <= c[_SPEAK] else c[_KMAX]
                    else:
                        k_bound = c[_KMAX]
                    # can V reach theta at all? max V <= max(v0, 0) + max(i0, 0) max K, and
                    # at an inner maximum V = I <= i0
                    bound = min(max(v_s, zero) + max(i_s, zero) * k_bound, i_s)
                    bounded = bound + c[_MARGIN] * (theta + abs(v_s) + abs(i_s) * k_bound) >= theta
                    if math.isfinite(length):
                        if v_end >= theta:
                            s_ext = _extremum(v_s, i_s, c)
                            crosses = True
                            if s_ext < length:
                                if rising:  # maximum inside: crossing before it
                                    hi = s_ext
                                    v_hi = _extremum_voltage(v_s, i_s, s_ext, c)
                                    crosses = v_hi >= theta
                                else:  # minimum inside: crossing after it
                                    lo = s_ext
                                    v_lo = math.nan  # not computed: no regula-falsi guess
                        elif rising and not (i_end > v_end) and bounded:
                            # maximum inside the interval (V rises at start, not at the end)
                            s_ext = _extremum(v_s, i_s, c)
                            if s_ext < length:
                                hi = s_ext
                                v_hi = _extremum_voltage(v_s, i_s, s_ext, c)
                                crosses = v_hi >= theta
                        if not crosses:
                            # carry the state to the end of the interval (the next event)
                            v_s = v_end
                            i_s = i_end
                            t_s = end
                            break
                    else:
                        # open-ended: V -> 0, so only a maximum can cross
                        if not (rising and bounded):
                            break
                        s_ext = _extremum(v_s, i_s, c)
                        if not math.isfinite(s_ext):
                            break
                        v_hi = _extremum_voltage(v_s, i_s, s_ext, c)
                        if not (v_hi >= theta):
                            break
                        hi = s_ext
                    s = _solve(v_s, i_s, lo, hi, v_lo, v_hi, c)
                    t_k = t_s + s
                    count += 1
                    if count > limit:
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

    @njit(cache=True)
    def _forward_task(task, n_blocks, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows):
        # task = (batch element, block of neurons); each task has its own flows row
        n_out = weight.shape[0]
        b = task // n_blocks
        block = task - b * n_blocks
        _interval_flows(b, ev_t, c, flows[task])
        _forward_pairs(
            b, block * n_out // n_blocks, (block + 1) * n_out // n_blocks,
            ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows[task],
        )

    @njit(parallel=True, cache=True)
    def _forward_kernel_parallel(ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows, n_blocks):
        for task in prange(ev_t.shape[0] * n_blocks):
            _forward_task(task, n_blocks, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows)

    @njit(cache=True)
    def _forward_kernel_serial(ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows, n_blocks):
        for task in range(ev_t.shape[0] * n_blocks):
            _forward_task(task, n_blocks, ev_t, ev_src, weight, c, limit, out_t, out_i, counts, flows)

    @njit(cache=True)
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

    @njit(parallel=True, cache=True)
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

    @njit(cache=True)
    def _backward_kernel_serial(
        grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, grad_times, gw_part, flows, tangential
    ):
        _backward_chunk(
            0, 0, ev_t.shape[0], grad_out, out_t, out_i, weight, ev_t, ev_src, ev_pos, c, grad_times, gw_part, flows,
            tangential,
        )


# Below this much work (batch x neurons x events, or input entries when sorting events)
# a kernel runs serially: waking the thread pool costs more than it saves.
PARALLEL_MIN_WORK = 20_000


def _parallel(work: int) -> bool:
    return work >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1


def _require() -> None:
    if numba is None:
        raise RuntimeError("the numba engine needs the 'numba' package (pip install numba)")


def _np_dtype(dtype: torch.dtype) -> type:
    if dtype not in _DTYPES:
        raise ValueError(f"the numba engine supports float32 and float64, got {dtype}")
    return _DTYPES[dtype]


def _to_numpy(x: Tensor, dtype: torch.dtype | None = None) -> np.ndarray:
    """A C-contiguous numpy view (a copy only where needed) of ``x`` on the CPU in ``dtype``."""
    x = x.detach()
    if x.device.type != "cpu" or (dtype is not None and x.dtype != dtype):
        x = x.to("cpu", dtype)
    a = x.numpy()
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _events(times: Tensor) -> tuple[EventList, np.ndarray, np.ndarray]:
    """Validated, time-ordered events of ``times`` (see :func:`eventprop.model.spikes.sorted_events`).

    Returns the :class:`~eventprop.model.spikes.EventList` (trimmed to the longest sample)
    and its times and sources as numpy arrays. NaN, negative or non-ascending input
    times raise the ``ValueError`` of :func:`eventprop.model.spikes.check_spike_values`.
    """
    batch, neurons, slots = times.shape
    flat = _to_numpy(times.reshape(batch, neurons * slots))
    n = flat.shape[1]
    ev_t = np.empty((batch, n), dtype=flat.dtype)
    ev_pos = np.empty((batch, n), dtype=np.int64)
    counts = np.zeros(batch, dtype=np.int64)
    status = np.zeros(batch, dtype=np.int64)
    if batch and n:
        kernel = _event_kernel_parallel if _parallel(batch * n) else _event_kernel_serial
        kernel(flat, slots, ev_t, ev_pos, counts, status)
        if status.any():
            check_spike_values(times)  # raises the precise error
            raise AssertionError("event kernel flagged valid spike times")  # pragma: no cover
    ev_t, ev_pos, ev_src = _event_arrays(ev_t, ev_pos, counts, slots)
    device = times.device
    events = EventList(
        times=torch.from_numpy(ev_t).to(device),
        source=torch.from_numpy(ev_src).to(device),
        position=torch.from_numpy(ev_pos).to(device),
    )
    return events, ev_t, ev_src


# Spike capacity per neuron remembered per layer shape, so that training usually
# simulates each layer once (a second pass only when a neuron fires clearly more than
# in the previous batch).
_CAPACITY: dict[tuple[int, int], int] = {}
_NO_LIMIT = np.int64(np.iinfo(np.int64).max)


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
    _require()
    np_dtype = _np_dtype(times.dtype)
    batch = times.shape[0]
    n_out = weight.shape[0]
    events, ev_t, ev_src = _events(times)
    if ev_t.shape[1] == 0 or batch == 0 or n_out == 0:
        out = torch.full((batch, n_out, 1), math.inf, dtype=times.dtype, device=times.device)
        return out, torch.zeros_like(out), events

    w = _to_numpy(weight, times.dtype)
    c = _constants(p, np_dtype, horizon)
    limit = np.int64(max_spikes) if max_spikes is not None else _NO_LIMIT
    key = (n_out, weight.shape[1])
    cap = _CAPACITY.get(key, 4)
    if max_spikes is not None:
        cap = min(cap, max_spikes)
    # tasks: (batch element, block of neurons), at least ~4 per thread for load balance
    parallel = _parallel(batch * n_out * ev_t.shape[1])
    n_blocks = max(1, min(n_out, -(-4 * numba.get_num_threads() // batch))) if parallel else 1
    kernel = _forward_kernel_parallel if parallel else _forward_kernel_serial
    flows = np.empty((batch * n_blocks, ev_t.shape[1], 3), dtype=np_dtype)
    while True:
        out_t = np.empty((batch, n_out, cap), dtype=np_dtype)
        out_i = np.empty((batch, n_out, cap), dtype=np_dtype)
        counts = np.empty((batch, n_out), dtype=np.int64)
        kernel(ev_t, ev_src, w, c, limit, out_t, out_i, counts, flows, n_blocks)
        most = int(counts.max())
        if max_spikes is not None and most > max_spikes:
            b, j = np.unravel_index(int(np.argmax(counts)), counts.shape)
            stored = min(max_spikes, cap)
            time = float(out_t[b, j, stored - 1]) if stored == max_spikes else None
            raise SpikeLimitError.exceeded(max_spikes, int(b), int(j), time)
        if most <= cap:
            break
        cap = most  # some spikes were not stored: simulate again with room for all
    # follows the latest batch with generous slack: a second pass costs a whole simulation
    _CAPACITY[key] = max(4, 2 * most + 2)
    max_out = max(most, 1)
    if max_out < cap:
        out_t, out_i = _trim(out_t, out_i, max_out)
    out_times = torch.from_numpy(out_t).to(times.device)
    out_current = torch.from_numpy(out_i).to(times.device)
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
    _require()
    dtype = out_times.dtype
    np_dtype = _np_dtype(dtype)
    batch, n_in, slots = input_shape
    n_out = weight.shape[0]
    device = out_times.device
    if events.times.shape[1] == 0 or batch == 0 or n_out == 0:
        grad_times = torch.zeros(tuple(input_shape), dtype=dtype, device=device)
        return grad_times, torch.zeros(tuple(weight.shape), dtype=dtype, device=device), 0

    ev_t = _to_numpy(events.times, dtype)
    parallel = _parallel(batch * n_out * ev_t.shape[1])
    n_chunks = max(1, min(batch, numba.get_num_threads())) if parallel else 1
    grad_times = np.zeros((batch, n_in * slots), dtype=np_dtype)
    gw_part = np.zeros((n_chunks, n_out, n_in), dtype=np_dtype)
    flows = np.empty((n_chunks, ev_t.shape[1], 3), dtype=np_dtype)
    tangential = np.zeros(n_chunks, dtype=np.int64)
    arrays = (
        _to_numpy(grad_out, dtype),
        _to_numpy(out_times),
        _to_numpy(out_current, dtype),
        _to_numpy(weight, dtype),
        ev_t,
        _to_numpy(events.source),
        _to_numpy(events.position),
        _constants(p, np_dtype, math.inf, clip),
    )
    if parallel:
        _backward_kernel(*arrays, n_chunks, grad_times, gw_part, flows, tangential)
    else:
        _backward_kernel_serial(*arrays, grad_times, gw_part, flows, tangential)
    grad_weight = gw_part[0] if n_chunks == 1 else gw_part.sum(axis=0)
    return (
        torch.from_numpy(grad_times).reshape(tuple(input_shape)).to(device),
        torch.from_numpy(np.ascontiguousarray(grad_weight)).to(device),
        int(tangential.sum()),
    )
