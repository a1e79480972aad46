r"""PyTorch engine, voltage trajectories: a log-depth prefix scan, queries as tensor expressions.

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
and autograd differentiates it exactly. The queries (:meth:`ScanTrajectory.max`,
:meth:`ScanTrajectory.values`) are tensor expressions of these states: memory
``O(batch x neurons x events x log events)`` in the backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...model.neuron import NeuronParams, free_voltage, voltage_extremum
from ...model.trajectory import VoltageTrajectory

__all__ = ["ScanTrajectory", "flow_scan"]


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


@dataclass(frozen=True, eq=False)
class ScanTrajectory(VoltageTrajectory):
    """A :class:`~eventprop.model.trajectory.VoltageTrajectory` with every state materialised.

    After construction it also holds, with a virtual event at ``t = 0`` first (index 0,
    no jumps, so segment ``k`` of the arrays is ``[starts[k], starts[k + 1]]``, the last
    one ending at ``window``): ``starts`` ``(batch, 1, M + 1)`` and the states
    ``v``, ``i`` ``(batch, neurons, M + 1)`` just after each event.
    """

    starts: Tensor = field(init=False)
    v: Tensor = field(init=False)
    i: Tensor = field(init=False)

    def __post_init__(self) -> None:
        batch, neurons = self.shape
        current = torch.cat([self.current, torch.zeros_like(self.current[:, :1])], dim=1)  # source -1: no jump
        jump_i = current[:, self.source].permute(1, 0, 2)  # (B, N, M)
        own = self.n_inputs + torch.arange(neurons, device=self.source.device)
        jump_v = -self.params.threshold * (self.source[:, None, :] == own[None, :, None]).to(jump_i.dtype)
        virtual = jump_i.new_zeros(batch, neurons, 1)
        starts = torch.cat([self.times.new_zeros(batch, 1), self.times], dim=1)[:, None, :]
        v, i = flow_scan(starts, torch.cat([virtual, jump_i], dim=-1), torch.cat([virtual, jump_v], dim=-1), self.params)
        object.__setattr__(self, "starts", starts)
        object.__setattr__(self, "v", v)
        object.__setattr__(self, "i", i)

    def max(self) -> tuple[Tensor, Tensor]:
        # The argmax is chosen without gradient; the value is then re-evaluated with
        # gradient: at a segment end the next event's own time tensor is the boundary.
        p = self.params
        start = self.starts
        ends = torch.cat([start[..., 1:], torch.full_like(start[..., :1], self.window)], dim=-1)
        length = ends - start  # (B, 1, S)
        with torch.no_grad():
            s_ext = voltage_extremum(self.v, self.i, p)
            interior = (self.i > self.v) & (s_ext < length)
            s_int = torch.where(interior, s_ext, torch.zeros_like(s_ext))
            length_b = length.expand_as(self.v)
            cand = torch.stack(
                [
                    self.v,
                    free_voltage(self.v, self.i, length_b, p),
                    torch.where(interior, free_voltage(self.v, self.i, s_int, p), torch.full_like(s_ext, -math.inf)),
                ],
                dim=-1,
            )  # (B, N, S, 3): start, end, interior
            flat = cand.flatten(2).argmax(dim=2)  # (B, N): the first largest
            seg, kind = flat // 3, flat % 3
            t_best = torch.gather(start.expand_as(self.v), 2, seg[..., None]).squeeze(-1) + torch.where(
                kind == 0,
                torch.zeros_like(s_int[..., 0]),
                torch.where(kind == 1, length_b.gather(2, seg[..., None]).squeeze(-1), s_int.gather(2, seg[..., None]).squeeze(-1)),
            )
        pick = seg[..., None]
        v0, i0 = self.v.gather(2, pick).squeeze(-1), self.i.gather(2, pick).squeeze(-1)
        seg_start = start.expand_as(self.v).gather(2, pick).squeeze(-1)
        seg_end = ends.expand_as(self.v).gather(2, pick).squeeze(-1)
        s = torch.where(kind == 0, torch.zeros_like(v0), torch.where(kind == 1, seg_end, t_best) - seg_start)
        return free_voltage(v0, i0, s, p), t_best

    def _values(self, t: Tensor, governing: Tensor) -> Tensor:
        idx = governing + 1  # the virtual event first
        neurons = self.v.shape[1]
        gather = idx[:, None, :].expand(-1, neurons, -1)
        origin = self.starts[:, 0].gather(1, idx)[:, None, :]
        return free_voltage(self.v.gather(2, gather), self.i.gather(2, gather), t[:, None, :] - origin, self.params)
