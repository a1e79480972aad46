r"""Dense traces of a LIF layer on a time grid, for inspection and figures only.

Training never uses this module: the engines work at event times only. Here the
exact closed forms are evaluated on a user grid ``t_g`` (``G`` points, any order),
to look inside a layer: membrane potentials, synaptic currents, adjoint variables
and the EventProp gradient as it accumulates backwards in time.

State (paper Table 1) by superposition. Neuron ``j`` receives input events ``e``
(time ``t_e``, input ``src_e``) and, in a recurrent layer, the layer's own spikes
``k`` (time ``t_k``, neuron ``n_k``); with ``K`` the PSP kernel of
:func:`eventprop.model.neuron.psp_kernel`::

    I_j(t) = sum_{e: t_e <= t} W[j, src_e] exp(-(t - t_e)/tau_syn)
           + sum_{k: t_k <= t} R[j, n_k] exp(-(t - t_k)/tau_syn)
    V_j(t) = sum_{e: t_e <= t} W[j, src_e] K(t - t_e)
           + sum_{k: t_k <= t} R[j, n_k] K(t - t_k)
           - theta sum_{k of j: t_k <= t} exp(-(t - t_k)/tau_mem)

(the last sum is the reset by subtraction). ``side="right"`` gives the values just
after everything happening at ``t`` (``<=`` above, the right-continuous trace);
``side="left"`` the values just before (``<``): ``V_j(t_k^-) = theta`` at a spike.

Adjoint (paper Table 2, ``l_V = 0``), given ``g_k = dL/dt_k`` of the output spikes::

    lambda_V_j(t) = sum_{k of j: t_k > t} J_k exp(-(t_k - t)/tau_mem)
    lambda_I_j(t) = sum_{k of j: t_k > t} J_k (tau_mem/tau_syn) K(t_k - t)
    J_k = (theta lambda_V_n(t_k^+) + sum_m R[m, n](lambda_V_m - lambda_I_m)(t_k^+) + g_k)
          / (I_n(t_k^-) - theta),          n = n_k  (R = 0 for feed-forward layers)

(``side="left"`` counts ``t_k >= t``: ``lambda_V(t_k^-) = lambda_V(t_k^+) + J_k``, i.e.
the value just before the spike in forward time, just after the jump in reverse
time). ``lambda_I`` is continuous. The gradient accumulated from ``t = T``
backwards down to ``t`` (paper Figure 1 F-G) for the weight ``W[j, i]`` is::

    G_ji(t) = -tau_syn sum_{spikes e of input i: t_e >= t} lambda_I_j(t_e)

and ``G_ji(0)`` summed over the batch is ``dL/dW[j, i]`` (paper eq. 2). For a
recurrent weight ``R[m, n]`` the spikes of neuron ``n`` take the place of input ``i``.

Shapes: input ``times`` ``(B, in, S)``, output spikes ``(B, N, K)``, traces
``(B, N, G)``. Memory is ``O(B * G * events)`` (evaluated in grid chunks), so this is
meant for a few samples and grids of a few thousand points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..layers import LIFLayer
from ..layers.functional import without_self_connections
from ..model.neuron import NeuronParams, adjoint_jump, psp_kernel
from ..model.spikes import sorted_events, validate_spike_times

__all__ = ["AdjointTraces", "voltage_traces", "adjoint_traces", "output_jumps", "spike_times_finite"]

Side = Literal["right", "left"]
_CHUNK_ELEMENTS = 1 << 22  # grid chunk x events per block (about 32 MiB in float64)


@dataclass
class AdjointTraces:
    """Adjoint variables of a layer on a grid, and accumulated weight gradients.

    Attributes:
        lambda_v: ``(B, N, G)`` ``lambda_V`` on the grid (units: loss / (time x voltage)).
        lambda_i: ``(B, N, G)`` ``lambda_I`` on the grid (same units; continuous in time).
        jumps: ``(B, N, K)`` the jump ``J_k`` of ``lambda_V`` at each output spike
            (0 at padding).
        out_times: ``(B, N, K)`` the output spikes the traces belong to.
        weight_grad: ``(B, P, G)`` accumulated gradient ``G_ji(t)`` of the chosen
            input weights ``weights[p] = (j, i)``; per sample (sum over ``B`` for the
            batch gradient). ``P = 0`` when no weights were chosen.
        recurrent_grad: ``(B, Q, G)`` the same for recurrent weights ``R[m, n]``
            chosen by ``recurrent_weights[q] = (m, n)``.
    """

    lambda_v: Tensor
    lambda_i: Tensor
    jumps: Tensor
    out_times: Tensor
    weight_grad: Tensor
    recurrent_grad: Tensor


# --------------------------------------------------------------------------- helpers


def _as_grid(grid: Tensor | Sequence[float], like: Tensor) -> Tensor:
    g = torch.as_tensor(grid, dtype=like.dtype, device=like.device)
    if g.dim() != 1:
        raise ValueError(f"grid must be 1-d, got shape {tuple(g.shape)}")
    if not bool(torch.isfinite(g).all()):
        raise ValueError("grid must be finite")
    return g


def _check_side(side: str) -> None:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")


def _output_times(layer: LIFLayer, times: Tensor, out_times: Tensor | None) -> Tensor:
    if out_times is None:
        with torch.no_grad():
            return layer(times).detach()
    out = out_times.detach()
    validate_spike_times(out, layer.out_features, name="out_times")
    if out.shape[0] != times.shape[0]:
        raise ValueError(f"out_times has batch {out.shape[0]}, times has batch {times.shape[0]}")
    return out


def _recurrent_matrix(layer: LIFLayer) -> Tensor | None:
    if layer.recurrent_weight is None:
        return None
    return without_self_connections(layer.recurrent_weight.detach())


def _synaptic_events(layer: LIFLayer, times: Tensor, out_times: Tensor) -> tuple[Tensor, Tensor]:
    """Every event that jumps the currents: ``(t (B, E), w (B, E, N))``, 0 weight at padding.

    Input spikes jump ``I_j`` by ``W[j, src]``; in a recurrent layer the layer's own
    spikes of neuron ``n`` jump ``I_m`` by ``R[m, n]``. Layers with a mask or delays are
    refused (``ValueError``): these traces do not model them yet.
    """
    for what, present in (("a mask", layer.mask is not None), (f"delays={layer.delays!r}", layer.delays is not None)):
        if present:
            raise ValueError(f"the voltage and adjoint traces do not support LIF layers with {what} yet")
    w = layer.weight.detach()
    events = sorted_events(times)
    finite = events.finite
    zero = torch.zeros((), dtype=times.dtype, device=times.device)
    ev_t = events.times
    ev_w = torch.where(finite[..., None], w.t()[events.source], zero)
    r = _recurrent_matrix(layer)
    if r is not None:
        batch, n, k = out_times.shape
        sp_t = out_times.reshape(batch, n * k)
        src = torch.arange(n, device=times.device).repeat_interleave(k)
        sp_w = torch.where(torch.isfinite(sp_t)[..., None], r.t()[src][None], zero)
        ev_t = torch.cat([ev_t, sp_t], dim=1)
        ev_w = torch.cat([ev_w, sp_w], dim=1)
    return ev_t, ev_w


def _before(lag: Tensor, finite: Tensor, side: Side) -> Tensor:
    """Mask of events that have happened at the query time (``lag = t - t_e``)."""
    return finite & ((lag >= 0) if side == "right" else (lag > 0))


def _state_at(
    ev_t: Tensor, ev_w: Tensor, out_times: Tensor, query: Tensor, p: NeuronParams, side: Side
) -> tuple[Tensor, Tensor]:
    """``(V, I)`` at per-sample query times ``query (B, Q)`` -> two ``(B, N, Q)``."""
    zero = torch.zeros((), dtype=ev_t.dtype, device=ev_t.device)
    finite = torch.isfinite(ev_t)
    n_events = ev_t.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_events))
    v_parts, i_parts = [], []
    for start in range(0, query.shape[1], chunk):
        q = query[:, start : start + chunk]
        lag = q[:, :, None] - torch.where(finite, ev_t, zero)[:, None, :]  # (B, Qc, E)
        live = _before(lag, finite[:, None, :], side)
        lag = torch.where(live, lag, zero)
        v_parts.append((torch.where(live, psp_kernel(lag, p), zero) @ ev_w).transpose(1, 2))
        i_parts.append((torch.where(live, torch.exp(-lag / p.tau_syn), zero) @ ev_w).transpose(1, 2))
    voltage = torch.cat(v_parts, dim=2)
    current = torch.cat(i_parts, dim=2)
    # Reset by subtraction at the neuron's own spikes.
    own = torch.isfinite(out_times)[:, :, None, :]  # (B, N, 1, K)
    lag = query[:, None, :, None] - torch.where(torch.isfinite(out_times), out_times, zero)[:, :, None, :]
    live = _before(lag, own, side)
    reset = torch.where(live, torch.exp(-torch.where(live, lag, zero) / p.tau_mem), zero).sum(-1)
    return voltage - p.threshold * reset, current


def _adjoint_at(
    query: Tensor, out_times: Tensor, jumps: Tensor, p: NeuronParams, side: Side
) -> tuple[Tensor, Tensor]:
    """``(lambda_V, lambda_I)`` at per-neuron query times ``query (B, N, Q)``.

    Sums over the neuron's spikes with ``t_k > t`` (``side="right"``) or ``>=``.
    """
    zero = torch.zeros((), dtype=query.dtype, device=query.device)
    spiked = torch.isfinite(out_times)[:, :, None, :]  # (B, N, 1, K)
    lag = torch.where(spiked, out_times[:, :, None, :], zero) - query[..., None]  # (B, N, Q, K)
    live = spiked & ((lag > 0) if side == "right" else (lag >= 0))
    lag = torch.where(live, lag, zero)
    j = torch.where(live, jumps[:, :, None, :], zero)
    lam_v = (j * torch.exp(-lag / p.tau_mem)).sum(-1)
    lam_i = (j * (p.tau_mem / p.tau_syn) * psp_kernel(lag, p)).sum(-1)
    return lam_v, lam_i


def _current_before_spikes(ev_t: Tensor, ev_w: Tensor, out_times: Tensor, p: NeuronParams) -> Tensor:
    """``I_n(t_k^-)`` of every output spike, ``(B, N, K)`` (1 at padding, unused)."""
    zero = torch.zeros((), dtype=ev_t.dtype, device=ev_t.device)
    finite = torch.isfinite(ev_t)[:, None, None, :]  # (B, 1, 1, E)
    spiked = torch.isfinite(out_times)
    lag = torch.where(spiked, out_times, zero)[..., None] - torch.where(finite, ev_t[:, None, None, :], zero)
    live = finite & (lag > 0)
    decay = torch.where(live, torch.exp(-torch.where(live, lag, zero) / p.tau_syn), zero)  # (B, N, K, E)
    current = torch.einsum("bnke,ben->bnk", decay, ev_w)
    return torch.where(spiked, current, torch.ones_like(current))


def output_jumps(
    out_times: Tensor,
    grad_out: Tensor,
    current: Tensor,
    p: NeuronParams,
    recurrent_weight: Tensor | None = None,
) -> Tensor:
    r"""Jumps ``J_k`` of ``lambda_V`` at the output spikes, ``(B, N, K)``.

    ``J_k = (theta lambda_V_n(t_k^+) + sum_m R[m, n](lambda_V_m - lambda_I_m)(t_k^+) + g_k)
    / (I_n(t_k^-) - theta)``, computed in reverse time over the spikes. The
    ``lambda`` values at ``t_k^+`` are direct kernel sums over the later jumps
    (coincident spikes see each other's values before their jumps, the paper's rule).

    Args:
        out_times: ``(B, N, K)`` output spikes; grad_out: ``dL/d out_times`` (same
            shape, ignored at padding); current: ``I_n(t_k^-)`` (same shape).
        recurrent_weight: ``(N, N)`` with zero diagonal, or ``None`` (feed-forward).
    """
    spiked = torch.isfinite(out_times)
    zero = torch.zeros((), dtype=out_times.dtype, device=out_times.device)
    g = torch.where(spiked, grad_out, zero)
    current = torch.where(spiked, current, torch.full_like(current, p.threshold + 1))
    jumps = torch.zeros_like(out_times)
    if recurrent_weight is None:
        # Neurons are independent: walk each neuron's own spikes backwards, all at once.
        for k in reversed(range(out_times.shape[-1])):
            at = torch.where(spiked[..., k : k + 1], out_times[..., k : k + 1], zero)  # (B, N, 1)
            lv_plus = _adjoint_at(at, out_times, jumps, p, "right")[0][..., 0]  # lambda_V(t_k^+)
            value = adjoint_jump(lv_plus, 0.0, g[..., k], current[..., k], p)
            jumps[..., k] = torch.where(spiked[..., k], value, zero)
        return jumps
    n = out_times.shape[1]
    for b in range(out_times.shape[0]):
        distinct = torch.unique(out_times[b][spiked[b]])
        for t in reversed(distinct.tolist()):
            query = torch.full((1, n, 1), t, dtype=out_times.dtype, device=out_times.device)
            lv, li = _adjoint_at(query, out_times[b : b + 1], jumps[b : b + 1], p, "right")
            lv, li = lv[0, :, 0], li[0, :, 0]
            sent = (lv - li) @ recurrent_weight  # sum_m R[m, n] (lambda_V_m - lambda_I_m)
            here = spiked[b] & (out_times[b] == t)
            value = adjoint_jump(lv[:, None], sent[:, None], g[b], current[b], p)
            jumps[b] = torch.where(here, value, jumps[b])
    return jumps


def _accumulate(
    src_t: Tensor, src_id: Tensor, contrib: Tensor, pairs: Sequence[tuple[int, int]], grid: Tensor
) -> Tensor:
    """``G_p(t_g) = sum_{e: src_e = i_p, t_e >= t_g} contrib[j_p, e]`` -> ``(B, P, G)``.

    Args:
        src_t, src_id: ``(B, E)`` event times (``inf`` padding) and sources.
        contrib: ``(B, N, E)`` each event's contribution to row ``j``'s gradient.
    """
    batch = src_t.shape[0]
    out = torch.zeros(batch, len(pairs), grid.shape[0], dtype=contrib.dtype, device=contrib.device)
    if not pairs or src_t.shape[1] == 0:
        return out
    rows = torch.tensor([j for j, _ in pairs], device=contrib.device)
    cols = torch.tensor([i for _, i in pairs], device=contrib.device)
    finite = torch.isfinite(src_t)
    chosen = (src_id[:, None, :] == cols[None, :, None]) & finite[:, None, :]  # (B, P, E)
    sel = torch.where(chosen, contrib[:, rows, :], torch.zeros((), dtype=contrib.dtype, device=contrib.device))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, src_t.shape[1]))
    for start in range(0, grid.shape[0], chunk):
        g = grid[start : start + chunk]
        later = (src_t[:, :, None] >= g[None, None, :]) & finite[:, :, None]  # (B, E, Gc)
        out[:, :, start : start + chunk] = sel @ later.to(contrib.dtype)
    return out


# --------------------------------------------------------------------------- public API


def voltage_traces(
    layer: LIFLayer,
    times: Tensor,
    grid: Tensor | Sequence[float],
    *,
    out_times: Tensor | None = None,
    side: Side = "right",
) -> tuple[Tensor, Tensor]:
    r"""Membrane potential ``V(t)`` and synaptic current ``I(t)`` of every neuron of ``layer``.

    Exact closed forms (module docstring), consistent with the layer's output spikes:
    ``V`` rises to ``theta`` at each spike ``t_k`` and drops by exactly ``theta``
    there; ``I`` jumps by ``W[j, i]`` at each spike of input ``i``.

    Args:
        layer: a feed-forward or recurrent :class:`~eventprop.LIFLayer`.
        times: ``(B, in_features, S)`` input spike times (data contract).
        grid: ``(G,)`` query times (same unit as the spike times).
        out_times: ``(B, N, K)`` the layer's output for ``times``; computed with
            ``layer(times)`` when omitted.
        side: ``"right"``: value just after the events at ``t`` (right-continuous);
            ``"left"``: just before them (``V(t_k^-) = theta``).

    Returns:
        ``(V, I)``, each ``(B, N, G)`` (voltage unit ``theta``, current in the same unit).
    """
    _check_side(side)
    validate_spike_times(times, layer.in_features)
    g = _as_grid(grid, times)
    out = _output_times(layer, times, out_times)
    ev_t, ev_w = _synaptic_events(layer, times, out)
    query = g[None, :].expand(times.shape[0], -1)
    return _state_at(ev_t, ev_w, out, query, layer.params, side)


def adjoint_traces(
    layer: LIFLayer,
    times: Tensor,
    grid: Tensor | Sequence[float],
    grad_out: Tensor,
    *,
    out_times: Tensor | None = None,
    weights: Sequence[tuple[int, int]] = (),
    recurrent_weights: Sequence[tuple[int, int]] = (),
    side: Side = "right",
) -> AdjointTraces:
    r"""Adjoint variables ``lambda_V(t)``, ``lambda_I(t)`` and accumulated weight gradients.

    The adjoint of paper Table 2 (``l_V = 0``) driven by the gradient of the loss with
    respect to the layer's output spike times; obtain it with
    ``torch.autograd.grad(loss, out, retain_graph=True)`` or ``out.register_hook``.

    Args:
        layer: a feed-forward or recurrent :class:`~eventprop.LIFLayer`.
        times: ``(B, in_features, S)`` input spike times.
        grid: ``(G,)`` query times.
        grad_out: ``(B, N, K)`` ``dL/d out_times`` (entries at padding ignored).
        out_times: the layer's output for ``times`` (computed when omitted; must have
            the shape of ``grad_out``).
        weights: input weights ``(j, i)`` whose gradient ``G_ji(t)`` to accumulate.
        recurrent_weights: recurrent weights ``(m, n)`` to accumulate (recurrent
            layers only).
        side: ``"right"`` (``lambda`` just after the spikes at ``t`` in forward time)
            or ``"left"`` (just before: includes the jump ``J_k`` at ``t = t_k``).

    Returns:
        :class:`AdjointTraces` (``lambda_*`` of shape ``(B, N, G)``).
    """
    _check_side(side)
    validate_spike_times(times, layer.in_features)
    p = layer.params
    g = _as_grid(grid, times)
    out = _output_times(layer, times, out_times)
    if tuple(grad_out.shape) != tuple(out.shape):
        raise ValueError(f"grad_out has shape {tuple(grad_out.shape)}, out_times has {tuple(out.shape)}")
    if recurrent_weights and layer.recurrent_weight is None:
        raise ValueError("recurrent_weights given but the layer is feed-forward")
    grad_out = grad_out.detach().to(times.dtype)
    ev_t, ev_w = _synaptic_events(layer, times, out)
    current = _current_before_spikes(ev_t, ev_w, out, p)
    jumps = output_jumps(out, grad_out, current, p, _recurrent_matrix(layer))

    batch, n = out.shape[:2]
    query = g[None, None, :].expand(batch, n, -1)
    lam_v, lam_i = _adjoint_at(query, out, jumps, p, side)

    events = sorted_events(times)
    zero = torch.zeros((), dtype=times.dtype, device=times.device)
    ev_query = torch.where(events.finite, events.times, zero)[:, None, :].expand(batch, n, -1)
    _, lam_i_ev = _adjoint_at(ev_query, out, jumps, p, "right")  # lambda_I is continuous
    weight_grad = _accumulate(events.times, events.source, -p.tau_syn * lam_i_ev, list(weights), g)

    spikes = out.reshape(batch, -1)
    spike_src = torch.arange(n, device=out.device).repeat_interleave(out.shape[2])[None].expand(batch, -1)
    sp_query = torch.where(torch.isfinite(spikes), spikes, zero)[:, None, :].expand(batch, n, -1)
    if recurrent_weights:
        _, lam_i_sp = _adjoint_at(sp_query, out, jumps, p, "right")
        recurrent_grad = _accumulate(spikes, spike_src, -p.tau_syn * lam_i_sp, list(recurrent_weights), g)
    else:
        recurrent_grad = torch.zeros(batch, 0, g.shape[0], dtype=times.dtype, device=times.device)
    return AdjointTraces(lam_v, lam_i, jumps, out, weight_grad, recurrent_grad)


def spike_times_finite(out_times: Tensor, sample: int = 0, neuron: int = 0) -> list[float]:
    """The finite spike times of one neuron of one sample, as a list (a small convenience)."""
    row = out_times[sample, neuron]
    return [float(t) for t in row[torch.isfinite(row)].tolist()]

