r"""Event data into the data contract: event arrays (as ``tonic`` gives them) to spike-time tensors.

An event array is a numpy structured array with a time field ``t`` (microseconds, as
in ``tonic``) and coordinate fields: ``x`` (the channel of audio data such as SHD/SSC,
or an image column), optionally ``y`` (an image row) and ``p`` (polarity). A sensor
of ``sensor_size = (W, H, P)`` (tonic's order: x extent, y extent, polarities; SHD is
``(700, 1, 1)``, N-MNIST ``(34, 34, 2)``) has ``W * H * P`` channels, numbered
channel-major as ``torch.flatten`` numbers a ``(P, H, W)`` array::

    channel = (p * H + y) * W + x

(the layout :class:`eventprop.LIFConv2d`-style layers and ``nn.Flatten`` of ``(C, H, W)``
expect, with the polarities as channels). Fields a sensor lacks count as 0 (SHD's
events have no ``y``; tonic gives them ``p = 1`` on a one-polarity sensor, which is
folded to 0).

Times: an event at ``t`` microseconds becomes a spike at
``(t - t_start) * 1e-3 * time_scale`` ms; events before ``t_start`` or at or after
``t_stop`` (when given) are left out: that is the documented crop, not a loss. Each
channel's spikes are sorted ascending (ties kept: coincident spikes are allowed) and
padded with ``+inf`` to the longest channel. Coordinates outside the sensor and
non-finite or negative shifted times raise ``ValueError``.

:func:`collate` batches ``(times, label)`` pairs for ``torch.utils.data.DataLoader``,
padding with ``+inf``. :class:`ToSpikeTimes` is the conversion as a tonic-style
transform object (picklable, so it works in ``DataLoader`` workers).
:class:`ChannelShift` and :class:`ClassBlend` are the augmentations of the published
EventProp SHD work (Nowotny, Turner & Knight 2025: a random shift of all channels; a
blend of two samples of one class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..validation import non_negative, non_negative_int, positive

__all__ = ["channel_count", "event_channels", "events_to_spike_times", "ToSpikeTimes", "collate", "ChannelShift", "ClassBlend"]


def _sensor(sensor_size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(int(s) for s in sensor_size)
    if len(size) not in (1, 2, 3) or any(s < 1 for s in size):
        raise ValueError(f"sensor_size must be (W,), (W, H) or (W, H, P) of positive ints, got {tuple(sensor_size)}")
    return (size + (1, 1))[:3]  # type: ignore[return-value]


def channel_count(sensor_size: Sequence[int]) -> int:
    """``W * H * P``: the number of input channels of a sensor."""
    w, h, p = _sensor(sensor_size)
    return w * h * p


def _field(events: np.ndarray, name: str) -> np.ndarray | None:
    return events[name].astype(np.int64) if name in (events.dtype.names or ()) else None


def event_channels(events: np.ndarray, sensor_size: Sequence[int]) -> np.ndarray:
    """The channel of every event, ``(p * H + y) * W + x`` (module docstring), as int64.

    Raises:
        ValueError: ``events`` is not a structured array with ``t`` and ``x``, or a
            coordinate lies outside ``sensor_size``.
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None or not {"t", "x"} <= set(events.dtype.names):
        raise ValueError("events must be a numpy structured array with fields 't' (microseconds) and 'x' (and optionally 'y', 'p')")
    w, h, n_pol = _sensor(sensor_size)
    channel = np.zeros(events.shape[0], dtype=np.int64)
    for name, extent in (("p", n_pol), ("y", h), ("x", w)):
        value = _field(events, name)
        if value is None:
            value = np.zeros_like(channel)
        elif name == "p" and n_pol == 1:
            value = np.zeros_like(value)  # one polarity (tonic's SHD gives p = 1)
        if value.size and (value.min() < 0 or value.max() >= extent):
            raise ValueError(f"events: field {name!r} must lie in 0..{extent - 1} for sensor_size {(w, h, n_pol)}, got {value.min()}..{value.max()}")
        channel = channel * extent + value
    return channel


