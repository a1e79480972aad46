"""Numba engine: the two heaps of the event-driven recurrent kernel (:mod:`.recurrent_connections`).

- an *indexed* min-heap of the neurons' predicted threshold crossings (``heap`` of neuron
  ids, ``pos`` their places, ``key`` the times; ties: the lower neuron first), whose
  entry for one neuron moves up or down in ``O(log N)`` when its prediction changes;
- a min-heap of pending recurrent arrivals in parallel arrays (time, creation number,
  synapse, sending spike), ordered by time and then creation, growable.

Scalar code only (no numpy calls but ``np.empty`` in :func:`_grow`); compiled with
numba's on-disk cache.
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised only where numba is missing
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

_CACHE = True

if njit is not None:

    # --- an indexed min-heap of the neurons' predicted crossings (ties: lower neuron first)
    @njit(cache=_CACHE)
    def _before(key, a, b):
        return key[a] < key[b] or (key[a] == key[b] and a < b)

    @njit(cache=_CACHE)
    def _sift(heap, pos, key, q):
        n = heap.shape[0]
        while q > 0:  # up
            parent = (q - 1) // 2
            if not _before(key, heap[q], heap[parent]):
                break
            heap[q], heap[parent] = heap[parent], heap[q]
            pos[heap[q]] = q
            pos[heap[parent]] = parent
            q = parent
        while True:  # down
            left = 2 * q + 1
            if left >= n:
                break
            best = left
            if left + 1 < n and _before(key, heap[left + 1], heap[left]):
                best = left + 1
            if not _before(key, heap[best], heap[q]):
                break
            heap[q], heap[best] = heap[best], heap[q]
            pos[heap[q]] = q
            pos[heap[best]] = best
            q = best

    # --- a min-heap of pending recurrent arrivals, ordered by (time, creation)
    @njit(cache=_CACHE)
    def _earlier(ht, hs, a, b):
        return ht[a] < ht[b] or (ht[a] == ht[b] and hs[a] < hs[b])

    @njit(cache=_CACHE)
    def _swap(ht, hs, hc, hk, a, b):
        ht[a], ht[b] = ht[b], ht[a]
        hs[a], hs[b] = hs[b], hs[a]
        hc[a], hc[b] = hc[b], hc[a]
        hk[a], hk[b] = hk[b], hk[a]

    @njit(cache=_CACHE)
    def _push(ht, hs, hc, hk, size, t, seq, c, k):
        q = size
        ht[q] = t
        hs[q] = seq
        hc[q] = c
        hk[q] = k
        while q > 0:
            parent = (q - 1) // 2
            if not _earlier(ht, hs, q, parent):
                break
            _swap(ht, hs, hc, hk, q, parent)
            q = parent

    @njit(cache=_CACHE)
    def _pop(ht, hs, hc, hk, size):
        # removes the root of a heap of ``size`` entries (the caller read it)
        last = size - 1
        _swap(ht, hs, hc, hk, 0, last)
        q = 0
        while True:
            left = 2 * q + 1
            if left >= last:
                break
            best = left
            if left + 1 < last and _earlier(ht, hs, left + 1, left):
                best = left + 1
            if not _earlier(ht, hs, best, q):
                break
            _swap(ht, hs, hc, hk, q, best)
            q = best

    @njit(cache=_CACHE)
    def _grow(a, size):
        b = np.empty(max(2 * a.shape[0], size + 1), dtype=a.dtype)
        b[: a.shape[0]] = a
        return b
