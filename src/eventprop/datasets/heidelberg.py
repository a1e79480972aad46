"""The Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC) through tonic.

Cramer, Stradmann, Schemmel & Zenke (2020): spoken digits (SHD: 20 classes, English and
German, 12 speakers, 8,156 training and 2,264 test samples) and commands (SSC: 35
classes, 75,466 / 9,981 / 20,382 samples) converted by a cochlea model into spikes of
700 channels. The files (HDF5: ``spikes/times`` in seconds, ``spikes/units``,
``labels``, ``extra/speaker``) are read by ``tonic.datasets.SHD`` / ``SSC`` from
``DIR/SHD/shd_{train,test}.h5`` and ``DIR/SSC/ssc_{train,valid,test}.h5`` (tonic's
layout, each beside its downloaded ``.zip``); nothing downloads unless asked
(``download=True``).

Splits: SSC has its own validation file. SHD has none; its validation split is
speaker-wise, as in the published speaker-wise cross-validation (one fold): the
training samples of speaker :data:`SHD_VALIDATION_SPEAKER` form the validation split,
the other training speakers the training split (the test split keeps the two speakers
heard only there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HEIDELBERG", "SHD_VALIDATION_SPEAKER", "heidelberg_split", "require_tonic"]

#: data set -> (tonic class name, file stem, classes, split -> file split)
HEIDELBERG: dict[str, tuple[str, str, int, dict[str, str]]] = {
    "shd": ("SHD", "shd", 20, {"train": "train", "validation": "train", "test": "test"}),
    "ssc": ("SSC", "ssc", 35, {"train": "train", "validation": "valid", "test": "test"}),
}

#: The SHD training speaker whose samples are the validation split.
SHD_VALIDATION_SPEAKER = 0


def require_tonic() -> Any:
    """The ``tonic`` module, or ``ValueError`` with the install hint."""
    try:
        import tonic
    except ImportError:
        raise ValueError("event data needs the tonic package: pip install eventprop[data]  (or: pip install tonic h5py)") from None
    return tonic


def _read_index(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, speakers)`` of an SHD/SSC file, checked; ``ValueError`` naming the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            labels = np.asarray(f["labels"][()], dtype=np.int64)
            speakers = np.asarray(f["extra/speaker"][()], dtype=np.int64) if "extra/speaker" in f else np.zeros_like(labels)
            n_times, n_units = len(f["spikes/times"]), len(f["spikes/units"])
    except (OSError, KeyError) as exc:
        raise ValueError(f"--data: {path} is not a readable SHD/SSC file ({str(exc).splitlines()[0]})") from None
    if not n_times == n_units == labels.shape[0] == speakers.shape[0]:
        raise ValueError(f"--data: {path}: spikes/times, spikes/units, labels and extra/speaker differ in length "
                         f"({n_times}, {n_units}, {labels.shape[0]}, {speakers.shape[0]})")  # fmt: skip
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"--data: {path}: labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    return labels, speakers


def heidelberg_split(which: str, data_dir: str | Path, name: str, *, transform: Any = None, download: bool = False) -> tuple[Any, np.ndarray]:
    """``(dataset, labels)`` of split ``name`` of SHD or SSC (module docstring).

    Args:
        which: ``"shd"`` or ``"ssc"``.
        data_dir: the folder tonic saves to (holding ``SHD/`` or ``SSC/``).
        name: ``"train"``, ``"validation"`` or ``"test"``.
        transform: applied to each item's events (e.g. :class:`~eventprop.datasets.ToSpikeTimes`).
        download: let tonic download missing files (needs the internet).

    Returns:
        A dataset of ``(transform(events), label)`` items (a ``torch.utils.data.Subset``
        of tonic's for SHD's training and validation splits) and its labels.

    Raises:
        ValueError: unknown ``which``/``name``, tonic missing, the folder or a file
            missing (without ``download``), a file unreadable or inconsistent, labels out
            of range; each names the file.
    """
    if which not in HEIDELBERG:
        raise ValueError(f"which must be one of {sorted(HEIDELBERG)}, got {which!r}")
    tonic_name, stem, n_classes, files = HEIDELBERG[which]
    if name not in files:
        raise ValueError(f"name must be one of {sorted(files)}, got {name!r}")
    tonic = require_tonic()
    folder = Path(data_dir)
    path = folder / tonic_name / f"{stem}_{files[name]}.h5"
    cls = getattr(tonic.datasets, tonic_name)
    if not download:
        if not folder.is_dir():
            raise ValueError(f"--data: folder {folder} does not exist")
        if not path.is_file():
            raise ValueError(f"--data: {path} is missing (tonic's layout: {folder}/{tonic_name}/{path.name}; pass --download to fetch it)")
        # the file is there: tonic's own check (its archive beside it) must not start a download
        cls = type(tonic_name, (cls,), {"_check_exists": lambda self: True, "__module__": __name__})
    labels, speakers = _read_index(path, n_classes) if path.is_file() else (None, None)
    split = {"train": files[name] == "train"} if which == "shd" else {"split": files[name]}
    dataset = cls(str(folder), transform=transform, **split)
    if labels is None:  # just downloaded
        labels, speakers = _read_index(path, n_classes)
    if which == "shd" and name != "test":
        keep = np.flatnonzero((speakers == SHD_VALIDATION_SPEAKER) == (name == "validation"))
        import torch

        return torch.utils.data.Subset(dataset, keep.tolist()), labels[keep]
    return dataset, labels
