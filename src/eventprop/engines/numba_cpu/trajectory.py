r"""Numba engine, voltage trajectories: compiled streaming queries and their adjoint sweeps.

A :class:`CompiledTrajectory` keeps the events only (:class:`~eventprop.model.trajectory.VoltageTrajectory`:
times, sources, the current per source). Each query is one compiled pass over a
sample's events with the state ``(V, I)`` of all neurons, in parallel over samples:

* forward: between events the flow factors ``exp(-d/tau_mem)``, ``exp(-d/tau_syn)``,
  ``K(d)`` are computed once and shared by the neurons; an event of source ``s`` adds
  ``current[:, s]`` to ``I`` (and ``-theta`` to ``V`` of the neuron that fired, for a
  LIF layer's own spike). :meth:`~CompiledTrajectory.max` keeps per neuron the largest
  candidate (segment starts, ends and interior stationary points, as the PyTorch
  engine), neuron by neuron over the sample's flow factors computed once (a readout's
  few neurons vectorise poorly; one neuron's state and best candidate stay in
  registers); :meth:`~CompiledTrajectory.values` evaluates ``V`` at the query times.
  Work ``O((events + points) x neurons)``, memory ``O(neurons)`` per sample besides the
  results.
* backward: the same events in reverse with the adjoint ``(lambda_V, lambda_I)`` of
  every neuron, ``lambda_X(t) = dQ/dX(t)`` for the differentiated quantity ``Q``. A
  query point ``tau`` of neuron ``n`` with upstream gradient ``g``, evaluated from the
  state just after event ``k``, enters at ``e_k`` as
  ``lambda_V += g exp(-(tau - e_k)/tau_mem)``, ``lambda_I += g K(tau - e_k)``; between
  events ``lambda_V <- lambda_V exp(-d/tau_mem)``,
  ``lambda_I <- lambda_I exp(-d/tau_syn) + lambda_V K(d)`` (the transposed flow). At
  event ``k`` (jumps ``a = current[n, s]``, ``b``)::

      dQ/dcurrent[n, s] += lambda_I,n
      dQ/de_k = sum_n [ lambda_V,n (b_n - a_n) / tau_mem + lambda_I,n a_n / tau_syn ]

  (moving an event later by ``dt`` leaves its jump ``j`` un-flowed for ``dt``: the
  state changes by ``-A j dt`` with the generator ``A`` of the linear ODE). A query
  time itself gets ``g dV/dt = g (I - V) / tau_mem`` at the point: for a maximum at a
  segment end or start that is the event it coincides with. Work as the forward; the
  maximum's adjoint, neuron by neuron as its forward, starts at the event its maximum
  is evaluated from (the adjoint is zero after it).

The current gradients are summed over a number of batch chunks that depends on the
batch size only, in a fixed order: they do not depend on the number of threads.
Everything is computed in float64 and rounded to the trajectory's dtype. The backward is
not itself differentiable: ``create_graph=True`` through it raises a ``RuntimeError``
(:func:`eventprop.errors.refuse_create_graph`; the PyTorch engine's trajectory is
differentiable twice). A NaN voltage is the maximum wherever it occurs (as
``torch.argmax`` picks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import refuse_create_graph
from ...model.neuron import NeuronParams
from ...model.spikes import ValueChecks
from ...model.trajectory import VoltageTrajectory
from .chunks import chunk_total, partial_sums
from .events import to_numpy, window_order
from .threads import launch
from .scalar import _INF, _THETA, _TM, _TS, _constants, _dot, _extremum, _flow, require_numba, source_sha256

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["CompiledTrajectory"]

#: SHA-256 of :mod:`.scalar`'s source when these kernels were last checked against it; a
#: mismatch compiles them without numba's on-disk cache (see :mod:`.scalar`).
SCALAR_SHA256 = "001c2940016bc489ef8bb7f3058a54959c0ba7e03dfa5f569f15739de0fca4c8"
_CACHE = source_sha256() == SCALAR_SHA256

if numba is not None:

    @njit(cache=_CACHE)
    def _advance(v, i, d, c):
        # flow every neuron's state by d >= 0
        if d > 0:
            e_mem, e_syn, k = _flow(d, c)
            for n in range(v.shape[0]):
                v_n = v[n]
                i_n = i[n]
                v[n] = v_n * e_mem + i_n * k
                i[n] = i_n * e_syn

    @njit(cache=_CACHE)
    def _jump(v, i, src, cur_t, n_inputs, c):
        # the jumps of an event of source src (-1: padding, none)
        if src >= 0:
            for n in range(v.shape[0]):
                i[n] += cur_t[src, n]
            if src >= n_inputs:
                v[src - n_inputs] -= c[_THETA]

    @njit(cache=_CACHE)
    def _event_adjoint(b, k, part, ev_t, ev_src, cur_t, n_inputs, c, lv, li, grad_t, gcur):
        # gradients at event k from lambda just after it, then lambda carried back to
        # just after event k - 1 (or t = 0)
        src = ev_src[b, k]
        if src >= 0:
            inv_m = 1.0 / c[_TM]
            g_row = gcur[part, src]
            for n in range(lv.shape[0]):
                g_row[n] += li[n]
            acc = _dot(cur_t[src], lv, li, -inv_m, 1.0 / c[_TS])
            if src >= n_inputs:
                acc -= c[_THETA] * lv[src - n_inputs] * inv_m
            grad_t[b, k] += acc
        prev = ev_t[b, k - 1] if k > 0 else 0.0
        d = ev_t[b, k] - prev
        if d > 0:
            e_mem, e_syn, kk = _flow(d, c)
            for n in range(lv.shape[0]):
                lv_n = lv[n]
                li[n] = li[n] * e_syn + lv_n * kk
                lv[n] = lv_n * e_mem

    # ------------------------------------------------------------------ maximum

    @njit(cache=_CACHE)
    def _segment_flows(b, ev_t, window, c):
        # the segments of sample b (segment k + 1 from event k, or t = 0 for k = -1, to the
        # next event or the window): start, length and flow factors, shared by the neurons
        n_events = ev_t.shape[1]
        start = np.empty(n_events + 1)
        length = np.empty(n_events + 1)
        e_mem = np.empty(n_events + 1)
        e_syn = np.empty(n_events + 1)
        kk = np.empty(n_events + 1)
        t = 0.0
        for k in range(-1, n_events):
            end = ev_t[b, k + 1] if k + 1 < n_events else window
            start[k + 1] = t
            length[k + 1] = end - t
            e_mem[k + 1], e_syn[k + 1], kk[k + 1] = _flow(end - t, c)
            t = end
        return start, length, e_mem, e_syn, kk

    @njit(cache=_CACHE)
    def _max_row(b, ev_t, ev_src, cur_t, n_inputs, window, c, best, t_best, seg, offset, tie, slope):
        # One sample: the first largest candidate per neuron, as ScanTrajectory.max. seg:
        # the last event applied (-1: none); offset: the time after it; tie: the event the
        # maximum coincides with (-1: none); slope: dV/dt there. Neuron by neuron (a
        # readout has few neurons: each one's state and best candidate stay in registers)
        # over the segments' shared flow factors.
        n_neurons = cur_t.shape[1]
        n_events = ev_t.shape[1]
        inv_m = 1.0 / c[_TM]
        theta = c[_THETA]
        starts, lengths, e_mems, e_syns, kks = _segment_flows(b, ev_t, window, c)
        for n in range(n_neurons):
            v = 0.0
            i = 0.0
            top = -c[_INF]
            top_t = 0.0
            top_seg = -1
            top_offset = 0.0
            top_tie = -1
            top_slope = 0.0
            own = n_inputs + n  # the source of this neuron's own spikes (a LIF layer's trajectory)
            for k in range(-1, n_events):
                if k >= 0:
                    src = ev_src[b, k]
                    if src >= 0:
                        i += cur_t[src, n]
                        if src == own:
                            v -= theta
                start = starts[k + 1]
                length = lengths[k + 1]
                e_mem = e_mems[k + 1]
                kk = kks[k + 1]
                v0 = v
                i0 = i
                v_end = v0 * e_mem + i0 * kk
                i_end = i0 * e_syns[k + 1]
                # a NaN candidate wins and stays (as torch.argmax picks the first NaN)
                if v0 > top or (v0 != v0 and top == top):  # the segment's start
                    top = v0
                    top_t = start
                    top_seg = k
                    top_offset = 0.0
                    top_tie = k
                    top_slope = (i0 - v0) * inv_m
                if v_end > top or (v_end != v_end and top == top):  # its end
                    top = v_end
                    top_t = start + length
                    top_seg = k
                    top_offset = length
                    top_tie = k + 1 if k + 1 < n_events else -1
                    top_slope = (i_end - v_end) * inv_m
                # an inner maximum: rising at the start, not at the end; there V = I < i0
                if i0 > v0 and not (i_end > v_end) and i0 > top:
                    s = _extremum(v0, i0, c)
                    if s < length:
                        em, es, ks = _flow(s, c)
                        v_in = v0 * em + i0 * ks
                        if v_in > top or (v_in != v_in and top == top):
                            top = v_in
                            top_t = start + s
                            top_seg = k
                            top_offset = s
                            top_tie = -1
                            top_slope = 0.0
                v = v_end
                i = i_end
            best[b, n] = top
            t_best[b, n] = top_t
            seg[b, n] = top_seg
            offset[b, n] = top_offset
            tie[b, n] = top_tie
            slope[b, n] = top_slope

    @njit(parallel=True, cache=_CACHE)
    def _max_kernel(ev_t, ev_src, cur_t, n_inputs, window, c, best, t_best, seg, offset, tie, slope):
        for b in prange(ev_t.shape[0]):
            _max_row(b, ev_t, ev_src, cur_t, n_inputs, window, c, best, t_best, seg, offset, tie, slope)

    @njit(cache=_CACHE)
    def _max_kernel_serial(ev_t, ev_src, cur_t, n_inputs, window, c, best, t_best, seg, offset, tie, slope):
        for b in range(ev_t.shape[0]):
            _max_row(b, ev_t, ev_src, cur_t, n_inputs, window, c, best, t_best, seg, offset, tie, slope)

    @njit(cache=_CACHE)
    def _max_adjoint_part(part, grad, ev_t, ev_src, cur_t, n_inputs, c, seg, offset, tie, slope, grad_t, gcur):
        # The samples of chunk ``part``, neuron by neuron (as _max_row): a neuron's adjoint
        # is zero after the state its maximum is evaluated from (the one after event
        # seg), so it is carried back from there only, over the shared flow factors.
        n_neurons = cur_t.shape[1]
        batch = ev_t.shape[0]
        parts = gcur.shape[0]
        inv_m = 1.0 / c[_TM]
        inv_s = 1.0 / c[_TS]
        theta = c[_THETA]
        gcur[part] = 0.0  # (this chunk's partial sum, zeroed on its own thread)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            _, lengths, e_mems, e_syns, kks = _segment_flows(b, ev_t, 0.0, c)  # (only gaps between events used)
            for n in range(n_neurons):
                g = grad[b, n]
                if g == 0:
                    continue
                e_mem, e_syn, kk = _flow(offset[b, n], c)
                lv = g * e_mem
                li = g * kk
                if tie[b, n] >= 0:
                    grad_t[b, tie[b, n]] += g * slope[b, n]
                own = n_inputs + n
                for k in range(seg[b, n], -1, -1):
                    # the gradients at event k from lambda just after it (as _event_adjoint)
                    src = ev_src[b, k]
                    if src >= 0:
                        gcur[part, src, n] += li
                        term = cur_t[src, n] * (-inv_m * lv + inv_s * li)
                        if src == own:
                            term -= theta * lv * inv_m
                        grad_t[b, k] += term
                    # then lambda carried back to just after event k - 1 (or t = 0)
                    if lengths[k] > 0:
                        li = li * e_syns[k] + lv * kks[k]
                        lv = lv * e_mems[k]

    @njit(parallel=True, cache=_CACHE)
    def _max_adjoint_kernel(grad, ev_t, ev_src, cur_t, n_inputs, c, seg, offset, tie, slope, grad_t, gcur):
        for part in prange(gcur.shape[0]):
            _max_adjoint_part(part, grad, ev_t, ev_src, cur_t, n_inputs, c, seg, offset, tie, slope, grad_t, gcur)

    @njit(cache=_CACHE)
    def _max_adjoint_kernel_serial(grad, ev_t, ev_src, cur_t, n_inputs, c, seg, offset, tie, slope, grad_t, gcur):
        for part in range(gcur.shape[0]):
            _max_adjoint_part(part, grad, ev_t, ev_src, cur_t, n_inputs, c, seg, offset, tie, slope, grad_t, gcur)

    # ------------------------------------------------------------------ values at times

    @njit(cache=_CACHE)
    def _values_row(b, t, gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope):
        # out[b, p, n] = V_n(t[b, p]) from the state after event gov[b, p] (nondecreasing,
        # validated by VoltageTrajectory.values); out_slope (if not empty) gets dV/dt there.
        n_neurons = cur_t.shape[1]
        n_events = ev_t.shape[1]
        n_points = t.shape[1]
        slopes = out_slope.shape[0] > 0
        inv_m = 1.0 / c[_TM]
        v = np.zeros(n_neurons)
        i = np.zeros(n_neurons)
        prev = 0.0
        q = 0
        for k in range(-1, n_events):
            if k >= 0:
                _advance(v, i, ev_t[b, k] - prev, c)
                prev = ev_t[b, k]
                _jump(v, i, ev_src[b, k], cur_t, n_inputs, c)
            while q < n_points and gov[b, q] == k:
                e_mem, e_syn, kk = _flow(t[b, q] - prev, c)
                for n in range(n_neurons):
                    v_q = v[n] * e_mem + i[n] * kk
                    out[b, q, n] = v_q
                    if slopes:
                        out_slope[b, q, n] = (i[n] * e_syn - v_q) * inv_m
                q += 1

    @njit(parallel=True, cache=_CACHE)
    def _values_kernel(t, gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope):
        for b in prange(ev_t.shape[0]):
            _values_row(b, t, gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope)

    @njit(cache=_CACHE)
    def _values_kernel_serial(t, gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope):
        for b in range(ev_t.shape[0]):
            _values_row(b, t, gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope)

    @njit(cache=_CACHE)
    def _values_adjoint_part(part, grad, t, gov, out_slope, ev_t, ev_src, cur_t, n_inputs, c, grad_t, grad_q, gcur):
        # grad (B, P, N): dQ/dV at the points; grad_q (B, P) gets dQ/dt of the points
        # when out_slope is not empty.
        n_neurons = cur_t.shape[1]
        n_events = ev_t.shape[1]
        n_points = t.shape[1]
        batch = ev_t.shape[0]
        parts = gcur.shape[0]
        slopes = out_slope.shape[0] > 0
        lv = np.empty(n_neurons)
        li = np.empty(n_neurons)
        gcur[part] = 0.0  # (this chunk's partial sum, zeroed on its own thread)
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            lv[:] = 0.0
            li[:] = 0.0
            q = n_points - 1
            for k in range(n_events - 1, -2, -1):
                origin = ev_t[b, k] if k >= 0 else 0.0
                while q >= 0 and gov[b, q] == k:
                    e_mem, e_syn, kk = _flow(t[b, q] - origin, c)
                    acc = 0.0
                    for n in range(n_neurons):
                        g = grad[b, q, n]
                        lv[n] += g * e_mem
                        li[n] += g * kk
                        if slopes:
                            acc += g * out_slope[b, q, n]
                    if slopes:
                        grad_q[b, q] = acc
                    q -= 1
                if k < 0:
                    break
                _event_adjoint(b, k, part, ev_t, ev_src, cur_t, n_inputs, c, lv, li, grad_t, gcur)

    @njit(parallel=True, cache=_CACHE)
    def _values_adjoint_kernel(grad, t, gov, out_slope, ev_t, ev_src, cur_t, n_inputs, c, grad_t, grad_q, gcur):
        for part in prange(gcur.shape[0]):
            _values_adjoint_part(part, grad, t, gov, out_slope, ev_t, ev_src, cur_t, n_inputs, c, grad_t, grad_q, gcur)

    @njit(cache=_CACHE)
    def _values_adjoint_kernel_serial(grad, t, gov, out_slope, ev_t, ev_src, cur_t, n_inputs, c, grad_t, grad_q, gcur):
        for part in range(gcur.shape[0]):
            _values_adjoint_part(part, grad, t, gov, out_slope, ev_t, ev_src, cur_t, n_inputs, c, grad_t, grad_q, gcur)


def _events(times: Tensor, source: Tensor, current: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' float64 event times, int64 sources and ``current`` transposed ``(sources, neurons)``."""
    return to_numpy(times, torch.float64), to_numpy(source), np.ascontiguousarray(to_numpy(current, torch.float64).T)


