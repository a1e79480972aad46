r"""Numba engine, recurrent LIF layers: compiled event loop forward, EventProp backward.

Same model, step order and results as :mod:`eventprop.engines.pytorch.recurrent` (see
there for the equations), compiled, in parallel over samples (``numba.prange``):

* forward: per sample, all neurons' states ``(V, I)`` are carried together from step to
  step, a step being an input event or the layer's next spike. Over the interval to
  the next input event (or the horizon) the flow factors are computed once and shared
  by the neurons; a bound test without exponentials (:func:`.scalar._may_cross`) rules
  out most neurons, the others get their exact first crossing (:func:`.scalar._crossing`).
  The earliest crossing fires: every neuron crossing at that very instant fires with it
  (the paper's rule for coincident spikes), ``V -> V - theta`` and ``I_m += R[m, n]``;
  otherwise the input event is applied (its jump ``I += W[:, i]`` folded into the next
  interval's pass, one pass over the neurons per input event). Work per sample is
  ``O((input events + spike steps) x neurons)``.
* backward: the same steps in reverse with ``(lambda_V, lambda_I)`` of all neurons,
  adjoint flow factors shared per step; at an input event ``dL/dW[:, i]`` and
  ``dL/dt_e``, at a spike step ``dL/dR[:, n]`` and the jumps of ``lambda_V`` of the
  firing neurons (paper Table 2), in the same work.

Saved for the backward: per spike its time, neuron, current and step (how many input
events preceded it), so memory follows spikes, never the simulated time. The weight
gradients are summed over a number of batch chunks that depends on the batch size
only, in a fixed order: they do not depend on the number of threads.

Everything is computed in float64 (float32 layers are widened and their results
rounded, as in the PyTorch engine), so a float32 spike train is correctly rounded at
any time scale and every finite spike train ends. Spike counts are unknown in advance:
each sample's spike list has a capacity (remembered per layer shape); a sample that
fills it is simulated again with room for more. ``max_spikes`` raises
:class:`~eventprop.errors.SpikeLimitError` naming the sample, neuron and time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams
from ...model.spikes import EventList
from .chunks import chunk_total, partial_sums
from .events import input_events, spike_limit, spike_trains, to_numpy
from .threads import launch
from .scalar import (
    _HORIZON,
    _INF,
    _KMAX,
    _ONE,
    _RATIO,
    _SPEAK,
    _THETA,
    _TS,
    _ZERO,
    _adjoint_jump,
    _constants,
    _crossing,
    _flow,
    _input_adjoint,
    _input_flow,
    _input_gradients,
    _may_cross,
    _near,
    require_numba,
    source_sha256,
)

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["NumbaRecurrentTape", "recurrent_forward_numba", "recurrent_backward_numba"]

#: SHA-256 of :mod:`.scalar`'s source when these kernels were last checked against it; a
#: mismatch compiles them without numba's on-disk cache (see :mod:`.scalar`).
SCALAR_SHA256 = "001c2940016bc489ef8bb7f3058a54959c0ba7e03dfa5f569f15739de0fca4c8"
_CACHE = source_sha256() == SCALAR_SHA256

# status of a sample after the forward kernel
_OK, _FULL, _LIMIT = 0, 1, 2



if numba is not None:

    @njit(cache=_CACHE)
    def _simulate(b, ev_t, ev_src, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where):
        # One sample b. ev_t/ev_src: its time-ordered input events (+inf padded);
        # w_t[src, m] = W[m, src]; r_t[n, m] = R[m, n]. Writes the spikes in firing
        # order (sp_t time, sp_n neuron, sp_i current just before, sp_e input events
        # applied before it) until the row is full (status _FULL) or a neuron exceeds
        # the limit (status _LIMIT, where = (neuron, time)).
        n = w_t.shape[1]
        v = np.empty(n)  # the state of every neuron at time ``now``
        i = np.empty(n)
        v_end = np.empty(n)  # ... and at the end of the interval
        i_end = np.empty(n)
        n_words = (n + 7) // 8
        flag = np.zeros(8 * n_words, dtype=np.uint8)  # neurons the bound test cannot rule out (tail 0)
        words = flag.view(np.uint64)  # eight flags per word: the listing skips unflagged words
        cand = np.empty(n, dtype=np.int64)  # ... listed
        no_jump = np.zeros(n)  # (the jump of an interval that follows no input event)
        s = np.empty(n)  # their first crossings
        cap = sp_t.shape[1]
        horizon = c[_HORIZON]
        zero = c[_ZERO]
        n_ev = 0
        while n_ev < ev_t.shape[1] and math.isfinite(ev_t[b, n_ev]):
            n_ev += 1
        for j in range(n):
            v[j] = zero
            i[j] = zero
            counts[b, j] = 0
        now = zero
        e = 0
        q = 0
        pending = -1  # an input event applied to the state but not yet to ``i``: the next pass adds it
        status[b] = _OK
        while True:
            next_in = ev_t[b, e] if e < n_ev else c[_INF]
            end = min(next_in, horizon)
            length = max(end - now, zero)
            e_mem = zero
            e_syn = zero
            k = c[_INF]
            finite = math.isfinite(length)
            s_min = c[_INF]
            n_cand = 0
            if length > 0:
                # the state at the end of the interval, and the neurons that may cross
                # before it (_may_cross's bound test, with K's bound shared by all)
                if finite:
                    e_mem, e_syn, k = _flow(length, c)
                    k_bound = k if length <= c[_SPEAK] else c[_KMAX]
                    # the hot loop: branch-free (it vectorises); flagged neurons collected after
                    flagged = np.uint8(0)
                    jump = w_t[pending] if pending >= 0 else no_jump  # (the pending input event's, folded in)
                    for j in range(n):
                        v_j = v[j]
                        i_j = i[j] + jump[j]
                        i[j] = i_j
                        a = v_j * e_mem + i_j * k
                        i_e = i_j * e_syn
                        v_end[j] = a
                        i_end[j] = i_e
                        f = _near(v_j, i_j, a, i_e, k_bound, c)
                        flag[j] = f
                        flagged |= f
                    pending = -1
                    if flagged:
                        for word in range(n_words):
                            if words[word] != 0:
                                for j in range(8 * word, min(8 * word + 8, n)):
                                    if flag[j]:
                                        cand[n_cand] = j
                                        n_cand += 1
                else:
                    if pending >= 0:
                        i += w_t[pending]
                        pending = -1
                    for j in range(n):
                        cand[j] = j
                    n_cand = n
                for r in range(n_cand):
                    j = cand[r]
                    s_j = c[_INF]
                    if _may_cross(v[j], i[j], length, v_end[j], i_end[j], k, c):
                        s_j = _crossing(v[j], i[j], length, v_end[j], c)
                        if s_j < s_min:
                            s_min = s_j
                    s[r] = s_j
            if s_min < c[_INF]:  # a spike step: every neuron crossing at now + s_min fires
                e_mem, e_syn, k = _flow(s_min, c)
                t_step = now + s_min
                for j in range(n):
                    v[j] = v[j] * e_mem + i[j] * k
                    i[j] = i[j] * e_syn
                first = q
                for r in range(n_cand):
                    if s[r] == s_min:
                        j = cand[r]
                        if q == cap:
                            status[b] = _FULL
                            n_sp[b] = q
                            return
                        sp_t[b, q] = t_step
                        sp_n[b, q] = j
                        sp_i[b, q] = i[j]
                        sp_e[b, q] = e
                        q += 1
                        counts[b, j] += 1
                        v[j] = zero  # V = theta - theta at the crossing
                        if counts[b, j] > limit:
                            status[b] = _LIMIT
                            where[b, 0] = j
                            where[b, 1] = t_step
                            n_sp[b] = q
                            return
                for r in range(first, q):
                    row = sp_n[b, r]
                    for m in range(n):
                        i[m] += r_t[row, m]
                now = t_step
            elif e < n_ev and next_in <= horizon:  # an input step
                src = ev_src[b, e]
                if length > 0:  # the state at the event: the interval's end, its jump left pending
                    v, v_end = v_end, v
                    i, i_end = i_end, i
                else:
                    if pending >= 0:
                        i += w_t[pending]
                    i += w_t[src]
                    src = -1
                pending = src
                now = next_in
                e += 1
            else:
                break
        n_sp[b] = q

    @njit(parallel=True, cache=_CACHE)
    def _forward_kernel(ev_t, ev_src, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where):
        for b in prange(ev_t.shape[0]):
            _simulate(b, ev_t, ev_src, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where)

    @njit(cache=_CACHE)
    def _forward_kernel_serial(ev_t, ev_src, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where):
        for b in range(ev_t.shape[0]):
            _simulate(b, ev_t, ev_src, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where)

    @njit(cache=_CACHE)
    def _adjoint(b, part, grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                 want_times, grad_times, gw_t, gr_t, tangential, jumps, lv, li, sent, left):  # fmt: skip
        # Reverse steps of sample b: dL/dt of its input events into grad_times (at their
        # positions ev_pos; not computed without want_times); dL/dW^T, dL/dR^T and the
        # tangential count into the partial sums of chunk ``part``. lv, li, left (N,) and
        # sent (N,) are scratch.
        n = w_t.shape[1]
        theta = c[_THETA]
        tau_syn = c[_TS]
        zero = c[_ZERO]
        q = n_sp[b] - 1
        if q < 0:
            return
        for j in range(n):
            lv[j] = zero
            li[j] = zero
            left[j] = counts[b, j]
        cursor = sp_t[b, q]
        e = sp_e[b, q] - 1  # input events after the last spike get no gradient
        while q >= 0 or e >= 0:
            spike = q >= 0 and sp_e[b, q] > e
            t = sp_t[b, q] if spike else ev_t[b, e]
            lag = cursor - t
            cursor = t
            e_mem = c[_ONE]
            e_syn = c[_ONE]
            k = zero
            if lag != 0:
                e_mem, e_syn, k = _flow(lag, c)
            k_lam = c[_RATIO] * k
            if spike:
                first = q
                while first > 0 and sp_t[b, first - 1] == t and sp_e[b, first - 1] == sp_e[b, q]:
                    first -= 1
                # what the targets send back, before any jump: dL/dR[:, n] and
                # sum_m R[m, n] (lambda_V,m - lambda_I,m), the first with the flow back
                for r in range(first, q + 1):
                    row = sp_n[b, r]
                    if r == first and lag != 0:
                        sent[0] = _input_adjoint(lv, li, e_mem, e_syn, k_lam, r_t[row], gr_t[part, row], tau_syn)
                    else:
                        sent[r - first] = _input_gradients(lv, li, r_t[row], gr_t[part, row], tau_syn)
                for r in range(first, q + 1):
                    j = sp_n[b, r]
                    left[j] -= 1
                    numerator = theta * lv[j] + sent[r - first] + grad_out[b, j, left[j]]
                    jump, tangent = _adjoint_jump(numerator, sp_i[b, r], c)
                    if tangent:
                        tangential[part] += 1
                    jumps[b, j, left[j]] = jump
                    lv[j] += jump
                q = first - 1
            else:  # an input event: the flow back to it, dL/dt_e and dL/dW[:, src] in one pass
                src = ev_src[b, e]
                if want_times:
                    grad_times[b, ev_pos[b, e]] = _input_adjoint(lv, li, e_mem, e_syn, k_lam, w_t[src], gw_t[part, src], tau_syn)
                else:
                    _input_flow(lv, li, e_mem, e_syn, k_lam, gw_t[part, src], tau_syn)
                e -= 1

    @njit(cache=_CACHE)
    def _backward_part(part, grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                       want_times, grad_times, gw_t, gr_t, tangential, jumps):  # fmt: skip
        # the samples of chunk ``part`` (a contiguous range, in order), with their scratch
        n = w_t.shape[1]
        parts = gw_t.shape[0]
        batch = ev_t.shape[0]
        lv = np.empty(n)
        li = np.empty(n)
        sent = np.empty(n)
        left = np.empty(n, dtype=np.int64)
        gw_t[part] = 0.0  # (this chunk's partial sums, zeroed on its own thread)
        gr_t[part] = 0.0
        for b in range(part * batch // parts, (part + 1) * batch // parts):
            _adjoint(b, part, grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                     want_times, grad_times, gw_t, gr_t, tangential, jumps, lv, li, sent, left)  # fmt: skip

    @njit(parallel=True, cache=_CACHE)
    def _backward_kernel(grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                         want_times, grad_times, gw_t, gr_t, tangential, jumps):  # fmt: skip
        for part in prange(gw_t.shape[0]):  # one partial sum per chunk
            _backward_part(part, grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                           want_times, grad_times, gw_t, gr_t, tangential, jumps)  # fmt: skip

    @njit(cache=_CACHE)
    def _backward_kernel_serial(grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                                want_times, grad_times, gw_t, gr_t, tangential, jumps):  # fmt: skip
        for part in range(gw_t.shape[0]):
            _backward_part(part, grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                           want_times, grad_times, gw_t, gr_t, tangential, jumps)  # fmt: skip


@dataclass
class NumbaRecurrentTape:
    """The forward's spikes in firing order, per sample (what the backward replays).

    Attributes:
        time: ``(batch, S)`` float64 spike times (``S``: the most spikes of a sample).
        neuron: ``(batch, S)`` the neuron that fired.
        current: ``(batch, S)`` float64 its current ``I`` at the spike (before the
            recurrent input it triggers).
        step: ``(batch, S)`` number of input events applied before the spike.
        per_neuron: ``(batch, N)`` spikes of each neuron.
    """

    time: Tensor
    neuron: Tensor
    current: Tensor
    step: Tensor
    per_neuron: Tensor

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.time, self.neuron, self.current, self.step, self.per_neuron)


# Spike-list capacity per sample remembered per layer shape (see the module docstring).
_CAPACITY: dict[tuple[int, int], int] = {}


def _transposed(weight: Tensor) -> np.ndarray:
    return np.ascontiguousarray(to_numpy(weight, torch.float64).T)


def recurrent_forward_numba(
    times: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor,
    p: NeuronParams,
    horizon: float = math.inf,
    max_spikes: int | None = None,
) -> tuple[Tensor, EventList, NumbaRecurrentTape]:
    """Compiled equivalent of :func:`eventprop.engines.pytorch.recurrent.recurrent_forward`.

    Args:
        times: ``(batch, in_features, max_in)`` input spike times (float32 or float64,
            validated by the event kernel).
        weight: ``(N, in_features)``; recurrent_weight: ``(N, N)`` with zero diagonal.
        horizon: no spike after it; max_spikes: cap per neuron and sample (``None``:
            none), exceeding it raises :class:`~eventprop.errors.SpikeLimitError`.

    Returns:
        ``(out_times, events, tape)``: spike times ``(batch, N, max_out)`` in
        ``times``' dtype (``+inf`` padded), the input events (float64 times) and the
        :class:`NumbaRecurrentTape`.
    """
    require_numba()
    batch = times.shape[0]
    n = weight.shape[0]
    events, ev_t, ev_src = input_events(times)
    ev_t = ev_t.astype(np.float64, copy=False)
    events = EventList(torch.from_numpy(ev_t), events.source, events.position)
    w_t = _transposed(weight)
    r_t = _transposed(recurrent_weight)
    c = _constants(p, horizon)
    limit = spike_limit(max_spikes)
    key = (n, weight.shape[1])
    cap = _CAPACITY.get(key, 64)
    work = batch * n * max(ev_t.shape[1], 1)
    counts = np.zeros((batch, n), dtype=np.int64)
    n_sp = np.zeros(batch, dtype=np.int64)
    status = np.zeros(batch, dtype=np.int64)
    where = np.zeros((batch, 2))
    while True:
        sp_t = np.empty((batch, cap))
        sp_n = np.empty((batch, cap), dtype=np.int64)
        sp_i = np.empty((batch, cap))
        sp_e = np.empty((batch, cap), dtype=np.int64)
        if batch:
            launch(_forward_kernel, _forward_kernel_serial, work, ev_t, ev_src, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where)
        over = np.flatnonzero(status == _LIMIT)
        if over.size:
            b = int(over[0])
            raise SpikeLimitError.exceeded(max_spikes, b, int(where[b, 0]), float(where[b, 1]))
        if not (status == _FULL).any():
            break
        cap *= 4  # some sample filled its spike list: simulate again with more room
    most = int(n_sp.max()) if batch else 0
    _CAPACITY[key] = max(64, 2 * most + 16)
    width = max(int(counts.max()) if counts.size else 0, 1)
    out_t = spike_trains(sp_t, sp_n, n_sp, counts, width)
    s = max(most, 1)
    tape = NumbaRecurrentTape(
        time=torch.from_numpy(np.ascontiguousarray(sp_t[:, :s])),
        neuron=torch.from_numpy(np.ascontiguousarray(sp_n[:, :s])),
        current=torch.from_numpy(np.ascontiguousarray(sp_i[:, :s])),
        step=torch.from_numpy(np.ascontiguousarray(sp_e[:, :s])),
        per_neuron=torch.from_numpy(counts),
    )
    return torch.from_numpy(out_t).to(times.dtype), events, tape


def recurrent_backward_numba(
    grad_out: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor,
    events: EventList,
    tape: NumbaRecurrentTape,
    p: NeuronParams,
    input_shape: torch.Size,
    clip: float = 0.0,
    want_times: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor, int, Tensor]:
    """Compiled equivalent of :func:`eventprop.engines.pytorch.recurrent.recurrent_backward`.

    Args:
        grad_out: ``dL/d out_times`` ``(batch, N, max_out)`` (entries at padding are ignored).
        weight, recurrent_weight, events, tape: as given to and returned by
            :func:`recurrent_forward_numba`.
        input_shape: shape of the forward's ``times``.
        clip: the tangent safeguard's bound on ``|I - theta|`` (0: off).
        want_times: ``False`` where the input times need no gradient (``grad_times``
            is then ``None``, and its sum over the neurons per input event skipped).

    Returns:
        ``(grad_times, grad_weight, grad_recurrent_weight, n_tangential, jumps)`` in
        ``grad_out``'s dtype; the recurrent gradient has a zero diagonal; ``jumps``:
        the jumps ``J_k`` of ``lambda_V`` at the output spikes (``grad_out``'s shape, 0
        at padding).
    """
    require_numba()
    dtype = grad_out.dtype
    batch, n_in, slots = input_shape
    n = weight.shape[0]
    ev_t = to_numpy(events.times, torch.float64)
    grad_times = np.zeros((batch, n_in * slots) if want_times else (batch, 0))
    gw_t = partial_sums(batch, n_in, n)
    gr_t = partial_sums(batch, n, n)
    tangential = np.zeros(gw_t.shape[0], dtype=np.int64)
    jumps = np.zeros(tuple(grad_out.shape))
    if batch:
        per_neuron = to_numpy(tape.per_neuron)
        arrays = (
            to_numpy(grad_out, torch.float64),
            ev_t,
            to_numpy(events.source),
            to_numpy(events.position),
            _transposed(weight),
            _transposed(recurrent_weight),
            *(to_numpy(x) for x in tape.tensors()[:4]),
            per_neuron.sum(axis=1),  # spikes of each sample
            per_neuron,
            _constants(p, math.inf, clip),
        )
        work = batch * n * max(ev_t.shape[1], 1)
        launch(_backward_kernel, _backward_kernel_serial, work, *arrays, want_times, grad_times, gw_t, gr_t, tangential, jumps)
    grad_rec = chunk_total(gr_t, transpose=True)
    np.fill_diagonal(grad_rec, 0.0)
    return (
        torch.from_numpy(grad_times).reshape(tuple(input_shape)).to(dtype) if want_times else None,
        torch.from_numpy(chunk_total(gw_t, transpose=True)).to(dtype),
        torch.from_numpy(grad_rec).to(dtype),
        int(tangential.sum()),
        torch.from_numpy(jumps).to(dtype),
    )
