r"""CUDA engine, feed-forward LIF layers: one GPU thread per (sample, neuron).

The same equations, decisions and floating-point operations as the compiled CPU engine
(:mod:`eventprop.engines.numba_cpu.feedforward`), whose scalar functions the kernels
call (:mod:`eventprop.engines.numba_cpu.scalar`, compiled for the GPU by numba-cuda:
the model's mathematics is written once). The neurons of a feed-forward layer do not
interact, so thread ``(b, j)`` carries neuron ``j`` of sample ``b`` alone through the
sample's time-ordered input events (:func:`.events.device_events`, a stable
``torch.sort`` on the device):

* forward: at an input event ``I_j += W[j, src]``; over the interval to the next event
  (or the horizon) the flow factors ``exp(-L/tau_mem), exp(-L/tau_syn), K(L)``, the
  bound test without exponentials and, where it cannot rule a crossing out, the
  analytic bracket and safeguarded Halley solve of every threshold crossing, each
  followed by the reset ``V = 0`` (the CPU engine's ``scalar._neuron_interval`` itself). Work
  ``O(events + spikes)`` per thread, ``O(events x neurons + spikes)`` per sample.
* backward: the jumps ``J_k`` of ``lambda_V`` at the neuron's own spikes (the reverse
  recurrence of the paper's Table 2), then ``(lambda_V, lambda_I)`` carried back from
  event to event, through the neuron's spikes in each interval. At input event ``e``
  from input ``i``: ``dL/dW[j, i] += -tau_syn lambda_I`` (an atomic add; the threads of
  a warp write neighbouring entries) and ``dL/dt_e = sum_j W[j, i] (lambda_V - lambda_I)``
  (a warp sum, then one atomic add per warp: :func:`.device.warp_sum`).

Everything is computed in float64 (the engine's ``compute_dtype``). The sums over
neurons and samples use atomic additions, so their order, hence the last bits of the
gradients, may differ between runs (as for ``torch.Tensor.index_add_`` on CUDA);
spike times are bitwise those of the CPU engine under the simulator, equal to rounding on
a GPU (fused multiply-adds, the GPU's own ``exp``; the package docstring). Spike counts are unknown in advance:
each thread stores up to a capacity and keeps counting beyond it; the layer call reads
the largest count back, with the input's value checks and the event list's length (its
one host synchronisation, which sizes the output), and runs again with room for all
spikes if any neuron needed more. Spikes are never dropped;
``max_spikes`` raises :class:`~eventprop.errors.SpikeLimitError`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams
from ...model.spikes import EventList, ValueChecks
from ..numba_cpu.events import spike_limit
from .device import as_kernel_array, block_size, cuda, leads_warp, on_device, shared_function, stream_for, warp_sum
from .events import cut_events, device_events, longest

if cuda is not None:
    from ..numba_cpu.scalar import (
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
        _may_cross,
        _near,
    )
    from ..numba_cpu.scalar import _neuron_interval as _cpu_neuron_interval

__all__ = ["feedforward_forward_cuda", "feedforward_backward_cuda"]

F64 = torch.float64


if cuda is not None:
    _neuron_interval = shared_function(_cpu_neuron_interval)

    @cuda.jit
    def _forward_kernel(ev_t, ev_src, n_ev, w_t, c, limit, out_t, out_i, counts, stop_t):
        # thread (b, j): neuron j of sample b through the sample's events (module docstring)
        j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        n = w_t.shape[1]
        if j >= n:
            return
        cap = out_t.shape[2]
        zero = c[_ZERO]
        for q in range(cap):
            out_t[b, j, q] = c[_INF]
            out_i[b, j, q] = zero
        counts[b, j] = 0
        horizon = c[_HORIZON]
        m = n_ev[b]
        v = zero
        i = zero
        for e in range(m):
            te = ev_t[b, e]
            if not (te < horizon):
                return
            i += w_t[ev_src[b, e], j]
            end = ev_t[b, e + 1] if e + 1 < m else c[_INF]
            end = min(end, horizon)
            length = end - te
            if not (length > 0):  # an event at the same time follows
                continue
            e_mem = zero
            e_syn = zero
            k = zero
            k_bound = c[_KMAX]
            if math.isfinite(length):
                e_mem, e_syn, k = _flow(length, c)
                if length <= c[_SPEAK]:
                    k_bound = k
            v_end = v * e_mem + i * k
            i_end = i * e_syn
            if _near(v, i, v_end, i_end, k_bound, c) and _may_cross(v, i, length, v_end, i_end, k, c):
                v_end = _neuron_interval(b, j, te, end, v, i, e_mem, e_syn, k, c, limit, out_t, out_i, counts, stop_t)
                if v_end != v_end:  # past the spike limit: counts[b, j] > limit says so
                    return
            v = v_end
            i = i_end

    @cuda.jit
    def _backward_kernel(grad_out, out_t, out_i, w_t, ev_t, ev_src, ev_pos, n_ev, c, grad_times, gw_t, tangential, jumps):
        # thread (b, j): the adjoint of neuron j of sample b (module docstring). Threads
        # past the last neuron run the event loop with zeros: warp_sum needs every lane.
        j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        n = w_t.shape[1]
        active = j < n
        slots = out_t.shape[2]
        theta = c[_THETA]
        ratio = c[_RATIO]
        tau_syn = c[_TS]
        zero = c[_ZERO]
        cnt = 0
        if active:
            while cnt < slots and math.isfinite(out_t[b, j, cnt]):
                cnt += 1
            # the jumps J_k: a reverse recurrence over the neuron's own spikes; tangential
            # spikes (|I - theta| <= tangent_tolerance theta) counted, clipped where the
            # safeguard is on
            lv_plus = zero
            for q in range(cnt - 1, -1, -1):
                if q + 1 < cnt:
                    gap = out_t[b, j, q + 1] - out_t[b, j, q]
                    lv_plus = (lv_plus + jumps[b, j, q + 1]) * math.exp(-gap / c[_TM])
                numerator = theta * lv_plus + grad_out[b, j, q]
                jump, tangent = _adjoint_jump(numerator, out_i[b, j, q], c)
                if tangent:
                    cuda.atomic.add(tangential, 0, 1)
                jumps[b, j, q] = jump
        lv = zero
        li = zero
        r = cnt - 1  # the latest spike not yet passed
        m = n_ev[b]
        for e in range(m - 1, -1, -1):
            te = ev_t[b, e]
            t_loc = ev_t[b, e + 1] if e + 1 < m else c[_INF]
            while r >= 0 and out_t[b, j, r] > te:  # the neuron's spikes in (te, next event]
                tk = out_t[b, j, r]
                if lv != 0 or li != 0:  # (zero beyond the last spike: no flow from +inf)
                    e_mem, e_syn, k = _flow(t_loc - tk, c)
                    li = li * e_syn + lv * ratio * k
                    lv = lv * e_mem
                lv += jumps[b, j, r]
                t_loc = tk
                r -= 1
            if math.isfinite(t_loc) and t_loc > te:
                e_mem, e_syn, k = _flow(t_loc - te, c)
                li = li * e_syn + lv * ratio * k
                lv = lv * e_mem
            src = ev_src[b, e]
            g = zero
            if active:
                cuda.atomic.add(gw_t, (src, j), -tau_syn * li)
                g = w_t[src, j] * (lv - li)
            total = warp_sum(g)  # one atomic addition per warp
            if leads_warp():
                cuda.atomic.add(grad_times, (b, ev_pos[b, e]), total)


def _grid(batch: int, n: int) -> tuple[tuple[int, int], int]:
    # samples on grid x (up to 2**31 - 1 blocks), neuron blocks on grid y (up to 65,535)
    block = block_size(n)
    return (batch, (n + block - 1) // block), block


#: Spike capacity per neuron the next call of a layer shape starts with (as the CPU engine's).
_CAPACITY: dict[tuple[int, int], int] = {}


def feedforward_forward_cuda(
    times: Tensor,
    weight: Tensor,
    p: NeuronParams,
    horizon: float = math.inf,
    max_spikes: int | None = None,
) -> tuple[Tensor, Tensor, EventList]:
    """CUDA equivalent of :func:`eventprop.engines.pytorch.feedforward.feedforward_forward`.

    Same arguments and returns (shapes, padding, ``max_spikes`` behaviour), on the
    tensors' device in float64 (the engine's ``compute_dtype``; the caller has
    validated and widened them).
    """
    batch = times.shape[0]
    n_out = weight.shape[0]
    device = times.device
    checks = ValueChecks({"times": times}, {"weight": weight})
    events, n_ev = device_events(times)
    if batch == 0:
        checks.read_with()
        out = torch.full((0, n_out, 1), math.inf, dtype=times.dtype, device=device)
        return out, torch.zeros_like(out), cut_events(events, 0)
    ev_t, ev_src = events.times, events.source
    w_t = weight.detach().to(F64).t().contiguous()
    c = _constants(p, horizon)
    limit = spike_limit(max_spikes)
    key = (n_out, weight.shape[1])
    cap = _CAPACITY.get(key, 4)
    if max_spikes is not None:
        cap = min(cap, max_spikes)
    grid, block = _grid(batch, n_out)
    stop_t = torch.empty((batch, n_out), dtype=F64, device=device)
    counts = torch.empty((batch, n_out), dtype=torch.int64, device=device)
    while True:
        out_t = torch.empty((batch, n_out, cap), dtype=F64, device=device)
        out_i = torch.empty((batch, n_out, cap), dtype=F64, device=device)
        with on_device(device):  # (the device arrays too: numba binds them to the current context)
            _forward_kernel[grid, block, stream_for(device)](
                *[as_kernel_array(a) for a in (ev_t, ev_src, n_ev, w_t)], c, limit, as_kernel_array(out_t), as_kernel_array(out_i), as_kernel_array(counts), as_kernel_array(stop_t)
            )
        # the host synchronisation: the input's value checks, the event list's and the output's sizes
        n_events, most = checks.read_with(longest(n_ev), longest(counts.reshape(-1)))
        if most > limit:  # the first sample past the limit, its busiest neuron (as the CPU engine reports)
            b = int(torch.nonzero((counts > limit).any(dim=1))[0, 0])
            j = int(torch.argmax(counts[b]))
            raise SpikeLimitError.exceeded(max_spikes, b, j, float(stop_t[b, j]))
        if most <= cap:
            break
        cap = most  # some spikes were not stored: simulate again with room for all
    _CAPACITY[key] = max(4, 2 * most + 2)
    width = max(most, 1)
    if width < cap:
        out_t, out_i = out_t[..., :width].contiguous(), out_i[..., :width].contiguous()
    return out_t.to(times.dtype), out_i.to(times.dtype), cut_events(events, n_events)


def feedforward_backward_cuda(
    grad_out: Tensor,
    weight: Tensor,
    events: EventList,
    out_times: Tensor,
    out_current: Tensor,
    p: NeuronParams,
    input_shape: torch.Size,
    clip: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CUDA equivalent of :func:`eventprop.engines.numba_cpu.feedforward.feedforward_backward_numba`.

    Same arguments and returns: ``(grad_times, grad_weight, n_tangential, jumps)``.
    """
    dtype = out_times.dtype
    device = out_times.device
    batch, n_in, slots = input_shape
    n_out = weight.shape[0]
    if events.times.shape[1] == 0 or batch == 0 or n_out == 0:
        grad_times = torch.zeros(tuple(input_shape), dtype=dtype, device=device)
        grad_weight = torch.zeros(tuple(weight.shape), dtype=dtype, device=device)
        return grad_times, grad_weight, 0, torch.zeros_like(out_times, dtype=dtype)
    ev_t = events.times.to(F64).contiguous()
    n_ev = torch.isfinite(ev_t).sum(dim=1)
    grad_times = torch.zeros((batch, n_in * slots), dtype=F64, device=device)
    gw_t = torch.zeros((n_in, n_out), dtype=F64, device=device)
    tangential = torch.zeros(1, dtype=torch.int64, device=device)
    jumps = torch.zeros(tuple(out_times.shape), dtype=F64, device=device)
    inputs = (
        grad_out.to(F64).contiguous(),
        out_times.to(F64).contiguous(),
        out_current.to(F64).contiguous(),
        weight.detach().to(F64).t().contiguous(),
        ev_t,
        events.source.contiguous(),
        events.position.contiguous(),
        n_ev,
    )
    grid, block = _grid(batch, n_out)
    with on_device(device):
        _backward_kernel[grid, block, stream_for(device)](
            *[as_kernel_array(a) for a in inputs],
            _constants(p, math.inf, clip),
            *[as_kernel_array(a) for a in (grad_times, gw_t, tangential, jumps)],
        )
    return (
        grad_times.reshape(tuple(input_shape)).to(dtype),
        gw_t.t().to(dtype).contiguous(),
        tangential.reshape(()),  # read by the caller with its own check (errors.checked_adjoint)
        jumps.to(dtype),
    )
