"""What the package asks of its environment: the oldest torch it runs on (checked when the
engines load, which everything that computes does), and numba's fork-safe threading
layer (chosen when ``eventprop`` is imported).

The training loop's fused Adam on CPU tensors needs torch 2.4; ``pyproject.toml``
declares the same floor (``torch>=2.4``; a test keeps the two equal).
"""

from __future__ import annotations

import os
import re
import sys

__all__ = ["TORCH_FLOOR", "check_torch_version", "prefer_fork_safe_threading"]

#: ``(major, minor)`` of the oldest supported torch.
TORCH_FLOOR = (2, 4)


def check_torch_version(version: str) -> None:
    """Raise ``ImportError`` naming both versions if torch ``version`` is older than :data:`TORCH_FLOOR`.

    Examples:
        >>> check_torch_version("2.13.0+cpu")
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ImportError(f"eventprop: cannot read the torch version {version!r}")
    if (int(match.group(1)), int(match.group(2))) < TORCH_FLOOR:
        floor = ".".join(map(str, TORCH_FLOOR))
        raise ImportError(f"eventprop needs torch >= {floor}, found torch {version}: pip install 'torch>={floor}'")


def prefer_fork_safe_threading() -> None:
    """Ask numba for its ``workqueue`` threading layer, unless the user chose a layer.

    numba's OpenMP layer shares GNU OpenMP with torch: starting it raises torch's thread
    count, and a process that forks after using it (``DataLoader`` workers) has its
    children killed. ``workqueue`` has neither problem (see
    :mod:`eventprop.engines.numba_cpu.threads`). The choice goes into
    ``os.environ["NUMBA_THREADING_LAYER"]`` (numba reads it at import and re-reads it
    when it compiles; child processes inherit it) and, if numba is already imported,
    into ``numba.config``. Nothing changes if the variable is set, if numba's
    configuration names another layer, or once numba's thread pool has started (its
    layer is then fixed).
    """
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    numba = sys.modules.get("numba")
    if numba is not None and getattr(numba.config, "THREADING_LAYER", "default") != "default":
        return
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    if numba is not None:
        numba.config.THREADING_LAYER = "workqueue"
