"""The event data sets a task can read from ``--data``, by name: ``shd``, ``ssc`` (:mod:`.heidelberg`), ``nmnist`` (:mod:`.nmnist`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .heidelberg import HEIDELBERG, heidelberg_split
from .nmnist import nmnist_split

__all__ = ["EVENT_SOURCES", "event_split"]

#: The readable event data sets.
EVENT_SOURCES = (*HEIDELBERG, "nmnist")


def event_split(source: str, data_dir: str | Path, name: str, *, transform: Any = None, download: bool = False) -> tuple[Any, np.ndarray]:
    """``(dataset, labels)`` of split ``name`` of the event data set ``source``, read from ``data_dir``.

    Items are ``(transform(events), label)``; see the readers for the folder layouts,
    splits and errors.
    """
    if source == "nmnist":
        return nmnist_split(data_dir, name, transform=transform, download=download)
    if source in HEIDELBERG:
        return heidelberg_split(source, data_dir, name, transform=transform, download=download)
    raise ValueError(f"source must be one of {list(EVENT_SOURCES)}, got {source!r}")