def events_to_spike_times(
    events: np.ndarray,
    sensor_size: Sequence[int],
    *,
    t_start: float = 0.0,
    t_stop: float | None = None,
    time_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Spike times ``(channels, max_spikes)`` in ms of one event array (module docstring).

    Args:
        events: structured array with ``t`` (microseconds), ``x`` and optionally ``y``, ``p``.
        sensor_size: ``(W, H, P)`` as in tonic (shorter tuples pad with 1).
        t_start, t_stop: keep events with ``t_start <= t < t_stop`` (microseconds; ``t_stop``
            ``None``: no end); times are measured from ``t_start``.
        time_scale: multiplies the times (e.g. 0.5 to compress a 1 s trial into 500 ms).
        dtype: floating dtype of the result.

    Shape:
        - output: ``(W * H * P, max_spikes)``, ascending along the last axis, ``+inf``-padded
          (``max_spikes >= 1``).

    Examples:
        >>> ev = np.array([(1500, 2, 0), (500, 2, 0), (700, 0, 0)], dtype=[("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
        >>> events_to_spike_times(ev, (3, 1, 1))
        tensor([[0.7000,    inf],
                [   inf,    inf],
                [0.5000, 1.5000]])
    """
    positive("time_scale", time_scale)
    non_negative("t_start", t_start)
    if t_stop is not None and not t_stop > t_start:
        raise ValueError(f"t_stop must exceed t_start ({t_start}), got {t_stop}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype}")
    channel = event_channels(events, sensor_size)
    t = events["t"].astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError("events: field 't' holds non-finite times")
    keep = (t >= t_start) & (True if t_stop is None else t < t_stop)
    channel, t = channel[keep], (t[keep] - t_start) * (1e-3 * time_scale)
    n_channels = channel_count(sensor_size)
    order = np.lexsort((t, channel))  # by channel, then time (stable: ties keep event order)
    channel, t = channel[order], t[order]
    counts = np.bincount(channel, minlength=n_channels)
    width = max(int(counts.max()) if counts.size else 0, 1)
    out = np.full((n_channels, width), np.inf)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out[channel, np.arange(channel.size) - starts[channel]] = t
    return torch.from_numpy(out).to(dtype)


class ToSpikeTimes:
    """:func:`events_to_spike_times` with fixed arguments, as a transform (``tonic`` datasets'
    ``transform=``, or any callable pipeline); picklable for ``DataLoader`` workers.

    Examples:
        >>> to_times = ToSpikeTimes((700, 1, 1), t_stop=1_000_000)  # SHD: 700 channels, first second
    """

    def __init__(
        self,
        sensor_size: Sequence[int],
        *,
        t_start: float = 0.0,
        t_stop: float | None = None,
        time_scale: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.sensor_size = _sensor(sensor_size)
        self.kwargs: dict[str, Any] = {"t_start": t_start, "t_stop": t_stop, "time_scale": time_scale, "dtype": dtype}
        events_to_spike_times(np.zeros(0, dtype=[("t", "<i8"), ("x", "<i8")]), self.sensor_size, **self.kwargs)  # checks

    def __call__(self, events: np.ndarray) -> Tensor:
        return events_to_spike_times(events, self.sensor_size, **self.kwargs)

    def __repr__(self) -> str:
        return f"ToSpikeTimes(sensor_size={self.sensor_size}, " + ", ".join(f"{k}={v}" for k, v in self.kwargs.items()) + ")"


def collate(batch: Sequence[tuple[Tensor, Any]]) -> tuple[Tensor, Tensor]:
    """``DataLoader`` ``collate_fn``: ``(times (channels, k_i), label)`` pairs to
    ``(times (batch, channels, max_i k_i), labels (batch,))``, padded with ``+inf``.

    Raises:
        ValueError: the samples differ in channel count or dtype, or the batch is empty.
    """
    if not batch:
        raise ValueError("collate: the batch is empty")
    times = [torch.as_tensor(sample[0]) for sample in batch]
    channels, dtypes = {t.shape[0] for t in times}, {t.dtype for t in times}
    if any(t.dim() != 2 for t in times) or len(channels) != 1 or len(dtypes) != 1:
        raise ValueError(
            f"collate: every sample must be a (channels, spikes) tensor of one shape[0] and dtype, got "
            f"{sorted({tuple(t.shape) for t in times})[:4]} {sorted(map(str, dtypes))}"
        )
    width = max(max(t.shape[1] for t in times), 1)
    out = torch.full((len(times), channels.pop(), width), math.inf, dtype=dtypes.pop())
    for k, t in enumerate(times):
        out[k, :, : t.shape[1]] = t
    labels = torch.as_tensor([int(sample[1]) for sample in batch], dtype=torch.long)
    return out, labels


class ChannelShift:
    """Augmentation: every event's ``x`` moves by one random integer in ``[-max_shift, max_shift]``
    per sample; events shifted outside ``0..W-1`` are left out (as in the published SHD
    training). A tonic-style event transform (apply before :class:`ToSpikeTimes`).

    Args:
        max_shift: largest shift in channels (>= 0).
        sensor_size: ``(W, ...)``: the ``x`` extent.
        seed: seeds the transform's own generator (reproducible augmentation).
    """

    def __init__(self, max_shift: int, sensor_size: Sequence[int], seed: int = 0) -> None:
        self.max_shift = non_negative_int("max_shift", max_shift)
        self.width = _sensor(sensor_size)[0]
        self.rng = np.random.default_rng(seed)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        shift = int(self.rng.integers(-self.max_shift, self.max_shift + 1))
        moved = events.copy()
        moved["x"] = moved["x"] + shift
        return moved[(moved["x"] >= 0) & (moved["x"] < self.width)]


class ClassBlend(torch.utils.data.Dataset):
    """Augmentation over a dataset of event arrays: with probability ``probability`` a sample
    is blended with another random sample of its class.

    Blend (after the published SHD training): the two samples' events are aligned on
    their mean time and mean ``x`` (the second one's events are shifted to the first
    one's means, rounded to whole channels), then each event of the pair is kept with
    probability 1/2, and the result is sorted by time. Events shifted outside the
    sensor's ``x`` range are left out.

    Args:
        dataset: items ``(events, label)`` (e.g. a tonic dataset without ``transform``).
        labels: the label of every item (to find partners without loading them).
        sensor_size: ``(W, ...)``: the ``x`` extent.
        probability: of blending an item (0..1).
        transform: applied to the (blended) events, e.g. :class:`ToSpikeTimes`.
        seed: seeds the blend's generator.
    """

    def __init__(
        self,
        dataset: Any,
        labels: Sequence[int],
        sensor_size: Sequence[int],
        *,
        probability: float = 0.5,
        transform: Any = None,
        seed: int = 0,
    ) -> None:
        if len(labels) != len(dataset):
            raise ValueError(f"labels must have one entry per item ({len(dataset)}), got {len(labels)}")
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"probability must lie in [0, 1], got {probability}")
        self.dataset, self.labels = dataset, np.asarray(labels, dtype=np.int64)
        self.width = _sensor(sensor_size)[0]
        self.probability, self.transform = float(probability), transform
        self.rng = np.random.default_rng(seed)
        self.members = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        events, label = self.dataset[index]
        if self.rng.random() < self.probability:
            partner, _ = self.dataset[int(self.rng.choice(self.members[int(self.labels[index])]))]
            events = self._blend(events, partner)
        return (self.transform(events) if self.transform is not None else events), label

    def _blend(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.size == 0 or b.size == 0:
            return a
        moved = b.copy()
        moved["t"] = moved["t"] + (a["t"].mean() - b["t"].mean()).astype(moved["t"].dtype)
        moved["x"] = moved["x"] + int(round(float(a["x"].mean() - b["x"].mean())))
        both = np.concatenate([a, moved[(moved["x"] >= 0) & (moved["x"] < self.width) & (moved["t"] >= 0)]])
        kept = both[self.rng.random(both.size) < 0.5]
        return kept[np.argsort(kept["t"], kind="stable")]
