"""Numba engine: gradients summed over batch chunks, independently of the thread count.

A parallel backward gives each chunk of samples its own partial sum of a parameter's
gradient (``partial[part]``; the chunks are contiguous sample ranges, as many as
:func:`chunk_count` says for the batch size, never for the number of threads) and adds
the partial sums in a fixed order afterwards, so that 1, 2 or 16 threads give the same
bits. The partial sums are allocated uninitialised (:func:`partial_sums`) and each
chunk's kernel zeroes its own just before using it (``partial[part] = 0.0``, on the
thread that fills it, which keeps the memory warm in that core's cache instead of
zeroing all chunks on the caller's thread first); :func:`chunk_total` then adds them on
the thread pool, in chunk order, optionally transposed. (The kernels zero their chunk
themselves rather than calling a compiled function of this module: numba's on-disk
cache would not see an edit here, see :mod:`.scalar`.)
"""

from __future__ import annotations

import numpy as np

from .threads import launch

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["MAX_CHUNKS", "chunk_count", "chunk_total", "partial_sums"]

#: Most batch chunks a gradient is summed over (each holds one partial sum).
MAX_CHUNKS = 16


def chunk_count(batch: int) -> int:
    """Number of batch chunks for ``batch`` samples: ``min(batch, MAX_CHUNKS)``, at least 1."""
    return max(1, min(batch, MAX_CHUNKS))


def partial_sums(batch: int, *shape: int) -> np.ndarray:
    """Float64 partial sums ``(chunk_count(batch), *shape)``, uninitialised: each chunk's kernel zeroes its own.

    (Zeros for an empty batch, whose kernels do not run.)
    """
    return (np.empty if batch else np.zeros)((chunk_count(batch), *shape))


if numba is not None:

    @njit(cache=True)
    def _total_row(partial, r, out, transpose):
        # row r of the sum over chunks (in chunk order), into out[r] or out[:, r]
        parts, _, cols = partial.shape
        acc = np.empty(cols)
        for q in range(cols):
            acc[q] = partial[0, r, q]
        for part in range(1, parts):
            for q in range(cols):
                acc[q] += partial[part, r, q]
        if transpose:
            for q in range(cols):
                out[q, r] = acc[q]
        else:
            for q in range(cols):
                out[r, q] = acc[q]

    @njit(parallel=True, cache=True)
    def _total_parallel(partial, out, transpose):
        for r in prange(partial.shape[1]):
            _total_row(partial, r, out, transpose)

    @njit(cache=True)
    def _total_serial(partial, out, transpose):
        for r in range(partial.shape[1]):
            _total_row(partial, r, out, transpose)


def chunk_total(partial: np.ndarray, transpose: bool = False) -> np.ndarray:
    """The sum over chunks of ``partial`` ``(chunks, rows, cols)``, chunk by chunk in order.

    Returns ``(rows, cols)``, or ``(cols, rows)`` with ``transpose`` (contiguous either way).
    """
    parts, rows, cols = partial.shape
    out = np.empty((cols, rows) if transpose else (rows, cols))
    if rows and cols:
        launch(_total_parallel, _total_serial, partial.size, partial, out, transpose)
    return out
