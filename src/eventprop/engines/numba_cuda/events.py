"""CUDA engine: a batch's input spike trains as time-ordered event lists, without a host read.

The kernels run on the full sorted width (each sample's events first, ``+inf`` after
them, with a per-sample count), so nothing needs the length of the longest list
before they start. The data contract's value checks (:class:`~eventprop.model.spikes.ValueChecks`)
and that length are read back after the kernels, together with the output's size: one
host synchronisation per layer call. The event lists are then cut to the longest.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.spikes import EventList

__all__ = ["device_events", "cut_events", "longest"]

F64 = torch.float64


def device_events(times: Tensor) -> tuple[EventList, Tensor]:
    """The merged, stably sorted events of ``(batch, neurons, max_spikes)`` spike trains
    (as :func:`eventprop.model.spikes.sorted_events`) at full width, and the number of
    finite events of each sample.

    Returns:
        ``(events, count)``: float64 ``events.times`` ``(batch, max(neurons * max_spikes, 1))``
        (one ``+inf`` column when there are no slots, so that kernels can index it),
        ``count`` ``(batch,)`` int64. Values are not checked here (NaN sorts last and is
        not counted): read :class:`~eventprop.model.spikes.ValueChecks` before using results.
    """
    batch, neurons, slots = times.shape
    flat = times.reshape(batch, neurons * slots).to(F64)
    if flat.shape[1] == 0:
        flat = torch.full((batch, 1), torch.inf, dtype=F64, device=times.device)
    ordered, position = torch.sort(flat, dim=1, stable=True)
    source = torch.div(position, slots, rounding_mode="floor") if slots else torch.zeros_like(position)
    return EventList(times=ordered, source=source, position=position), torch.isfinite(ordered).sum(dim=1)


def cut_events(events: EventList, n_events: int) -> EventList:
    """``events`` cut to the first ``n_events`` columns (copies: the full width is freed)."""
    return EventList(*(x[:, :n_events].contiguous() for x in (events.times, events.source, events.position)))


def longest(count: Tensor) -> Tensor:
    """The largest entry of ``count`` (events or spikes), as a 0-d device tensor (0 when empty)."""
    return count.max() if count.numel() else count.new_zeros(())
