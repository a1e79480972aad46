r"""CUDA engine, voltage trajectories: one GPU thread per (sample, neuron) for every query.

The same queries, decisions and floating-point operations as the compiled CPU engine's
:class:`~eventprop.engines.numba_cpu.trajectory.CompiledTrajectory` (equations there),
with its scalar functions compiled for the GPU. The neurons of a trajectory do not
interact (their inputs are given: input spikes and, for a LIF layer, its own spikes), so
thread ``(b, n)`` carries the state ``(V, I)`` of neuron ``n`` of sample ``b`` through the
sample's events:

* :meth:`CudaTrajectory.max`: the first largest candidate (segment starts, ends and
  interior stationary points); :meth:`CudaTrajectory.values`: ``V`` (and ``dV/dt``) at
  the query points. Work ``O(events + points)`` per thread.
* their adjoints: ``(lambda_V, lambda_I)`` of the neuron carried back through the
  events; ``dQ/dcurrent[n, s] += lambda_I`` at an event of source ``s`` (an atomic add;
  the threads of a warp write neighbouring entries) and the event time's gradient
  ``sum_n current[n, s] (-lambda_V,n / tau_mem + lambda_I,n / tau_syn)`` (minus
  ``theta lambda_V / tau_mem`` of the neuron an own spike resets) as a warp sum and one
  atomic add per warp (:func:`.device.warp_sum`); a query time's ``dQ/dt`` likewise.

Everything is computed in float64 and rounded to the trajectory's dtype. Sums are atomic:
gradients may differ between runs in their last bits. The backward is not itself
differentiable (``create_graph=True`` raises, as for the CPU engine's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...errors import refuse_create_graph
from ...model.neuron import NeuronParams
from ...model.trajectory import VoltageTrajectory
from .device import as_kernel_array, block_size, cuda, leads_warp, on_device, stream_for, warp_sum

if cuda is not None:
    from ..numba_cpu.scalar import _INF, _THETA, _TM, _TS, _constants, _extremum, _flow

__all__ = ["CudaTrajectory"]

F64 = torch.float64


if cuda is not None:

    @cuda.jit
    def _max_kernel(ev_t, ev_src, cur_t, n_inputs, window, c, best, t_best, seg, offset, tie, slope):
        # thread (b, n): the first largest candidate of neuron n of sample b (as the CPU's
        # _max_row): seg, the last event applied (-1: none); offset, the time after it; tie,
        # the event the maximum coincides with (-1: none); slope, dV/dt there
        n = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        if n >= cur_t.shape[1]:
            return
        n_events = ev_t.shape[1]
        inv_m = 1.0 / c[_TM]
        v = 0.0
        i = 0.0
        top = -c[_INF]
        t_top = 0.0
        seg_n = -1
        off_n = 0.0
        tie_n = -1
        slope_n = 0.0
        start = 0.0
        for k in range(-1, n_events):
            if k >= 0:
                src = ev_src[b, k]
                if src >= 0:
                    i += cur_t[src, n]
                    if src - n_inputs == n:
                        v -= c[_THETA]
            end = ev_t[b, k + 1] if k + 1 < n_events else window
            length = end - start
            e_mem, e_syn, kk = _flow(length, c)
            end_tie = k + 1 if k + 1 < n_events else -1
            v_end = v * e_mem + i * kk
            i_end = i * e_syn
            # a NaN candidate wins and stays (as torch.argmax picks the first NaN)
            if v > top or (v != v and top == top):  # the segment's start
                top, t_top, seg_n, off_n, tie_n, slope_n = v, start, k, 0.0, k, (i - v) * inv_m
            if v_end > top or (v_end != v_end and top == top):  # its end
                top, t_top, seg_n, off_n, tie_n, slope_n = v_end, start + length, k, length, end_tie, (i_end - v_end) * inv_m
            # an inner maximum: rising at the start, not at the end; there V = I < i0
            if i > v and not (i_end > v_end) and i > top:
                s = _extremum(v, i, c)
                if s < length:
                    em, es, ks = _flow(s, c)
                    v_in = v * em + i * ks
                    if v_in > top or (v_in != v_in and top == top):
                        top, t_top, seg_n, off_n, tie_n, slope_n = v_in, start + s, k, s, -1, 0.0
            v = v_end
            i = i_end
            start = end
        best[b, n] = top
        t_best[b, n] = t_top
        seg[b, n] = seg_n
        offset[b, n] = off_n
        tie[b, n] = tie_n
        slope[b, n] = slope_n

    @cuda.jit(device=True)
    def _event_adjoint(b, k, n, active, ev_t, ev_src, cur_t, n_inputs, c, lv, li, grad_t, gcur):
        # at event k, from neuron n's adjoint (lv, li) just after it: dQ/dcurrent[n, src] and
        # the event time's gradient (a warp sum: every lane calls it); returns the adjoint
        # carried back to just after event k - 1 (or t = 0). (A device function of the
        # kernels' own module: the simulator's swap of ``cuda`` is then safe, see .device.)
        src = ev_src[b, k]
        if src >= 0:
            acc = 0.0
            if active:
                inv_m = 1.0 / c[_TM]
                cuda.atomic.add(gcur, (src, n), li)
                acc = cur_t[src, n] * (-inv_m * lv + (1.0 / c[_TS]) * li)
                if src - n_inputs == n:
                    acc -= c[_THETA] * lv * inv_m
            total = warp_sum(acc)
            if leads_warp():
                cuda.atomic.add(grad_t, (b, k), total)
        prev = ev_t[b, k - 1] if k > 0 else 0.0
        d = ev_t[b, k] - prev
        if d > 0:
            e_mem, e_syn, kk = _flow(d, c)
            li = li * e_syn + lv * kk
            lv = lv * e_mem
        return lv, li

    @cuda.jit
    def _max_adjoint_kernel(grad, ev_t, ev_src, cur_t, n_inputs, c, seg, offset, tie, slope, grad_t, gcur):
        # thread (b, n): the adjoint of neuron n's maximum, back through the events; threads
        # past the last neuron run the loop with zeros (warp_sum needs every lane)
        n = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        active = n < cur_t.shape[1]
        n_events = ev_t.shape[1]
        lv = 0.0
        li = 0.0
        seg_n = seg[b, n] if active else -2
        for k in range(n_events - 1, -2, -1):
            if seg_n == k:  # the maximum, evaluated from the state after event k
                g = grad[b, n]
                if g != 0:
                    e_mem, e_syn, kk = _flow(offset[b, n], c)
                    lv += g * e_mem
                    li += g * kk
                    if tie[b, n] >= 0:
                        cuda.atomic.add(grad_t, (b, tie[b, n]), g * slope[b, n])
            if k < 0:
                break
            lv, li = _event_adjoint(b, k, n, active, ev_t, ev_src, cur_t, n_inputs, c, lv, li, grad_t, gcur)

    @cuda.jit
    def _values_kernel(t, gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope):
        # thread (b, n): out[b, p, n] = V_n(t[b, p]) from the state after event gov[b, p];
        # out_slope (if not empty) gets dV/dt there
        n = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        if n >= cur_t.shape[1]:
            return
        n_events = ev_t.shape[1]
        n_points = t.shape[1]
        slopes = out_slope.shape[0] > 0
        inv_m = 1.0 / c[_TM]
        v = 0.0
        i = 0.0
        prev = 0.0
        q = 0
        for k in range(-1, n_events):
            if k >= 0:
                d = ev_t[b, k] - prev
                if d > 0:
                    e_mem, e_syn, kk = _flow(d, c)
                    v_k = v * e_mem + i * kk
                    i = i * e_syn
                    v = v_k
                prev = ev_t[b, k]
                src = ev_src[b, k]
                if src >= 0:
                    i += cur_t[src, n]
                    if src - n_inputs == n:
                        v -= c[_THETA]
            while q < n_points and gov[b, q] == k:
                e_mem, e_syn, kk = _flow(t[b, q] - prev, c)
                v_q = v * e_mem + i * kk
                out[b, q, n] = v_q
                if slopes:
                    out_slope[b, q, n] = (i * e_syn - v_q) * inv_m
                q += 1

    @cuda.jit
    def _values_adjoint_kernel(grad, t, gov, out_slope, ev_t, ev_src, cur_t, n_inputs, c, grad_t, grad_q, gcur):
        # thread (b, n): the adjoint of neuron n's values; grad (B, P, N) = dQ/dV at the
        # points; grad_q (B, P) gets dQ/dt of the points when out_slope is not empty
        n = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.x
        active = n < cur_t.shape[1]
        n_events = ev_t.shape[1]
        n_points = t.shape[1]
        slopes = out_slope.shape[0] > 0
        lv = 0.0
        li = 0.0
        q = n_points - 1
        for k in range(n_events - 1, -2, -1):
            origin = ev_t[b, k] if k >= 0 else 0.0
            while q >= 0 and gov[b, q] == k:
                e_mem, e_syn, kk = _flow(t[b, q] - origin, c)
                acc = 0.0
                if active:
                    g = grad[b, q, n]
                    lv += g * e_mem
                    li += g * kk
                    if slopes:
                        acc = g * out_slope[b, q, n]
                if slopes:
                    total = warp_sum(acc)
                    if leads_warp():
                        cuda.atomic.add(grad_q, (b, q), total)
                q -= 1
            if k < 0:
                break
            lv, li = _event_adjoint(b, k, n, active, ev_t, ev_src, cur_t, n_inputs, c, lv, li, grad_t, gcur)


def _launch(kernel: Any, batch: int, n: int, device: torch.device, *args: Any) -> None:
    block = block_size(n)
    with on_device(device):
        kernel[(batch, (n + block - 1) // block), block, stream_for(device)](  # samples on grid x
            *[as_kernel_array(a) if isinstance(a, Tensor) else a for a in args]
        )


def _events(times: Tensor, source: Tensor, current: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The kernels' float64 event times, sources and ``current`` transposed ``(sources, neurons)``."""
    return times.detach().to(F64).contiguous(), source.contiguous(), current.detach().to(F64).t().contiguous()


