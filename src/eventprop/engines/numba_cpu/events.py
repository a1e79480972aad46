r"""Numba engine: input spike trains to one validated, time-ordered event list per sample.

A compiled kernel checks the data contract (NaN, negative or non-ascending times raise
the ``ValueError`` of :func:`eventprop.model.spikes.check_spike_values`) while it merges
a sample's trains into events sorted by time (stable: ties keep input order), in
parallel over samples when the batch is large enough (:func:`.threads.launch`); and the
way back, a recurrent layer's firing-order spike list to per-neuron trains
(:func:`spike_trains`). Also the numpy plumbing every compiled kernel shares.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...model.spikes import EventList, check_spike_values
from .threads import launch

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["to_numpy", "input_events", "window_order", "spike_limit", "spike_trains"]


def spike_limit(max_spikes: int | None) -> np.int64:
    """``max_spikes`` as the kernels' int64 limit: ``None`` or anything beyond int64 is no limit."""
    most = np.iinfo(np.int64).max
    return np.int64(most if max_spikes is None else min(max_spikes, most))


def to_numpy(x: Tensor, dtype: torch.dtype | None = None) -> np.ndarray:
    """A C-contiguous numpy view (a copy only where needed) of ``x`` on the CPU in ``dtype``."""
    x = x.detach()
    if x.device.type != "cpu" or (dtype is not None and x.dtype != dtype):
        x = x.to("cpu", dtype)
    a = x.numpy()
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


