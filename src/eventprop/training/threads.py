"""The CPU threads of a training process: torch's and the compiled kernels' (numba's)."""

from __future__ import annotations

import torch

__all__ = ["set_threads"]


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch and in the compiled kernels (numba).

    Raises:
        ValueError: ``threads`` is not positive or exceeds numba's pool (``NUMBA_NUM_THREADS``).
    """
    if threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads}")
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        numba = None
    if numba is not None:
        pool = numba.config.NUMBA_NUM_THREADS
        if threads > pool:
            raise ValueError(f"threads: {threads} exceeds numba's pool of {pool} (raise it with NUMBA_NUM_THREADS={threads})")
        numba.set_num_threads(threads)
    torch.set_num_threads(threads)