class _Max(torch.autograd.Function):
    """``(times, current) -> (v_max, t_peak)`` of :meth:`CudaTrajectory.max`."""

    @staticmethod
    def forward(
        ctx: Any, times: Tensor, current: Tensor, source: Tensor, n_inputs: int, params: NeuronParams, window: float
    ) -> tuple[Tensor, Tensor]:
        ev_t, ev_src, cur_t = _events(times, source, current)
        batch, n = times.shape[0], current.shape[0]
        z = dict(device=times.device)
        best, t_best, offset, slope = (torch.zeros((batch, n), dtype=F64, **z) for _ in range(4))
        seg, tie = (torch.zeros((batch, n), dtype=torch.int64, **z) for _ in range(2))
        c = _constants(params)
        if batch and n:
            _launch(_max_kernel, batch, n, times.device, ev_t, ev_src, cur_t, n_inputs, float(window), c,
                    best, t_best, seg, offset, tie, slope)  # fmt: skip
        ctx.save_for_backward(times, current, source, seg, offset, tie, slope)
        ctx.n_inputs, ctx.c = n_inputs, c
        t_peak = t_best.to(times.dtype)
        ctx.mark_non_differentiable(t_peak)
        return best.to(times.dtype), t_peak

    @staticmethod
    def backward(ctx: Any, grad_max: Tensor, _grad_peak: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("the CUDA engine's voltage trajectory (use engine='torch' for it)")
        times, current, source, seg, offset, tie, slope = ctx.saved_tensors
        ev_t, ev_src, cur_t = _events(times, source, current)
        batch, n_events = ev_t.shape
        n_sources, n = cur_t.shape
        grad_t = torch.zeros((batch, n_events), dtype=F64, device=times.device)
        gcur = torch.zeros((n_sources, n), dtype=F64, device=times.device)
        if batch and n:
            _launch(_max_adjoint_kernel, batch, n, times.device, grad_max.to(F64).contiguous(), ev_t, ev_src, cur_t,
                    ctx.n_inputs, ctx.c, seg, offset, tie, slope, grad_t, gcur)  # fmt: skip
        return grad_t.to(times.dtype), gcur.t().to(current.dtype), None, None, None, None


class _Values(torch.autograd.Function):
    """``(times, current, t) -> V`` ``(batch, neurons, points)`` of :meth:`CudaTrajectory.values`."""

    @staticmethod
    def forward(
        ctx: Any, times: Tensor, current: Tensor, t: Tensor, governing: Tensor, source: Tensor, n_inputs: int, params: NeuronParams
    ) -> Tensor:
        ev_t, ev_src, cur_t = _events(times, source, current)
        batch, n_points = t.shape
        n = current.shape[0]
        z = dict(device=times.device)
        q_t, q_gov = t.detach().to(F64).contiguous(), governing.contiguous()
        out = torch.zeros((batch, n_points, n), dtype=F64, **z)
        out_slope = torch.zeros((batch, n_points, n) if ctx.needs_input_grad[2] else (0, 0, 0), dtype=F64, **z)
        c = _constants(params)
        if batch and n:
            _launch(_values_kernel, batch, n, times.device, q_t, q_gov, ev_t, ev_src, cur_t, n_inputs, c, out, out_slope)
        ctx.save_for_backward(times, current, t, governing, source, out_slope)
        ctx.n_inputs, ctx.c = n_inputs, c
        return out.to(times.dtype).transpose(1, 2)

    @staticmethod
    def backward(ctx: Any, grad_v: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("the CUDA engine's voltage trajectory (use engine='torch' for it)")
        times, current, t, governing, source, out_slope = ctx.saved_tensors
        ev_t, ev_src, cur_t = _events(times, source, current)
        batch, n_events = ev_t.shape
        n_sources, n = cur_t.shape
        n_points = t.shape[1]
        z = dict(device=times.device)
        grad_t = torch.zeros((batch, n_events), dtype=F64, **z)
        grad_q = torch.zeros((batch, n_points), dtype=F64, **z)
        gcur = torch.zeros((n_sources, n), dtype=F64, **z)
        if batch and n:
            grad = grad_v.transpose(1, 2).to(F64).contiguous()  # (B, P, N)
            _launch(_values_adjoint_kernel, batch, n, times.device, grad, t.detach().to(F64).contiguous(), governing.contiguous(),
                    out_slope, ev_t, ev_src, cur_t, ctx.n_inputs, ctx.c, grad_t, grad_q, gcur)  # fmt: skip
        grad_points = grad_q.to(t.dtype) if ctx.needs_input_grad[2] else None
        return grad_t.to(times.dtype), gcur.t().to(current.dtype), grad_points, None, None, None, None


@dataclass(frozen=True, eq=False)
class CudaTrajectory(VoltageTrajectory):
    """A :class:`~eventprop.model.trajectory.VoltageTrajectory` whose queries are CUDA kernels (module docstring).

    Memory: the events, and per query its result (and for :meth:`values` with
    differentiable times the slope ``dV/dt`` at the points). Its gradients are not
    differentiable again: ``create_graph=True`` through them raises.
    """

    def max(self) -> tuple[Tensor, Tensor]:
        return _Max.apply(self.times, self.current, self.source, self.n_inputs, self.params, self.stored_window)

    def _values(self, t: Tensor, governing: Tensor) -> Tensor:
        return _Values.apply(self.times, self.current, t, governing, self.source, self.n_inputs, self.params)
