"""N-MNIST (Orchard, Jayawant, Cohen & Thakor 2015) through tonic.

MNIST digits recorded by an event camera on a moving platform (three saccades, about
300 ms): a 34 x 34 sensor with two polarities, events ``(x, y, t, p)`` with ``t`` in
microseconds. tonic's ``NMNIST`` reads the original binary files from
``DIR/NMNIST/Train/<digit>/*.bin`` and ``DIR/NMNIST/Test/<digit>/*.bin``: 5 bytes per
event (``x``, ``y``, then polarity in bit 7 of the third byte and the 23-bit time in the
rest, big-endian). Nothing downloads unless asked (``download=True``).

Splits: ``test`` is the Test folder; the Train folder's samples (in tonic's order: by
digit, then file name) go to ``validation`` when their index is 5 modulo 6 (a sixth,
every digit represented) and to ``train`` otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .heidelberg import require_tonic

__all__ = ["nmnist_split"]


def _check_files(folder: Path) -> None:
    files = sorted(folder.glob("[0-9]/*.bin"))
    if not files:
        raise ValueError(f"--data: {folder} holds no N-MNIST files (<digit>/*.bin); pass --download to fetch them")
    for f in files:
        if f.stat().st_size % 5:
            raise ValueError(f"--data: {f} is not an N-MNIST event file (its {f.stat().st_size} bytes are not 5-byte events)")


def nmnist_split(data_dir: str | Path, name: str, *, transform: Any = None, download: bool = False) -> tuple[Any, np.ndarray]:
    """``(dataset, labels)`` of split ``name`` of N-MNIST (module docstring).

    Raises:
        ValueError: unknown split, tonic missing, the folder or its files missing
            (without ``download``), a file whose size is not a whole number of events.
    """
    if name not in ("train", "validation", "test"):
        raise ValueError(f"name must be one of ['test', 'train', 'validation'], got {name!r}")
    tonic = require_tonic()
    folder = Path(data_dir)
    cls = tonic.datasets.NMNIST
    if not download:
        if not folder.is_dir():
            raise ValueError(f"--data: folder {folder} does not exist")
        _check_files(folder / "NMNIST" / ("Test" if name == "test" else "Train"))
        # the files are there: tonic's own check (its archive, 10,000 files) must not start a download
        cls = type("NMNIST", (cls,), {"_check_exists": lambda self: True, "__module__": __name__})
    dataset = cls(str(folder), train=name != "test", transform=transform)
    labels = np.asarray(dataset.targets, dtype=np.int64)
    if name == "test":
        return dataset, labels
    import torch

    keep = np.flatnonzero((np.arange(labels.size) % 6 == 5) == (name == "validation"))
    return torch.utils.data.Subset(dataset, keep.tolist()), labels[keep]
