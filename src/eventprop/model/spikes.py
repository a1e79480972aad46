"""Spike-train tensors: the public data contract, its validation and event lists.

A batch of spike trains is a floating tensor ``times`` of shape
``(batch, neurons, max_spikes)``: each neuron's spike times ascend along the last
axis and are padded with ``+inf``. ``times[..., 0]`` is the first-spike time
(``inf`` = silent). Engines produce at least one column, so ``times[..., 0]``
always exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..validation import check_finite

__all__ = ["validate_spike_times", "check_spike_layout", "check_spike_values", "ValueChecks", "EventList", "sorted_events"]


def validate_spike_times(times: Tensor, n_neurons: int | None = None, name: str = "times") -> None:
    """Raise ``ValueError`` unless ``times`` follows the data contract.

    Checks: a floating ``torch.Tensor`` of rank 3, ``times.shape[1] == n_neurons``
    (when given), no NaN, no negative time, ascending along the last axis.
    """
    check_spike_layout(times, n_neurons, name)
    check_spike_values(times, name)


def check_spike_layout(times: Tensor, n_neurons: int | None = None, name: str = "times") -> None:
    """The cheap half of :func:`validate_spike_times`: type, dtype, rank and neuron count."""
    if not isinstance(times, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(times).__name__}")
    if not times.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {times.dtype}")
    if times.dim() != 3:
        raise ValueError(
            f"{name} must have shape (batch, neurons, max_spikes), got rank {times.dim()} "
            f"shape {tuple(times.shape)}"
        )
    if n_neurons is not None and times.shape[1] != n_neurons:
        raise ValueError(f"{name} has {times.shape[1]} neurons along dim 1, expected {n_neurons}")


def check_spike_values(times: Tensor, name: str = "times") -> None:
    """The value half of :func:`validate_spike_times`: no NaN, no negative time, ascending.

    (The compiled engine makes the same checks inside its event-sorting kernel.)
    """
    if bool(torch.isnan(times).any()):
        raise ValueError(f"{name} contains NaN")
    if bool((times < 0).any()):
        raise ValueError(f"{name} contains negative spike times (min {times.min().item()})")
    if times.shape[-1] > 1 and bool((times[..., 1:] < times[..., :-1]).any()):
        raise ValueError(f"{name} must ascend along the last axis (pad with +inf, not before finite times)")


class ValueChecks:
    """The contract's value checks of spike trains and weights, computed on their device.

    For an engine on a GPU (:attr:`eventprop.engines.Engine.checks_values`): the checks
    become flags on the device, read back in the one host synchronisation that sizes the
    engine's output (:meth:`read_with`), instead of a synchronisation each. A failing check
    raises the ``ValueError`` of :func:`check_spike_values` or
    :func:`eventprop.validation.check_finite`, as the caller's checks would.

    Args:
        trains: spike-train tensors (data contract) by argument name (``None``: absent).
        weights: tensors that must be finite, by argument name (``None``: absent).

    Examples:
        >>> checks = ValueChecks({"times": torch.tensor([[[1.0, 2.0]]])}, {"weight": torch.ones(3, 1)})
        >>> checks.read_with(torch.tensor(7))
        [7]
    """

    def __init__(self, trains: Mapping[str, Tensor | None], weights: Mapping[str, Tensor | None]) -> None:
        self.trains = {name: x for name, x in trains.items() if x is not None}
        self.weights = {name: x for name, x in weights.items() if x is not None}

    def flags(self) -> list[Tensor]:
        """0-d boolean device tensors, true where a check fails (no host synchronisation)."""
        found: list[Tensor] = []
        for times in self.trains.values():
            found += [torch.isnan(times).any(), (times < 0).any()]
            if times.shape[-1] > 1:
                found.append((times[..., 1:] < times[..., :-1]).any())
        found += [~torch.isfinite(w).all() for w in self.weights.values()]
        return found

    def read_with(self, *sizes: Tensor) -> list[int]:
        """``sizes`` (0-d integer device tensors) as ints, read together with the flags.

        Raises:
            ValueError: a check failed (the message of the caller's own check).
        """
        flags = self.flags()
        parts = [f.reshape(1).long() for f in flags] + [s.reshape(1).long() for s in sizes]
        read = torch.cat(parts).tolist() if parts else []  # the one host synchronisation
        self.raise_if(read[: len(flags)])
        return read[len(flags) :]

    def raise_if(self, failed: Sequence[int]) -> None:
        """Raise the failing check's ``ValueError`` if any entry of ``failed`` (the flags, read) is set."""
        if any(failed):
            self.check()

    def check(self) -> None:
        """The same checks on the host, one at a time (``ValueError`` at the first that fails)."""
        for name, times in self.trains.items():
            check_spike_values(times, name)
        for name, w in self.weights.items():
            check_finite(name, w)


@dataclass
class EventList:
    """Input spikes of a batch merged into one time-ordered list per sample.

    Attributes:
        times: ``(batch, events)`` ascending times, ``+inf`` padding at the end.
        source: ``(batch, events)`` long, the input neuron of each event.
        position: ``(batch, events)`` long, the event's index in the flattened
            ``(neurons * max_spikes)`` input, to send gradients back.
    """

    times: Tensor
    source: Tensor
    position: Tensor

    @property
    def finite(self) -> Tensor:
        """``(batch, events)`` mask of real (non-padding) events."""
        return torch.isfinite(self.times)


def sorted_events(times: Tensor) -> EventList:
    """Merge ``(batch, neurons, max_spikes)`` spike trains into per-sample event lists.

    The event axis is trimmed to the largest number of finite spikes in the batch.
    """
    batch, neurons, slots = times.shape
    flat = times.reshape(batch, neurons * slots)
    ordered, position = torch.sort(flat, dim=1, stable=True)
    n_events = int(torch.isfinite(ordered).sum(dim=1).max().item()) if flat.numel() else 0
    ordered = ordered[:, :n_events]
    position = position[:, :n_events]
    source = torch.div(position, slots, rounding_mode="floor") if slots else position
    return EventList(times=ordered, source=source, position=position)
