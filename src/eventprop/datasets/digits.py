"""The 8x8 handwritten digits (UCI / scikit-learn), bundled, with a fixed split.

Data: 1797 grey-scale 8x8 images, pixel intensities 0..16, classes 0..9 (about 180
per class), read from ``eventprop/datasets/data/digits.csv.gz`` (a copy of
scikit-learn's file; origin and licence in ``data/README.md``). No download and no
scikit-learn needed.

Split (fixed, stratified): for each class ``c = 0..9`` in turn, its sample indices
(ascending) are permuted by one ``np.random.RandomState(0)`` stream; the first
``round(0.2 n_c)`` go to test, the next ``round(0.2 n_c)`` to validation and the rest
to train. Each split lists its indices in ascending order. Sizes: train 1079,
validation 359, test 359 (test and validation: 35-37 per class). Validation is for model selection, test only for the final
score.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib.resources import files

import numpy as np

__all__ = ["DIGITS_SPLITS", "load_digits", "digits_split", "digits_split_indices"]

#: Split names and fractions (test and validation; train is the rest).
DIGITS_SPLITS: tuple[str, ...] = ("train", "validation", "test")
_SEED = 0
_HELD_OUT = 0.2


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(files("eventprop.datasets").joinpath("data/digits.csv.gz").open("rb"), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images, labels = table[:, :-1], table[:, -1]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 samples: ``(X, y)``, ``X`` int64 ``(1797, 64)`` in 0..16 (row-major 8x8), ``y`` ``(1797,)`` in 0..9."""
    x, y = _load()
    return x.copy(), y.copy()


@lru_cache(maxsize=1)
def _indices() -> dict[str, np.ndarray]:
    _, y = _load()
    rng = np.random.RandomState(_SEED)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in DIGITS_SPLITS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = int(round(_HELD_OUT * idx.size))
        parts["test"].append(idx[:n])
        parts["validation"].append(idx[n : 2 * n])
        parts["train"].append(idx[2 * n :])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


def digits_split_indices(name: str) -> np.ndarray:
    """Row indices (into :func:`load_digits`) of split ``name``, ascending."""
    if name not in DIGITS_SPLITS:
        raise ValueError(f"name must be one of {list(DIGITS_SPLITS)}, got {name!r}")
    return _indices()[name].copy()


def digits_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of split ``name`` ("train", "validation", "test"); shapes as in :func:`load_digits`."""
    idx = digits_split_indices(name)
    x, y = _load()
    return x[idx], y[idx]
