r"""PyTorch engine, feed-forward LIF layers: exact forward simulation and EventProp backward.

Neuron ``j`` receives the input events ``e`` (time ``t_e``, source ``src_e``) and
jumps ``I_j += W[j, src_e]``. Without its own spikes, its state right after event
``e`` is (see :mod:`eventprop.model.neuron`)::

    I_j(t_e) = sum_{e' <= e} W[j, src_e'] exp(-(t_e - t_e') / tau_syn)
    V_j(t_e) = sum_{e' <= e} W[j, src_e'] K(t_e - t_e') - theta sum_{k: t_k <= t_e} exp(-(t_e - t_k) / tau_mem)

(the last sum: reset by subtraction at the neuron's own spikes ``t_k``). The first
two are computed at once for every batch element, neuron and event by the prefix scan
of :func:`~eventprop.engines.pytorch.trajectory.flow_scan` (decaying exponentials of
time differences only: no overflow for long trials; memory linear in the events). The engine then iterates over
*spike rounds*: each round finds, for every neuron at once, the first threshold
crossing after its previous spike (bracketed analytically per inter-event interval,
refined by Newton), so Python loops run over spikes per neuron, never over events.

Backward (paper Table 2 with ``l_V = 0``; ``g_k = dL/dt_k`` given by autograd for the
output spike ``k`` of neuron ``j``): ``lambda_V`` of neuron ``j`` is a sum of kernels
over its later spikes::

    lambda_V(t) = sum_{k: t_k > t} J_k exp(-(t_k - t) / tau_mem)
    lambda_I(t) = sum_{k: t_k > t} J_k (tau_mem / tau_syn) K(t_k - t)
    J_k = (theta lambda_V(t_k^+) + g_k) / (I_j(t_k) - theta)

(``tau_mem dV/dt = I - theta`` just before a spike, since ``V = theta`` there). Then::

    dL/dW[j, i]  = -tau_syn sum_{spikes e of input i} lambda_I[j](t_e)
    dL/dt_e      = sum_j W[j, src_e] (lambda_V[j] - lambda_I[j])(t_e)

Saved for backward: the input events and, per output spike, its time and current.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams, adjoint_jump, crossing_bracket, psp_kernel, solve_crossing
from ...model.spikes import EventList, sorted_events
from .trajectory import flow_scan

__all__ = ["feedforward_forward", "feedforward_backward"]


#: Largest number of (batch, neurons, events) entries one spike round handles at once: each
#: round holds a few dozen float64 tensors of that size (about 1 GB at this bound), so
#: larger layers are simulated in blocks of samples and neurons (they are independent).
_ROUND_ELEMENTS = 1 << 21


def feedforward_forward(
    times: Tensor,
    weight: Tensor,
    p: NeuronParams,
    horizon: float = math.inf,
    max_spikes: int | None = None,
) -> tuple[Tensor, Tensor, EventList]:
    """Simulate a feed-forward LIF layer exactly.

    Args:
        times: ``(batch, in_features, max_in)`` input spike times (data contract).
        weight: ``(out_features, in_features)``.
        p: neuron parameters.
        horizon: no spike is emitted after ``horizon``.
        max_spikes: optional cap on spikes per neuron; exceeding it raises
            :class:`~eventprop.errors.SpikeLimitError`.

    Returns:
        ``(out_times, out_current, events)``: output spike times
        ``(batch, out_features, max_out)`` (``+inf`` padded, ``max_out >= 1``), the
        synaptic current ``I`` of the firing neuron at each spike (0 at padding), and
        the merged input events.

    Memory is linear in the events: blocks of samples and neurons of at most
    ``_ROUND_ELEMENTS`` (batch x neurons x events) entries are simulated one after the other.
    """
    events = sorted_events(times)
    batch, n_out, n_events = times.shape[0], weight.shape[0], events.times.shape[1]
    n_block = max(1, min(n_out, _ROUND_ELEMENTS // max(1, n_events)))
    b_block = max(1, _ROUND_ELEMENTS // max(1, n_block * n_events))
    if n_block >= n_out and b_block >= batch:
        return (*_forward_block(events, weight, p, horizon, max_spikes, 0, 0), events)
    blocks = [
        [
            _forward_block(
                EventList(*(x[b0 : b0 + b_block] for x in (events.times, events.source, events.position))),
                weight[j0 : j0 + n_block], p, horizon, max_spikes, b0, j0,
            )
            for j0 in range(0, n_out, n_block)
        ]
        for b0 in range(0, batch, b_block)
    ]
    width = max(t.shape[-1] for row in blocks for t, _ in row)
    out_times = torch.cat([torch.cat([_pad(t, width, math.inf) for t, _ in row], dim=1) for row in blocks], dim=0)
    out_current = torch.cat([torch.cat([_pad(i, width, 0.0) for _, i in row], dim=1) for row in blocks], dim=0)
    return out_times, out_current, events


def _pad(x: Tensor, width: int, fill: float) -> Tensor:
    """``x`` ``(..., k)`` padded with ``fill`` to ``(..., width)``."""
    if x.shape[-1] == width:
        return x
    return torch.cat([x, x.new_full((*x.shape[:-1], width - x.shape[-1]), fill)], dim=-1)


def _forward_block(
    events: EventList,
    weight: Tensor,
    p: NeuronParams,
    horizon: float,
    max_spikes: int | None,
    sample_offset: int,
    neuron_offset: int,
) -> tuple[Tensor, Tensor]:
    """:func:`feedforward_forward` of the samples of ``events`` and the neurons of
    ``weight`` (``sample_offset``, ``neuron_offset``: their first indices in the layer,
    for the spike-limit error): ``(out_times, out_current)``."""
    batch, n_events = events.times.shape
    n_out = weight.shape[0]
    if n_events == 0:
        out = torch.full((batch, n_out, 1), math.inf, dtype=events.times.dtype, device=events.times.device)
        return out, torch.zeros_like(out)

    finite = events.finite
    t = torch.where(finite, events.times, torch.zeros_like(events.times))  # (B, E)
    w_ev = torch.where(finite[..., None], weight.t()[events.source], torch.zeros((), dtype=weight.dtype, device=weight.device))

    # State right after each event, without resets, by the prefix scan. Padding events (no
    # jump) sit at the last real event's time, so that every gap is finite and >= 0.
    last_real = torch.where(finite, events.times, torch.zeros_like(events.times)).max(dim=1, keepdim=True).values
    t_scan = torch.where(finite, events.times, last_real)[:, None, :]  # (B, 1, E)
    jumps = w_ev.transpose(1, 2)  # (B, N, E)
    voltage_at, current_at = flow_scan(t_scan, jumps, torch.zeros_like(jumps), p)
    zero = torch.zeros((), dtype=t.dtype, device=t.device)

    t_next = torch.cat([events.times[:, 1:], torch.full_like(events.times[:, :1], math.inf)], dim=1)
    end = torch.clamp(t_next, max=horizon)[:, None, :]  # (B, 1, E)
    interval_ok = (finite & (events.times < horizon))[:, None, :]
    t_events = t[:, None, :].expand(batch, n_out, n_events)
    index = torch.arange(n_events, device=t.device)

    reset = torch.zeros_like(voltage_at)
    last_t = torch.zeros(batch, n_out, dtype=t.dtype, device=t.device)
    last_e = torch.full((batch, n_out), -1, dtype=torch.long, device=t.device)
    active = torch.ones(batch, n_out, dtype=torch.bool, device=t.device)
    # spike k of every neuron goes to column k of buffers that double when full (a list of
    # small tensors between the round's large temporaries would fragment the heap)
    out_t = torch.full((batch, n_out, 4), math.inf, dtype=t.dtype, device=t.device)
    out_i = torch.zeros_like(out_t)
    rounds = 0
    while True:
        # Interval starts: after each event, except the interval holding the last spike,
        # which restarts at that spike with V = theta - theta = 0.
        holds_last = index == last_e[..., None]
        li = last_e.clamp(min=0)[..., None]
        i_last = current_at.gather(2, li).squeeze(2) * torch.exp(-(last_t - t_events.gather(2, li).squeeze(2)) / p.tau_syn)
        v0 = torch.where(holds_last, zero, voltage_at - reset)
        i0 = torch.where(holds_last, i_last[..., None], current_at)
        start = torch.where(holds_last, last_t[..., None], t_events)
        length = end - start
        usable = interval_ok & (index >= last_e[..., None]) & active[..., None] & (length > 0)
        length = torch.where(usable, length, zero)
        crosses, lo, hi = crossing_bracket(v0, i0, length, p)
        crosses = crosses & usable
        fired = crosses.any(dim=-1)
        if not bool(fired.any()):
            break
        if max_spikes is not None and rounds + 1 > max_spikes:
            b, j = (int(x) for x in fired.nonzero()[0])
            e = int(crosses[b, j].to(torch.uint8).argmax())  # the interval of the spike past the limit
            s = solve_crossing(*(x[b, j, e].reshape(1) for x in (v0, i0, lo, hi)), p)
            t_over = float(start[b, j, e] + s[0])
            raise SpikeLimitError.exceeded(max_spikes, sample_offset + b, neuron_offset + j, t_over)
        first = crosses.to(torch.uint8).argmax(dim=-1)[..., None]  # first crossing interval

        def pick(x: Tensor) -> Tensor:
            return x.gather(2, first).squeeze(2)[fired]

        s = solve_crossing(pick(v0), pick(i0), pick(lo), pick(hi), p)
        t_spike = torch.full_like(last_t, math.inf)
        t_spike[fired] = pick(start) + s
        i_spike = torch.zeros_like(last_t)
        i_spike[fired] = pick(i0) * torch.exp(-s / p.tau_syn)
        if rounds == out_t.shape[-1]:
            out_t = torch.cat([out_t, torch.full_like(out_t, math.inf)], dim=-1)
            out_i = torch.cat([out_i, torch.zeros_like(out_i)], dim=-1)
        out_t[..., rounds] = t_spike
        out_i[..., rounds] = i_spike
        rounds += 1

        later = (index > first) & fired[..., None]
        decay = torch.exp(-(t_events - torch.where(fired, t_spike, zero)[..., None]).clamp(min=0) / p.tau_mem)
        reset = reset + torch.where(later, p.threshold * decay, zero)
        first = first.squeeze(2)
        last_e = torch.where(fired, first, last_e)
        last_t = torch.where(fired, t_spike, last_t)
        active = fired

    width = max(rounds, 1)
    return out_t[..., :width].contiguous(), out_i[..., :width].contiguous()


def _jumps(grad_out: Tensor, out_times: Tensor, out_current: Tensor, p: NeuronParams, clip: float = 0.0) -> Tensor:
    """Jumps ``J_k`` of ``lambda_V`` at each output spike, ``(batch, neurons, max_out)``.

    Reverse recurrence over each neuron's own spikes:
    ``lambda_V(t_k^+) = (lambda_V(t_{k+1}^+) + J_{k+1}) exp(-(t_{k+1} - t_k)/tau_mem)``.
    """
    spiked = torch.isfinite(out_times)
    zero = torch.zeros((), dtype=out_times.dtype, device=out_times.device)
    g = torch.where(spiked, grad_out, zero)
    current = torch.where(spiked, out_current, torch.full_like(out_current, p.threshold + 1))
    jumps = torch.zeros_like(out_times)
    lv_plus = torch.zeros_like(out_times[..., 0])
    for k in reversed(range(out_times.shape[-1])):
        if k + 1 < out_times.shape[-1]:
            nxt = spiked[..., k + 1]
            gap = torch.where(nxt, out_times[..., k + 1] - out_times[..., k], zero)
            lv_plus = torch.where(nxt, (lv_plus + jumps[..., k + 1]) * torch.exp(-gap / p.tau_mem), zero)
        jumps[..., k] = torch.where(spiked[..., k], adjoint_jump(lv_plus, 0.0, g[..., k], current[..., k], p, clip), zero)
    return jumps


#: Largest block of (batch, neurons, events, spikes) entries :func:`adjoint_at` builds at once.
_BLOCK_ELEMENTS = 1 << 19


def adjoint_at(times: Tensor, finite: Tensor, out_times: Tensor, jumps: Tensor, p: NeuronParams) -> tuple[Tensor, Tensor]:
    """``lambda_V`` and ``lambda_I`` of every neuron at the given event times.

    Args:
        times: ``(batch, events)`` query times; ``finite`` masks real ones.
        out_times, jumps: ``(batch, neurons, max_out)``.

    Returns:
        two ``(batch, neurons, events)`` tensors (0 at padded events).

    The kernel sums run over blocks of events of at most ``_BLOCK_ELEMENTS`` entries of
    ``(batch, neurons, events, max_out)``, so that memory stays linear in the events.
    """
    zero = torch.zeros((), dtype=times.dtype, device=times.device)
    spiked = torch.isfinite(out_times)[:, :, None, :]
    batch, neurons, slots = out_times.shape
    block = max(1, _BLOCK_ELEMENTS // max(1, batch * neurons * slots))
    # written block by block into the results: no list of parts between the temporaries
    # (which fragments the heap until the process holds many times what it uses)
    lam_v = times.new_empty(batch, neurons, times.shape[1])
    lam_i = torch.empty_like(lam_v)
    for start in range(0, times.shape[1], block):
        q, ok = times[:, start : start + block], finite[:, start : start + block]
        lag = out_times[:, :, None, :] - torch.where(ok, q, zero)[:, None, :, None]  # (B, N, Eb, K)
        live = spiked & ok[:, None, :, None] & (lag > 0)
        lag = torch.where(live, lag, zero)
        j = torch.where(live, jumps[:, :, None, :], zero)
        torch.sum(j * torch.exp(-lag / p.tau_mem), dim=-1, out=lam_v[:, :, start : start + block])
        torch.sum(j * (p.tau_mem / p.tau_syn) * psp_kernel(lag, p), dim=-1, out=lam_i[:, :, start : start + block])
    return lam_v, lam_i


def feedforward_backward(
    grad_out: Tensor,
    weight: Tensor,
    events: EventList,
    out_times: Tensor,
    out_current: Tensor,
    p: NeuronParams,
    input_shape: torch.Size,
    clip: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """EventProp backward of :func:`feedforward_forward`.

    Args:
        grad_out: ``dL/d out_times``, ``(batch, out_features, max_out)``; entries at
            padding are ignored (padding does not depend on any parameter).
        input_shape: shape of the forward's ``times``.
        clip: bound of the jump denominator ``|I - theta|`` (0: none; see
            :func:`~eventprop.model.neuron.adjoint_jump`).

    Returns:
        ``(grad_times, grad_weight, jumps)``: the gradients, of shapes ``input_shape``
        and ``weight.shape``, and the jumps ``J_k`` of ``lambda_V`` at the output spikes
        (``out_times``' shape, 0 at padding).
    """
    batch, n_in, slots = input_shape
    grad_times = torch.zeros(batch, n_in * slots, dtype=out_times.dtype, device=out_times.device)
    grad_weight = torch.zeros_like(weight)
    if events.times.shape[1] == 0:
        return grad_times.reshape(input_shape), grad_weight, torch.zeros_like(out_times)
    jumps = _jumps(grad_out, out_times, out_current, p, clip)
    finite = events.finite
    src = torch.where(finite, events.source, torch.zeros_like(events.source)).reshape(-1)
    n_out, n_events = weight.shape[0], events.times.shape[1]
    grad_weight_t = torch.zeros(n_in, n_out, dtype=weight.dtype, device=weight.device)
    g_ev = torch.zeros_like(events.times)
    n_block = max(1, min(n_out, _ROUND_ELEMENTS // max(1, batch * n_events)))  # memory linear in the events
    for j0 in range(0, n_out, n_block):
        block = slice(j0, j0 + n_block)
        lam_v, lam_i = adjoint_at(events.times, finite, out_times[:, block], jumps[:, block], p)  # (B, Nb, E)
        contrib = (-p.tau_syn * lam_i).transpose(1, 2).reshape(-1, lam_i.shape[1])  # (B*E, Nb)
        grad_weight_t[:, block].index_add_(0, src, contrib)
        w_ev = weight[block].t()[events.source]  # (B, E, Nb)
        g_ev += (w_ev * (lam_v - lam_i).transpose(1, 2)).sum(-1)
    g_ev = torch.where(finite, g_ev, torch.zeros_like(g_ev))
    grad_times.scatter_(1, events.position, g_ev)
    return grad_times.reshape(input_shape), grad_weight_t.t().contiguous(), jumps
