r"""PyTorch engine, recurrent LIF layers: exact event loop forward, EventProp backward.

A recurrent layer has input weights ``W`` ``(N, in)`` and recurrent weights ``R``
``(N, N)`` with zero diagonal (``R[m, n]``: from neuron ``n`` to ``m``). Spikes of the
layer change the currents of the layer, so events must be processed in true time
order: the forward pass loops over events (input spikes and the layer's own spikes),
vectorised over the batch and the neurons. At each step every neuron's next
threshold crossing before the next input event is found exactly
(:func:`eventprop.model.neuron.first_crossing`); the earliest one fires (all neurons
crossing at that very instant fire together, the paper's rule for coincident spikes),
resets ``V -> V - theta`` and sends ``I_m += R[m, n]``.

Backward (paper Table 2, ``l_V = 0``) walks the same steps in reverse, carrying
``(lambda_V, lambda_I)`` of all neurons in closed form between steps
(:func:`eventprop.model.neuron.adjoint_flow`). At a step where the neurons ``n`` fire
(values just after the spike in forward time, shared by coincident spikes)::

    dL/dR[m, n] += -tau_syn lambda_I[m]
    lambda_V[n] += (theta lambda_V[n] + sum_m R[m, n] (lambda_V[m] - lambda_I[m]) + g_k)
                   / (I_n - theta)

and at an input event ``e`` from input ``i``::

    dL/dW[j, i] += -tau_syn lambda_I[j],     dL/dt_e = sum_j W[j, i] (lambda_V[j] - lambda_I[j]).

Saved for backward: per step its time, kind, firing neurons and their currents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import SpikeLimitError
from ...model.neuron import NeuronParams, adjoint_flow, adjoint_jump, first_crossing, free_current, free_voltage
from ...model.spikes import EventList, sorted_events

__all__ = ["RecurrentTape", "recurrent_forward", "recurrent_backward"]


@dataclass
class RecurrentTape:
    """The forward steps of a recurrent layer, stacked over steps ``T``.

    Attributes:
        time: ``(T, batch)`` time of the step (``inf`` where the sample had finished).
        is_input: ``(T, batch)`` the step is an input event.
        event: ``(T, batch)`` index into the event list of that input event.
        fired: ``(T, batch, N)`` neurons spiking at the step.
        current: ``(T, batch, N)`` current ``I`` just before the step (used where fired).
        ordinal: ``(T, batch, N)`` index ``k`` of that spike in the neuron's train.
    """

    time: Tensor
    is_input: Tensor
    event: Tensor
    fired: Tensor
    current: Tensor
    ordinal: Tensor

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.time, self.is_input, self.event, self.fired, self.current, self.ordinal)


def recurrent_forward(
    times: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor,
    p: NeuronParams,
    horizon: float = math.inf,
    max_spikes: int | None = None,
) -> tuple[Tensor, EventList, RecurrentTape]:
    """Simulate a recurrent LIF layer exactly.

    Args:
        times: ``(batch, in_features, max_in)`` input spike times.
        weight: ``(N, in_features)``; recurrent_weight: ``(N, N)`` with zero diagonal.
        horizon: no spike after ``horizon``.
        max_spikes: optional cap on spikes per neuron (raises
            :class:`~eventprop.errors.SpikeLimitError` when exceeded).

    Returns:
        ``(out_times, events, tape)`` with ``out_times`` ``(batch, N, max_out)``.
    """
    batch = times.shape[0]
    n = weight.shape[0]
    dtype, device = times.dtype, times.device
    events = sorted_events(times)
    padded_times = torch.cat([events.times, torch.full((batch, 1), math.inf, dtype=dtype, device=device)], 1)
    padded_source = torch.cat([events.source, torch.zeros((batch, 1), dtype=torch.long, device=device)], 1)

    v = torch.zeros(batch, n, dtype=dtype, device=device)
    i = torch.zeros_like(v)
    now = torch.zeros(batch, dtype=dtype, device=device)
    pointer = torch.zeros(batch, dtype=torch.long, device=device)
    counts = torch.zeros(batch, n, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    zero = torch.zeros((), dtype=dtype, device=device)
    steps: list[tuple[Tensor, ...]] = []
    while True:
        next_in = padded_times.gather(1, pointer[:, None]).squeeze(1)
        end = torch.clamp(next_in, max=horizon)
        length = torch.where(done, zero, (end - now).clamp(min=0))
        s = first_crossing(v, i, length[:, None].expand(batch, n), p)
        s_min = s.min(dim=1).values
        spike = torch.isfinite(s_min) & ~done
        take_input = ~spike & ~done & torch.isfinite(next_in) & (next_in <= horizon)
        done = done | ~(spike | take_input)
        if bool(done.all()):
            break
        step = spike | take_input
        t_step = torch.where(spike, now + s_min, torch.where(take_input, next_in, torch.full_like(now, math.inf)))
        lag = torch.where(step, t_step - now, zero)[:, None]
        v = free_voltage(v, i, lag, p)
        i = free_current(i, lag, p)
        fired = spike[:, None] & (s == s_min[:, None])
        current = i.clone()
        v = torch.where(fired, zero, v)  # V = theta - theta at the crossing
        i = i + fired.to(dtype) @ recurrent_weight.t()
        src = padded_source.gather(1, pointer[:, None]).squeeze(1)
        i = i + torch.where(take_input[:, None], weight.t()[src], zero)
        steps.append((t_step, take_input, pointer.clone(), fired, current, counts.clone()))
        counts = counts + fired.long()
        pointer = pointer + take_input.long()
        now = torch.where(step, t_step, now)
        if max_spikes is not None and int(counts.max()) > max_spikes:
            b, n = (int(x) for x in (counts > max_spikes).nonzero()[0])
            raise SpikeLimitError.exceeded(max_spikes, b, n, float(t_step[b]))

    n_slots = max(int(counts.max()) if counts.numel() else 0, 1)
    out = torch.full((batch, n, n_slots), math.inf, dtype=dtype, device=device)
    if steps:
        tape = RecurrentTape(*(torch.stack(parts) for parts in zip(*steps)))
        t_idx, b_idx, n_idx = torch.nonzero(tape.fired, as_tuple=True)
        out[b_idx, n_idx, tape.ordinal[t_idx, b_idx, n_idx]] = tape.time[t_idx, b_idx]
    else:
        empty = torch.zeros((0, batch), dtype=dtype, device=device)
        tape = RecurrentTape(
            time=empty,
            is_input=empty.bool(),
            event=empty.long(),
            fired=torch.zeros((0, batch, n), dtype=torch.bool, device=device),
            current=torch.zeros((0, batch, n), dtype=dtype, device=device),
            ordinal=torch.zeros((0, batch, n), dtype=torch.long, device=device),
        )
    return out, events, tape


def recurrent_backward(
    grad_out: Tensor,
    weight: Tensor,
    recurrent_weight: Tensor,
    events: EventList,
    tape: RecurrentTape,
    p: NeuronParams,
    input_shape: torch.Size,
    clip: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EventProp backward of :func:`recurrent_forward`.

    Returns:
        ``(grad_times, grad_weight, grad_recurrent_weight, jumps)``; the recurrent
        gradient has a zero diagonal; ``jumps``: the jumps ``J_k`` of ``lambda_V`` at
        the output spikes (``grad_out``'s shape, 0 at padding).
    """
    batch, n_in, slots = input_shape
    n = weight.shape[0]
    dtype, device = grad_out.dtype, grad_out.device
    zero = torch.zeros((), dtype=dtype, device=device)
    grad_events = torch.zeros(batch, events.times.shape[1] + 1, dtype=dtype, device=device)
    grad_weight_t = torch.zeros(n_in, n, dtype=dtype, device=device)
    grad_rec = torch.zeros(n, n, dtype=dtype, device=device)
    lam_v = torch.zeros(batch, n, dtype=dtype, device=device)
    lam_i = torch.zeros_like(lam_v)
    cursor = torch.zeros(batch, dtype=dtype, device=device)
    started = torch.zeros(batch, dtype=torch.bool, device=device)
    grad_padded = torch.cat([grad_out, torch.zeros_like(grad_out[..., :1])], dim=-1)
    jumps = torch.zeros_like(grad_padded)
    for k in reversed(range(tape.time.shape[0])):
        t_step = tape.time[k]
        live = torch.isfinite(t_step)
        lag = torch.where(live & started, cursor - t_step, zero)[:, None]
        lam_v, lam_i = adjoint_flow(lam_v, lam_i, lag, p)
        cursor = torch.where(live, t_step, cursor)
        started = started | live

        is_input = tape.is_input[k]
        if bool(is_input.any()):
            event = tape.event[k]
            src = events.source.gather(1, event.clamp(max=events.times.shape[1] - 1)[:, None]).squeeze(1)
            grad_weight_t.index_add_(0, src[is_input], -p.tau_syn * lam_i[is_input])
            sent = (weight.t()[src] * (lam_v - lam_i)).sum(-1)
            grad_events.scatter_add_(1, event[:, None], torch.where(is_input, sent, zero)[:, None])

        fired = tape.fired[k]
        if bool(fired.any()):
            f = fired.to(dtype)
            grad_rec += -p.tau_syn * lam_i.t() @ f
            sent_back = (lam_v - lam_i) @ recurrent_weight
            g = grad_padded.gather(2, tape.ordinal[k][..., None]).squeeze(2)
            current = torch.where(fired, tape.current[k], torch.full_like(lam_v, p.threshold + 1))
            jump = torch.where(fired, adjoint_jump(lam_v, sent_back, g, current, p, clip), zero)
            jumps.scatter_add_(2, tape.ordinal[k][..., None], jump[..., None])
            lam_v = lam_v + jump

    grad_rec.fill_diagonal_(0)
    grad_times = torch.zeros(batch, n_in * slots, dtype=dtype, device=device)
    if events.times.shape[1]:
        grad_times.scatter_(1, events.position, grad_events[:, : events.times.shape[1]])
    return grad_times.reshape(input_shape), grad_weight_t.t().contiguous(), grad_rec, jumps[..., :-1].contiguous()
