r"""PyTorch engine, voltage trajectories: event assembly and a log-depth prefix scan.

Each neuron ``n`` sees the time-ordered events of its layer: input spikes of neuron
``i`` (current jump ``a = W[n, i]``), for a LIF layer also the layer's own spikes
(neuron ``m != n``: ``a = R[n, m]``; ``m = n``: voltage jump ``b = -theta``, the reset).
The state just after event ``k`` (see :mod:`eventprop.model.trajectory`) is::

    (V_k, I_k) = sum_{j <= k} Phi(e_k - e_j) (b_j, a_j),
    Phi(d) (b, a) = (b exp(-d / tau_mem) + a K(d), a exp(-d / tau_syn)).

``Phi`` is a semigroup, ``Phi(d1) Phi(d2) = Phi(d1 + d2)``, so a Hillis-Steele scan
(``ceil(log2 M)`` steps) computes every state: after step ``s`` entry ``k`` holds the sum
over ``k - 2^s < j <= k``. Every factor is a bounded function of a *difference* of
times (nothing overflows however long the window), memory is ``O(M log M)`` per neuron
and autograd differentiates it exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.neuron import NeuronParams, free_voltage
from ...model.trajectory import VoltageTrajectory

__all__ = ["trajectory", "flow_scan"]


def flow_scan(times: Tensor, jump_i: Tensor, jump_v: Tensor, p: NeuronParams) -> tuple[Tensor, Tensor]:
    """States ``(V_k, I_k)`` just after each event by the prefix scan of the module docstring.

    Args:
        times: ``(..., 1, M)`` ascending event times (finite).
        jump_i, jump_v: ``(..., N, M)`` current and voltage jumps of each event.

    Returns:
        ``(V, I)``, each ``(..., N, M)``; memory ``O(N M)`` per step, ``ceil(log2 M)`` steps.
    """
    v, i = jump_v, jump_i
    n = times.shape[-1]
    shift = 1
    while shift < n:
        d = times[..., shift:] - times[..., :-shift]
        v_prev, i_prev = v[..., :-shift], i[..., :-shift]
        v = torch.cat([v[..., :shift], v[..., shift:] + free_voltage(v_prev, i_prev, d, p)], dim=-1)
        i = torch.cat([i[..., :shift], i[..., shift:] + i_prev * torch.exp(-d / p.tau_syn)], dim=-1)
        shift *= 2
    return v, i


def _build(times: Tensor, jump_i: Tensor, jump_v: Tensor, p: NeuronParams, window: float) -> VoltageTrajectory:
    """Mask events outside ``[0, window)``, prepend the virtual event at 0 and scan.

    ``times`` ``(batch, M)`` ascending (``+inf`` allowed); jumps ``(batch, neurons, M)``.
    """
    valid = times < window
    t = torch.where(valid, times, torch.full_like(times, window))[:, None, :]
    zero = torch.zeros((), dtype=jump_i.dtype, device=jump_i.device)
    jump_i = torch.where(valid[:, None, :], jump_i, zero)
    jump_v = torch.where(valid[:, None, :], jump_v, zero)
    t = torch.cat([torch.zeros_like(t[..., :1]), t], dim=-1)
    jump_i = torch.cat([torch.zeros_like(jump_i[..., :1]), jump_i], dim=-1)
    jump_v = torch.cat([torch.zeros_like(jump_v[..., :1]), jump_v], dim=-1)
    v, i = flow_scan(t, jump_i, jump_v, p)
    return VoltageTrajectory(t, jump_i, jump_v, v, i, p, window)


def trajectory(
    times: Tensor,
    spikes: Tensor | None,
    weight: Tensor,
    recurrent_weight: Tensor | None,
    p: NeuronParams,
    window: float,
) -> VoltageTrajectory:
    """The engine entry point (:meth:`eventprop.engines.base.Engine.trajectory`).

    ``recurrent_weight`` arrives with a zero diagonal; ``spikes`` is ``None`` for a
    non-spiking readout.
    """
    batch, n_in, slots = times.shape
    if spikes is None:
        ordered, position = torch.sort(times.reshape(batch, n_in * slots), dim=1, stable=True)
        source = torch.div(position, slots, rounding_mode="floor")
        jump_i = weight[:, source].permute(1, 0, 2)  # (B, N, M)
        return _build(ordered, jump_i, torch.zeros_like(jump_i), p, window)
    n_out = weight.shape[0]
    like = {"dtype": weight.dtype, "device": weight.device}
    lateral = torch.zeros(n_out, n_out, **like) if recurrent_weight is None else recurrent_weight
    # All events of the layer: inputs (sources 0..n_in-1), then layer spikes (n_in..n_in+n_out-1).
    source_in = torch.arange(n_in, device=times.device).repeat_interleave(slots)
    source_out = n_in + torch.arange(n_out, device=times.device).repeat_interleave(spikes.shape[2])
    flat = torch.cat([times.reshape(batch, -1), spikes.reshape(batch, -1)], dim=1)
    ordered, position = torch.sort(flat, dim=1, stable=True)
    source = torch.cat([source_in, source_out])[position]  # (B, M)
    current = torch.cat([weight, lateral], dim=1)  # (N, n_in + N)
    jump_i = current[:, source].permute(1, 0, 2)
    reset = torch.cat([torch.zeros(n_out, n_in, **like), -p.threshold * torch.eye(n_out, **like)], dim=1)
    jump_v = reset[:, source].permute(1, 0, 2)
    return _build(ordered, jump_i, jump_v, p, window)