if numba is not None:

    @njit(cache=True)
    def spike_trains(sp_t, sp_n, n_sp, counts, width):
        # per-neuron spike trains (batch, N, width), +inf padded, from the firing-order
        # lists (sp_t times, sp_n neurons, n_sp spikes per sample; counts (batch, N))
        batch, n = counts.shape
        out = np.full((batch, n, width), np.inf)
        fill = np.zeros(n, dtype=np.int64)
        for b in range(batch):
            fill[:] = 0
            for r in range(n_sp[b]):
                j = sp_n[b, r]
                out[b, j, fill[j]] = sp_t[b, r]
                fill[j] += 1
        return out

    @njit(cache=True)
    def _time_order(times):
        # The stable ascending order of ``times`` (finite, >= 0), as np.argsort(kind=
        # "mergesort") gives it, in O(n) for spread-out times: a stable bucket pass (as
        # many buckets as times, bucket index monotonic in the time), then each bucket
        # sorted stably (insertion for a few entries, mergesort for a crowded one).
        n = times.shape[0]
        if n < 64:
            return np.argsort(times, kind="mergesort")
        t_max = 0.0
        for q in range(n):
            t_max = max(t_max, times[q])
        order = np.empty(n, dtype=np.int64)
        if not (t_max > 0):  # all at t = 0: the input order is the stable order
            for q in range(n):
                order[q] = q
            return order
        scale = (n - 1) / t_max
        start = np.zeros(n + 1, dtype=np.int64)
        for q in range(n):
            start[int(times[q] * scale) + 1] += 1
        for k in range(n):
            start[k + 1] += start[k]
        fill = start[:n].copy()
        for q in range(n):
            k = int(times[q] * scale)
            order[fill[k]] = q
            fill[k] += 1
        for k in range(n):
            lo = start[k]
            hi = start[k + 1]
            if hi - lo > 32:
                part = order[lo:hi].copy()
                order[lo:hi] = part[np.argsort(times[part], kind="mergesort")]
            else:
                for r in range(lo + 1, hi):
                    q = order[r]
                    t = times[q]
                    u = r
                    while u > lo and times[order[u - 1]] > t:
                        order[u] = order[u - 1]
                        u -= 1
                    order[u] = q
        return order

    @njit(cache=True)
    def _window_order_row(b, flat, window, position):
        # row b: the slots of the times < window in stable time order
        row = flat[b]
        slots = np.empty(row.shape[0], dtype=np.int64)
        m = 0
        for q in range(row.shape[0]):
            if row[q] < window:
                slots[m] = q
                m += 1
        order = _time_order(row[slots[:m]])
        for r in range(m):
            position[b, r] = slots[order[r]]

    @njit(parallel=True, cache=True)
    def _window_order_parallel(flat, window, position):
        for b in prange(flat.shape[0]):
            _window_order_row(b, flat, window, position)

    @njit(cache=True)
    def _window_order_serial(flat, window, position):
        for b in range(flat.shape[0]):
            _window_order_row(b, flat, window, position)

    @njit(cache=True)
    def _count_row(b, flat, slots, counts, status):
        # Validate one sample's spike trains (flat: (batch, neurons * slots)) and count
        # its finite times; status[b] bits: 1 NaN, 2 negative time, 4 not ascending.
        # Branch-free (it vectorises): the values in one pass, the order channel by channel.
        row = flat[b]
        nan = False
        negative = False
        descending = False
        m = 0
        for q in range(row.shape[0]):
            t = row[q]
            nan |= t != t
            negative |= t < 0
            m += t < math.inf
        for base in range(0, row.shape[0], slots):
            for q in range(base + 1, base + slots):
                descending |= row[q] < row[q - 1]
        counts[b] = m
        status[b] = np.int64(nan) | (np.int64(negative) << 1) | (np.int64(descending) << 2)

    @njit(cache=True)
    def _merge_row(b, flat, slots, counts, ev_t, ev_pos, ev_src):
        # One sample's finite times in ascending order (stable: ties keep input order)
        # into rows of the event arrays (as long as the longest sample, not the input's
        # padded width), padded with +inf events at position 0 (never read). The trains
        # are validated (ascending, no NaN): each channel's finite times come first.
        m = counts[b]
        times = np.empty(m, dtype=flat.dtype)
        positions = np.empty(m, dtype=np.int64)
        sources = np.empty(m, dtype=np.int64)
        r = 0
        for channel in range(flat.shape[1] // slots):
            base = channel * slots
            for q in range(base, base + slots):
                t = flat[b, q]
                if not (t < math.inf):
                    break
                times[r] = t
                positions[r] = q
                sources[r] = channel
                r += 1
        order = _time_order(times)
        for r in range(m):
            ev_t[b, r] = times[order[r]]
            ev_pos[b, r] = positions[order[r]]
            ev_src[b, r] = sources[order[r]]
        for r in range(m, ev_t.shape[1]):
            ev_t[b, r] = np.inf
            ev_pos[b, r] = 0
            ev_src[b, r] = 0

    @njit(parallel=True, cache=True)
    def _count_kernel_parallel(flat, slots, counts, status):
        for b in prange(flat.shape[0]):
            _count_row(b, flat, slots, counts, status)

    @njit(cache=True)
    def _count_kernel_serial(flat, slots, counts, status):
        for b in range(flat.shape[0]):
            _count_row(b, flat, slots, counts, status)

    @njit(parallel=True, cache=True)
    def _merge_kernel_parallel(flat, slots, counts, ev_t, ev_pos, ev_src):
        for b in prange(flat.shape[0]):
            _merge_row(b, flat, slots, counts, ev_t, ev_pos, ev_src)

    @njit(cache=True)
    def _merge_kernel_serial(flat, slots, counts, ev_t, ev_pos, ev_src):
        for b in range(flat.shape[0]):
            _merge_row(b, flat, slots, counts, ev_t, ev_pos, ev_src)


def input_events(times: Tensor) -> tuple[EventList, np.ndarray, np.ndarray]:
    """Validated, time-ordered events of ``times`` (see :func:`eventprop.model.spikes.sorted_events`).

    Returns the :class:`~eventprop.model.spikes.EventList` (trimmed to the longest sample)
    and its times and sources as numpy arrays. NaN, negative or non-ascending input
    times raise the ``ValueError`` of :func:`eventprop.model.spikes.check_spike_values`.
    """
    batch, neurons, slots = times.shape
    flat = to_numpy(times.reshape(batch, neurons * slots))
    n = flat.shape[1]
    counts = np.zeros(batch, dtype=np.int64)
    status = np.zeros(batch, dtype=np.int64)
    if batch and n:
        launch(_count_kernel_parallel, _count_kernel_serial, batch * n, flat, slots, counts, status)
        if status.any():
            check_spike_values(times)  # raises the precise error
            raise AssertionError("event kernel flagged valid spike times")  # pragma: no cover
    n_events = int(counts.max()) if batch else 0
    ev_t = np.empty((batch, n_events), dtype=flat.dtype)
    ev_pos = np.empty((batch, n_events), dtype=np.int64)
    ev_src = np.empty((batch, n_events), dtype=np.int64)
    if batch and n_events:
        launch(_merge_kernel_parallel, _merge_kernel_serial, batch * n, flat, slots, counts, ev_t, ev_pos, ev_src)
    device = times.device
    events = EventList(
        times=torch.from_numpy(ev_t).to(device),
        source=torch.from_numpy(ev_src).to(device),
        position=torch.from_numpy(ev_pos).to(device),
    )
    return events, ev_t, ev_src


def window_order(flat: Tensor, window: float) -> tuple[Tensor, Tensor]:
    """Compiled :meth:`eventprop.model.trajectory.VoltageTrajectory.event_order` (same results)."""
    values = to_numpy(flat, torch.float64)
    batch, width = values.shape
    counts = (values < window).sum(axis=1) if batch else np.zeros(0, dtype=np.int64)
    n_events = int(counts.max()) if batch else 0
    position = np.zeros((batch, n_events), dtype=np.int64)
    if batch and n_events:
        launch(_window_order_parallel, _window_order_serial, batch * width, values, float(window), position)
    valid = np.arange(n_events)[None, :] < counts[:, None]
    return torch.from_numpy(position), torch.from_numpy(valid)
