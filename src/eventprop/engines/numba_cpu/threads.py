"""Numba engine: when and how a kernel runs on numba's thread pool.

Every compiled kernel exists twice, serial and ``parallel=True``; :func:`launch` picks
one by the work (batch x neurons x events, or input entries when ordering events) and
runs a parallel one so that it changes nothing outside the call:

- **Threading layer.** Unless the user chose one, importing ``eventprop`` asks numba
  for its ``workqueue`` layer (:func:`eventprop.compat.prefer_fork_safe_threading`).
  numba's OpenMP layer shares GNU OpenMP with torch: starting it raises
  ``torch.get_num_threads()`` to numba's thread count, and a process that forks after
  using it (the default ``DataLoader`` workers) has its children killed ("fork() called
  from a process already using GNU OpenMP"). ``workqueue`` is fork-safe and leaves
  torch's OpenMP alone. It is not safe for two Python threads at once, so parallel
  kernels run under one process-wide lock (threads calling the engine concurrently take
  turns on the pool; serial kernels do not wait).
- **torch's thread count** is restored after every parallel kernel, whatever the
  layer (under the OpenMP layer the first launch would otherwise change it).

Results never depend on the thread count: every parallel reduction sums fixed chunks
of samples in a fixed order (:mod:`.chunks`), so 1, 2 or 16
threads give the same bits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

try:  # pragma: no cover - exercised only where numba is missing
    import numba
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["PARALLEL_MIN_WORK", "launch"]

# Below this much work a kernel runs serially: waking the thread pool costs more than it saves.
PARALLEL_MIN_WORK = 20_000

_POOL_LOCK = threading.Lock()


def launch(parallel: Callable[..., Any], serial: Callable[..., Any], work: int, *args: Any) -> None:
    """Run ``serial(*args)``, or ``parallel(*args)`` on the thread pool when ``work`` pays for it.

    ``work`` is at least ``PARALLEL_MIN_WORK`` and numba has more than one thread: the
    parallel kernel runs under the pool lock, and torch's thread count is put back
    afterwards if the launch changed it.
    """
    if work < PARALLEL_MIN_WORK:
        serial(*args)
        return
    torch_threads = torch.get_num_threads()  # before numba's first call starts its pool
    try:
        if numba.get_num_threads() == 1:
            serial(*args)
            return
        with _POOL_LOCK:
            parallel(*args)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
