"""The oldest torch this package runs on, checked at import.

The training loop's fused Adam on CPU tensors needs torch 2.4; ``pyproject.toml``
declares the same floor (``torch>=2.4``; a test keeps the two equal).
"""

from __future__ import annotations

import re

__all__ = ["TORCH_FLOOR", "check_torch_version"]

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
