"""CUDA engine: a batch's input spike trains as time-ordered event lists, validated on the device.

The data contract's value checks (no NaN, no negative time, ascending trains: the
``ValueError`` of :func:`eventprop.model.spikes.check_spike_values`) and the length of the
longest event list are computed on the device and read back together: one host
synchronisation, the one that sizes the event axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.spikes import EventList, check_spike_values

__all__ = ["checked_events"]


def checked_events(times: Tensor) -> EventList:
    """The merged, stably sorted events of ``(batch, neurons, max_spikes)`` spike trains
    (as :func:`eventprop.model.spikes.sorted_events`), after the contract's value checks.

    Raises:
        ValueError: ``times`` holds NaN, a negative time or a train that does not ascend
            (the messages of :func:`~eventprop.model.spikes.check_spike_values`).
    """
    batch, neurons, slots = times.shape
    flat = times.reshape(batch, neurons * slots)
    ordered, position = torch.sort(flat, dim=1, stable=True)
    flags = [torch.isnan(times).any(), (times < 0).any()]
    if slots > 1:
        flags.append((times[..., 1:] < times[..., :-1]).any())
    longest = torch.isfinite(ordered).sum(dim=1).max() if flat.numel() else torch.zeros((), dtype=torch.long, device=times.device)
    read = torch.stack([*(f.long() for f in flags), longest]).tolist()  # the one host read
    if any(read[:-1]):
        check_spike_values(times)  # raises the contract's message
    n_events = int(read[-1])
    position = position[:, :n_events]
    source = torch.div(position, slots, rounding_mode="floor") if slots else position
    return EventList(times=ordered[:, :n_events], source=source, position=position)