class _Max(torch.autograd.Function):
    """``(times, current) -> (v_max, t_peak)`` of :meth:`CompiledTrajectory.max`."""

    @staticmethod
    def forward(
        ctx: Any, times: Tensor, current: Tensor, source: Tensor, n_inputs: int, params: NeuronParams, window: float
    ) -> tuple[Tensor, Tensor]:
        ev_t, ev_src, cur_t = _events(times, source, current)
        batch, n_neurons = times.shape[0], current.shape[0]
        best = np.zeros((batch, n_neurons))
        t_best = np.zeros((batch, n_neurons))
        seg = np.zeros((batch, n_neurons), dtype=np.int64)
        offset = np.zeros((batch, n_neurons))
        tie = np.zeros((batch, n_neurons), dtype=np.int64)
        slope = np.zeros((batch, n_neurons))
        c = _constants(params)
        if batch:
            work = batch * n_neurons * max(ev_t.shape[1], 1)
            launch(_max_kernel, _max_kernel_serial, work, ev_t, ev_src, cur_t, n_inputs, float(window), c, best, t_best, seg, offset, tie, slope)
        ctx.save_for_backward(times, current, source, *(torch.from_numpy(a) for a in (seg, offset, tie, slope)))
        ctx.n_inputs, ctx.c = n_inputs, c
        t_peak = torch.from_numpy(t_best).to(times.dtype)
        ctx.mark_non_differentiable(t_peak)
        return torch.from_numpy(best).to(times.dtype), t_peak

    @staticmethod
    def backward(ctx: Any, grad_max: Tensor, _grad_peak: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("the numba engine's voltage trajectory (use engine='torch' for it)")
        times, current, source, *rest = ctx.saved_tensors
        ev_t, ev_src, cur_t = _events(times, source, current)
        seg, offset, tie, slope = (x.numpy() for x in rest)
        batch, n_events = ev_t.shape
        n_sources, n_neurons = cur_t.shape
        grad_t = np.zeros((batch, n_events))
        gcur = partial_sums(batch, n_sources, n_neurons)
        if batch:
            work = batch * n_neurons * max(n_events, 1)
            launch(_max_adjoint_kernel, _max_adjoint_kernel_serial, work, to_numpy(grad_max, torch.float64), ev_t, ev_src, cur_t, ctx.n_inputs, ctx.c, seg, offset, tie, slope, grad_t, gcur)
        grad_current = torch.from_numpy(chunk_total(gcur, transpose=True)).to(current.dtype)
        return torch.from_numpy(grad_t).to(times.dtype), grad_current, None, None, None, None


class _Values(torch.autograd.Function):
    """``(times, current, t) -> V`` ``(batch, neurons, points)`` of :meth:`CompiledTrajectory.values`."""

    @staticmethod
    def forward(
        ctx: Any, times: Tensor, current: Tensor, t: Tensor, governing: Tensor, source: Tensor, n_inputs: int, params: NeuronParams
    ) -> Tensor:
        ev_t, ev_src, cur_t = _events(times, source, current)
        batch, n_points = t.shape
        n_neurons = current.shape[0]
        q_t, q_gov = to_numpy(t, torch.float64), to_numpy(governing)
        out = np.zeros((batch, n_points, n_neurons))
        out_slope = np.zeros((batch, n_points, n_neurons) if ctx.needs_input_grad[2] else (0, 0, 0))
        c = _constants(params)
        if batch:
            work = batch * n_neurons * (ev_t.shape[1] + n_points)
            launch(_values_kernel, _values_kernel_serial, work, q_t, q_gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope)
        ctx.save_for_backward(times, current, t, governing, source, torch.from_numpy(out_slope))
        ctx.n_inputs, ctx.c = n_inputs, c
        return torch.from_numpy(out).to(times.dtype).transpose(1, 2)

    @staticmethod
    def backward(ctx: Any, grad_v: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("the numba engine's voltage trajectory (use engine='torch' for it)")
        times, current, t, governing, source, slope = ctx.saved_tensors
        ev_t, ev_src, cur_t = _events(times, source, current)
        q_t, q_gov, out_slope = to_numpy(t, torch.float64), to_numpy(governing), slope.numpy()
        batch, n_events = ev_t.shape
        n_sources, n_neurons = cur_t.shape
        n_points = q_t.shape[1]
        grad_t = np.zeros((batch, n_events))
        grad_q = np.zeros((batch, n_points))
        gcur = partial_sums(batch, n_sources, n_neurons)
        if batch:
            grad = to_numpy(grad_v.transpose(1, 2), torch.float64)  # (B, P, N)
            work = batch * n_neurons * (n_events + n_points)
            launch(_values_adjoint_kernel, _values_adjoint_kernel_serial, work, grad, q_t, q_gov, out_slope, ev_t, ev_src, cur_t, ctx.n_inputs, ctx.c, grad_t, grad_q, gcur)
        grad_current = torch.from_numpy(chunk_total(gcur, transpose=True)).to(current.dtype)
        grad_points = torch.from_numpy(grad_q).to(t.dtype) if ctx.needs_input_grad[2] else None
        return torch.from_numpy(grad_t).to(times.dtype), grad_current, grad_points, None, None, None, None


@dataclass(frozen=True, eq=False)
class CompiledTrajectory(VoltageTrajectory):
    """A :class:`~eventprop.model.trajectory.VoltageTrajectory` whose queries are compiled kernels (module docstring).

    Memory: the events, and per query its result (and for :meth:`values` with
    differentiable times the slope ``dV/dt`` at the points): no state per event and
    neuron is kept. (:meth:`integral` asks for values at its quadrature nodes, which
    are ``n_nodes`` per event and neuron.) Its gradients are not differentiable again:
    ``create_graph=True`` through them raises (the PyTorch engine's are).
    """

    def __post_init__(self) -> None:
        require_numba()

    @staticmethod
    def event_order(flat: Tensor, window: float, checks: ValueChecks | None = None) -> tuple[Tensor, Tensor]:
        if checks is not None:
            checks.read_with()
        return window_order(flat, window)

    def max(self) -> tuple[Tensor, Tensor]:
        return _Max.apply(self.times, self.current, self.source, self.n_inputs, self.params, self.stored_window)

    def _values(self, t: Tensor, governing: Tensor) -> Tensor:
        return _Values.apply(self.times, self.current, t, governing, self.source, self.n_inputs, self.params)
