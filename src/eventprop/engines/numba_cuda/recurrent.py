r"""CUDA engine, recurrent LIF layers: one thread block per sample, its threads sharing the neurons.

The same step order, decisions and floating-point operations as the compiled CPU engine
(:mod:`eventprop.engines.numba_cpu.recurrent`; equations in
:mod:`eventprop.engines.pytorch.recurrent`), with its scalar functions compiled for the
GPU. The neurons of a recurrent layer interact, so the steps of a sample (an input event,
or the layer's next spike) are taken by one block together; thread ``t`` owns neurons
``t, t + B, t + 2B, ...`` (``B`` threads per block) and keeps their state in global
scratch:

* forward, per step: every thread flows its neurons over the interval to the next
  input event (flow factors computed once per thread, the same for all neurons), rules
  most out with the bound test without exponentials and solves the others' first
  crossing; the earliest crossing of the block is an atomic minimum in shared memory
  (three rotating slots: one barrier per step). If one lies before the next input
  event, every neuron crossing at that very instant fires (the paper's rule for
  coincident spikes): the firing neurons take places in the sample's spike list
  atomically, the first thread puts the group in neuron order (the CPU engine's
  order), and every thread adds the group's recurrent weights to its neurons' currents
  in that order; otherwise the input event is applied. Work ``O((input events + spike
  steps) x neurons)`` per sample, as on the CPU, spread over the block.
* backward, the steps in reverse: at an input event every thread carries its neurons'
  ``(lambda_V, lambda_I)`` back to it and adds ``-tau_syn lambda_I`` to ``dL/dW[:, i]``
  (atomic); ``dL/dt_e = sum_m W[m, i] (lambda_V,m - lambda_I,m)`` is a warp sum and one
  atomic addition per warp, with no barrier. At a spike step, after a barrier, the
  same for ``dL/dR[:, n]`` and for what the targets send back to each firing neuron
  ``n`` (``sum_m R[m, n] (lambda_V,m - lambda_I,m)``), and after a second barrier the
  owner of ``n`` computes its jump of ``lambda_V`` (paper Table 2).

Saved for the backward, as on the CPU: per spike its time, neuron, current and step, so
memory follows spikes, never the simulated time. Spike counts are unknown in advance:
each sample's spike list has a capacity (remembered per layer shape); when a sample fills
it, the layer runs again with four times the room. ``max_spikes`` raises
:class:`~eventprop.errors.SpikeLimitError`. Sums are atomic, so gradients may differ
between runs in their last bits; spike times are the CPU engine's (bitwise under the
simulator, to rounding on a GPU: the package docstring).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams
from ...model.spikes import EventList, ValueChecks
from ..numba_cpu.events import spike_limit
from ..numba_cpu.recurrent import NumbaRecurrentTape
from .device import SIMULATED, as_kernel_array, cuda, leads_warp, on_device, stream_for, warp_sum
from .events import cut_events, device_events, longest

if cuda is not None:
    from numba import float64, int64

    from ..numba_cpu.scalar import (
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
        _may_cross,
        _near,
    )

__all__ = ["recurrent_forward_cuda", "recurrent_backward_cuda"]

F64 = torch.float64

# status of a sample after the forward kernel (as the CPU engine's)
_OK, _FULL, _LIMIT = 0, 1, 2


#: Most threads of a sample's block on a GPU: the forward kernel uses about 100 registers
#: per thread (ptxas, sm_90), so 64K registers per SM allow about 600; beyond 256 neurons
#: each thread owns several.
MAX_SAMPLE_BLOCK = 256


def sample_block(n: int) -> int:
    """Threads of the block that simulates one sample of ``n`` neurons: whole warps, at most
    :data:`MAX_SAMPLE_BLOCK`; under the simulator at most 4 (each a Python thread; each then
    owns several neurons)."""
    if SIMULATED:
        return max(1, min(n, 4))
    return max(32, min(MAX_SAMPLE_BLOCK, 32 * ((n + 31) // 32)))


if cuda is not None:

    @cuda.jit
    def _forward_kernel(ev_t, ev_src, n_ev, w_t, r_t, c, limit, sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where,
                        v, i, v_end, i_end, s):  # fmt: skip
        # block b: sample b (module docstring); v, i, v_end, i_end, s: (batch, N) scratch
        b = cuda.blockIdx.x
        t = cuda.threadIdx.x
        threads = cuda.blockDim.x
        n = w_t.shape[1]
        cap = sp_t.shape[1]
        horizon = c[_HORIZON]
        zero = c[_ZERO]
        inf = c[_INF]
        slots = cuda.shared.array(3, float64)  # rotating minima of the crossing times
        group = cuda.shared.array(2, int64)  # [0]: firing neurons placed, [1]: status of the step
        for j in range(t, n, threads):
            v[b, j] = zero
            i[b, j] = zero
            counts[b, j] = 0
        if t == 0:
            slots[0] = inf
            slots[1] = inf
            group[0] = 0
            group[1] = _OK
        cuda.syncthreads()
        m = n_ev[b]
        now = zero
        e = 0
        q = 0
        step = 0
        while True:
            slot = step % 3
            if t == 0:
                slots[(step + 1) % 3] = inf  # for the next step (last read two steps ago)
            next_in = ev_t[b, e] if e < m else inf
            end = min(next_in, horizon)
            length = max(end - now, zero)
            if length > 0:
                finite = math.isfinite(length)
                e_mem = zero
                e_syn = zero
                k = inf
                k_bound = c[_KMAX]
                if finite:
                    e_mem, e_syn, k = _flow(length, c)
                    if length <= c[_SPEAK]:
                        k_bound = k
                for j in range(t, n, threads):
                    v_j = v[b, j]
                    i_j = i[b, j]
                    a = v_j * e_mem + i_j * k if finite else zero
                    i_e = i_j * e_syn
                    v_end[b, j] = a
                    i_end[b, j] = i_e
                    s_j = inf
                    if not finite or _near(v_j, i_j, a, i_e, k_bound, c):
                        if _may_cross(v_j, i_j, length, a, i_e, k, c):
                            s_j = _crossing(v_j, i_j, length, a, c)
                            if s_j < inf:
                                cuda.atomic.min(slots, slot, s_j)
                    s[b, j] = s_j
            cuda.syncthreads()
            s_min = slots[slot]
            step += 1
            if s_min < inf:  # a spike step: every neuron crossing at now + s_min fires
                e_mem, e_syn, k = _flow(s_min, c)
                t_step = now + s_min
                for j in range(t, n, threads):
                    v_j = v[b, j] * e_mem + i[b, j] * k
                    i_j = i[b, j] * e_syn
                    i[b, j] = i_j
                    if s[b, j] == s_min:
                        place = q + cuda.atomic.add(group, 0, 1)
                        if place < cap:
                            sp_t[b, place] = t_step
                            sp_n[b, place] = j
                            sp_i[b, place] = i_j
                            sp_e[b, place] = e
                        count = counts[b, j] + 1
                        counts[b, j] = count
                        if count > limit:  # reported: the lowest such neuron, as on the CPU
                            group[1] = _LIMIT
                            cuda.atomic.min(where, (b, 0), float64(j))
                            where[b, 1] = t_step
                        v_j = zero  # V = theta - theta at the crossing
                    v[b, j] = v_j
                cuda.syncthreads()
                fired = group[0]
                if t == 0 and q + fired > cap and group[1] == _OK:
                    group[1] = _FULL
                if t == 0 and group[1] == _OK:  # the group in neuron order, as the CPU engine lists it
                    for r in range(q + 1, q + fired):
                        key_n = sp_n[b, r]
                        key_t = sp_i[b, r]
                        u = r - 1
                        while u >= q and sp_n[b, u] > key_n:
                            sp_n[b, u + 1] = sp_n[b, u]
                            sp_i[b, u + 1] = sp_i[b, u]
                            u -= 1
                        sp_n[b, u + 1] = key_n
                        sp_i[b, u + 1] = key_t
                cuda.syncthreads()
                state = group[1]
                if state != _OK:
                    if t == 0:
                        status[b] = state
                        n_sp[b] = min(q + fired, cap)
                    return
                for r in range(q, q + fired):
                    row = sp_n[b, r]
                    for j in range(t, n, threads):
                        i[b, j] += r_t[row, j]
                q += fired
                now = t_step
                if t == 0:  # every thread read group[0] before the last barrier
                    group[0] = 0
            elif e < m and next_in <= horizon:  # an input step
                src = ev_src[b, e]
                for j in range(t, n, threads):
                    if length > 0:
                        v[b, j] = v_end[b, j]
                        i[b, j] = i_end[b, j] + w_t[src, j]
                    else:
                        i[b, j] += w_t[src, j]
                now = next_in
                e += 1
            else:
                break
        if t == 0:
            status[b] = _OK
            n_sp[b] = q

    @cuda.jit
    def _trains_kernel(sp_t, sp_n, n_sp, out_t):
        # thread (b, j): neuron j's spikes of sample b, in time order, into out_t[b, j]
        j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        if j >= out_t.shape[1]:
            return
        k = 0
        for q in range(n_sp[b]):
            if sp_n[b, q] == j:
                out_t[b, j, k] = sp_t[b, q]
                k += 1

    @cuda.jit
    def _backward_kernel(grad_out, ev_t, ev_src, ev_pos, w_t, r_t, sp_t, sp_n, sp_i, sp_e, n_sp, counts, c,
                         grad_times, gw_t, gr_t, tangential, jumps, lv, li, left, sent):  # fmt: skip
        # block b: the reverse steps of sample b (module docstring); lv, li, sent: (batch, N)
        # float64 scratch (sent zeroed), left: (batch, N) int64 scratch
        b = cuda.blockIdx.x
        t = cuda.threadIdx.x
        threads = cuda.blockDim.x
        n = w_t.shape[1]
        theta = c[_THETA]
        tau_syn = c[_TS]
        zero = c[_ZERO]
        q = n_sp[b] - 1
        if q < 0:
            return
        for j in range(t, n, threads):
            lv[b, j] = zero
            li[b, j] = zero
            left[b, j] = counts[b, j]
        cursor = sp_t[b, q]
        e = sp_e[b, q] - 1  # input events after the last spike get no gradient
        while q >= 0 or e >= 0:
            spike = q >= 0 and sp_e[b, q] > e
            t_now = sp_t[b, q] if spike else ev_t[b, e]
            lag = cursor - t_now
            cursor = t_now
            e_mem = c[_ONE]
            e_syn = c[_ONE]
            k = zero
            if lag != 0:
                e_mem, e_syn, k = _flow(lag, c)
            k_lam = c[_RATIO] * k
            if spike:
                if lag != 0:
                    for j in range(t, n, threads):
                        li[b, j] = li[b, j] * e_syn + lv[b, j] * k_lam
                        lv[b, j] = lv[b, j] * e_mem
                first = q
                while first > 0 and sp_t[b, first - 1] == t_now and sp_e[b, first - 1] == sp_e[b, q]:
                    first -= 1
                cuda.syncthreads()  # the previous spike step's sums are read and reset
                for r in range(first, q + 1):  # what the targets send back, before any jump
                    row = sp_n[b, r]
                    part = zero
                    for m in range(t, n, threads):
                        l_i = li[b, m]
                        cuda.atomic.add(gr_t, (row, m), -tau_syn * l_i)
                        part += r_t[row, m] * (lv[b, m] - l_i)
                    total = warp_sum(part)
                    if leads_warp():
                        cuda.atomic.add(sent, (b, row), total)
                cuda.syncthreads()  # the sums are complete
                for r in range(first, q + 1):
                    j = sp_n[b, r]
                    if j % threads == t:  # the owner of the firing neuron
                        slot = left[b, j] - 1
                        left[b, j] = slot
                        numerator = theta * lv[b, j] + sent[b, j] + grad_out[b, j, slot]
                        sent[b, j] = zero
                        jump, tangent = _adjoint_jump(numerator, sp_i[b, r], c)
                        if tangent:
                            cuda.atomic.add(tangential, 0, 1)
                        jumps[b, j, slot] = jump
                        lv[b, j] += jump
                q = first - 1
            else:  # an input event: the flow back to it, dL/dt_e and dL/dW[:, src]
                src = ev_src[b, e]
                part = zero
                for m in range(t, n, threads):
                    l_v = lv[b, m]
                    l_i = li[b, m] * e_syn + l_v * k_lam
                    l_v = l_v * e_mem
                    li[b, m] = l_i
                    lv[b, m] = l_v
                    cuda.atomic.add(gw_t, (src, m), -tau_syn * l_i)
                    part += w_t[src, m] * (l_v - l_i)
                total = warp_sum(part)
                if leads_warp():
                    cuda.atomic.add(grad_times, (b, ev_pos[b, e]), total)
                e -= 1


#: Spike-list capacity per sample remembered per layer shape (as the CPU engine's).
_CAPACITY: dict[tuple[int, int], int] = {}


def recurrent_forward_cuda(
    times: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor,
    p: NeuronParams,
    horizon: float = math.inf,
    max_spikes: int | None = None,
) -> tuple[Tensor, EventList, NumbaRecurrentTape]:
    """CUDA equivalent of :func:`eventprop.engines.numba_cpu.recurrent.recurrent_forward_numba`.

    Same arguments and returns, on the tensors' device (float64, validated by the caller).
    """
    batch = times.shape[0]
    n = weight.shape[0]
    device = times.device
    checks = ValueChecks({"times": times}, {"weight": weight, "recurrent_weight": recurrent_weight})
    events, n_ev = device_events(times)
    ev_t, ev_src = events.times, events.source
    w_t = weight.detach().to(F64).t().contiguous()
    r_t = recurrent_weight.detach().to(F64).t().contiguous()
    c = _constants(p, horizon)
    limit = spike_limit(max_spikes)
    key = (n, weight.shape[1])
    cap = _CAPACITY.get(key, 64)
    z = dict(device=device)
    counts = torch.zeros((batch, n), dtype=torch.int64, **z)
    n_sp = torch.zeros(batch, dtype=torch.int64, **z)
    status = torch.zeros(batch, dtype=torch.int64, **z)
    where = torch.full((batch, 2), math.inf, dtype=F64, **z)
    scratch = [torch.empty((batch, n), dtype=F64, **z) for _ in range(5)]
    while True:
        sp_t = torch.empty((batch, cap), dtype=F64, **z)
        sp_n = torch.empty((batch, cap), dtype=torch.int64, **z)
        sp_i = torch.empty((batch, cap), dtype=F64, **z)
        sp_e = torch.empty((batch, cap), dtype=torch.int64, **z)
        if batch and n:
            with on_device(device):
                _forward_kernel[batch, sample_block(n), stream_for(device)](
                    *[as_kernel_array(a) for a in (ev_t, ev_src, n_ev, w_t, r_t)], c, limit, *[as_kernel_array(a) for a in (sp_t, sp_n, sp_i, sp_e, n_sp, counts, status, where)],
                    *[as_kernel_array(a) for a in scratch],
                )
        # the host synchronisation: the inputs' value checks, the sizes of the event list,
        # of the spike list and of the output, and whether a sample passed the limit or filled its list
        n_events, over, full, most, width = checks.read_with(
            longest(n_ev), *((status == flag).any() for flag in (_LIMIT, _FULL)), longest(n_sp), longest(counts.reshape(-1))
        )
        if over:
            b = int(torch.nonzero(status == _LIMIT)[0, 0])
            raise SpikeLimitError.exceeded(max_spikes, b, int(where[b, 0]), float(where[b, 1]))
        if not full:
            break
        cap *= 4  # some sample filled its spike list: simulate again with more room
    _CAPACITY[key] = max(64, 2 * most + 16)
    out_t = torch.full((batch, n, max(width, 1)), math.inf, dtype=F64, **z)
    if batch and n and most:
        block = min(128, max(1, n)) if SIMULATED else 128
        with on_device(device):
            _trains_kernel[(batch, (n + block - 1) // block), block, stream_for(device)](
                *[as_kernel_array(a) for a in (sp_t, sp_n, n_sp, out_t)]
            )
    events = cut_events(events, n_events)
    s = max(most, 1)
    tape = NumbaRecurrentTape(
        time=sp_t[:, :s].contiguous(),
        neuron=sp_n[:, :s].contiguous(),
        current=sp_i[:, :s].contiguous(),
        step=sp_e[:, :s].contiguous(),
        per_neuron=counts,
    )
    return out_t.to(times.dtype), events, tape


def recurrent_backward_cuda(
    grad_out: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor,
    events: EventList,
    tape: NumbaRecurrentTape,
    p: NeuronParams,
    input_shape: torch.Size,
    clip: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """CUDA equivalent of :func:`eventprop.engines.numba_cpu.recurrent.recurrent_backward_numba`.

    Same arguments and returns: ``(grad_times, grad_weight, grad_recurrent_weight,
    n_tangential, jumps)``.
    """
    dtype = grad_out.dtype
    device = grad_out.device
    batch, n_in, slots = input_shape
    n = weight.shape[0]
    z = dict(device=device)
    grad_times = torch.zeros((batch, n_in * slots), dtype=F64, **z)
    gw_t = torch.zeros((n_in, n), dtype=F64, **z)
    gr_t = torch.zeros((n, n), dtype=F64, **z)
    tangential = torch.zeros(1, dtype=torch.int64, **z)
    jumps = torch.zeros(tuple(grad_out.shape), dtype=F64, **z)
    if batch and n:
        ev_t = events.times.to(F64).contiguous()
        ev_src, ev_pos = events.source.contiguous(), events.position.contiguous()
        if ev_t.shape[1] == 0:
            ev_t = torch.full((batch, 1), math.inf, dtype=F64, **z)
            ev_src = ev_pos = torch.zeros((batch, 1), dtype=torch.int64, **z)
        inputs = (
            grad_out.to(F64).contiguous(),
            ev_t,
            ev_src,
            ev_pos,
            weight.detach().to(F64).t().contiguous(),
            recurrent_weight.detach().to(F64).t().contiguous(),
            *tape.tensors()[:4],
            tape.per_neuron.sum(dim=1),
            tape.per_neuron,
        )
        scratch = (
            torch.empty((batch, n), dtype=F64, **z),
            torch.empty((batch, n), dtype=F64, **z),
            torch.empty((batch, n), dtype=torch.int64, **z),
            torch.zeros((batch, n), dtype=F64, **z),
        )
        with on_device(device):
            _backward_kernel[batch, sample_block(n), stream_for(device)](
                *[as_kernel_array(a.contiguous()) for a in inputs],
                _constants(p, math.inf, clip),
                *[as_kernel_array(a) for a in (grad_times, gw_t, gr_t, tangential, jumps, *scratch)],
            )
    grad_rec = gr_t.t().contiguous()
    grad_rec.fill_diagonal_(0.0)
    return (
        grad_times.reshape(tuple(input_shape)).to(dtype),
        gw_t.t().to(dtype).contiguous(),
        grad_rec.to(dtype),
        tangential.reshape(()),  # read by the caller with its own check (errors.checked_adjoint)
        jumps.to(dtype),
    )
