"""The Yin-Yang classification data set (Kriener, Göltz & Petrovici, 2021).

Provenance
----------
This is a numpy-only re-implementation of the generator published with
L. Kriener, J. Göltz, M. A. Petrovici, "The Yin-Yang dataset",
arXiv:2102.08211, repository ``lkriener/yin_yang_data_set`` (``dataset.py``).
It consumes the legacy ``np.random.RandomState(seed)`` stream in exactly the
same order as the original, so the published splits (train: 5000 samples,
seed 42; validation: 1000 samples, seed 41; test: 1000 samples, seed 40) are
reproduced bit for bit.

Decision rule
-------------
A point ``(x, y)`` is drawn uniformly from the square ``[0, 2 R)^2`` with
``R = r_big`` and kept only if it lies in the disc of radius ``R`` centred at
``(R, R)``.  With the distances to the two dot centres

    d_r = sqrt((x - 3R/2)^2 + (y - R)^2),    d_l = sqrt((x - R/2)^2 + (y - R)^2)

and ``r = r_small``, the label is

    2  if d_r < r or d_l < r                                    (dot)
    1  else if d_r <= r or r < d_l <= R/2 or (y > R and d_r > R/2)
    0  otherwise.

Label names follow the original's ``class_names``: 0 = "yin", 1 = "yang",
2 = "dot".  (The original's code calls the label-1 predicate ``is_yin``; only
the numbers matter and they are reproduced exactly.)

Sampling (class balance by rejection)
-------------------------------------
For each sample, in order: draw the goal class ``c = rng.randint(3)``; then
repeatedly draw ``(x, y) = rng.rand(2) * 2 * R`` until the point lies in the
big disc and has label ``c``.  The feature vector is ``[x, y, 1 - x, 1 - y]``
(the mirrored copies let bias-free neuron models see every region).
"""

from __future__ import annotations

import numpy as np

from ..validation import non_negative_int, positive, positive_int

__all__ = ["YINYANG_SPLITS", "yinyang", "yinyang_split"]

#: Published splits: name -> (size, seed).
YINYANG_SPLITS: dict[str, tuple[int, int]] = {
    "train": (5000, 42),
    "validation": (1000, 41),
    "test": (1000, 40),
}

CLASS_NAMES: tuple[str, str, str] = ("yin", "yang", "dot")


def _label(x: float, y: float, r_small: float, r_big: float) -> int:
    """Class of a point inside the big disc (see the module docstring)."""
    d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    if d_right < r_small or d_left < r_small:
        return 2
    upper = (
        d_right <= r_small
        or r_small < d_left <= 0.5 * r_big
        or (y > r_big and d_right > 0.5 * r_big)
    )
    return 1 if upper else 0


def yinyang(
    size: int, seed: int, *, r_small: float = 0.1, r_big: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``size`` Yin-Yang samples from ``np.random.RandomState(seed)``.

    Args:
        size: number of samples, a positive int.
        seed: seed of the legacy numpy RNG, an int in ``[0, 2**32)``.
        r_small: radius of the two dots (same units as the coordinates).
        r_big: radius of the whole symbol; coordinates lie in ``[0, 2 r_big)``.
            Requires ``0 < 2 * r_small < r_big <= 0.5`` so that every class has
            positive area and all features lie in ``[0, 1]``.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(size, 4)`` with rows
        ``[x, y, 1 - x, 1 - y]`` (dimensionless, in ``[0, 1]``), and ``y``
        int64 of shape ``(size,)`` with labels 0 (yin), 1 (yang), 2 (dot).

    Raises:
        ValueError: naming the offending argument.
    """
    size = positive_int("size", size)
    if non_negative_int("seed", seed) >= 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    r_small = positive("r_small", r_small)
    r_big = positive("r_big", r_big)
    if r_big > 0.5:
        raise ValueError(f"r_big must be <= 0.5 so features lie in [0, 1], got {r_big!r}")
    if not 2.0 * r_small < r_big:
        raise ValueError(
            f"r_small must be smaller than r_big / 2, got r_small={r_small!r}, r_big={r_big!r}"
        )

    rng = np.random.RandomState(int(seed))
    features = np.empty((int(size), 4), dtype=np.float64)
    labels = np.empty(int(size), dtype=np.int64)
    for i in range(int(size)):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if np.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            if _label(x, y, r_small, r_big) == goal:
                break
        features[i] = (x, y, 1.0 - x, 1.0 - y)
        labels[i] = goal
    return features, labels


def yinyang_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the published split ``name`` ("train", "validation" or "test").

    Returns ``(X, y)`` as :func:`yinyang` does, with shapes ``(N, 4)`` and
    ``(N,)`` where ``N`` is 5000 for "train" and 1000 otherwise.

    Raises:
        ValueError: if ``name`` is not a known split.
    """
    if name not in YINYANG_SPLITS:
        raise ValueError(f"name must be one of {sorted(YINYANG_SPLITS)}, got {name!r}")
    size, seed = YINYANG_SPLITS[name]
    return yinyang(size, seed)
