"""Randman: random smooth manifolds embedded in spike times (Zenke & Vogels, 2021).

Provenance
----------
A numpy-only implementation, written from the published description of the
random-manifold ("Randman") task of F. Zenke, T. P. Vogels, "The remarkable
robustness of surrogate gradient learning for instilling complex function in
spiking neural networks", Neural Computation 33 (2021) 899-925, and its reference
generator (repository ``fzenke/randman``). The construction follows theirs; the
random streams, the index of the Fourier sum (``k = 1..K`` with amplitude
``k^-alpha``) and the rescaling (by the manifold's range instead of the sample's)
are our own, so the numbers are not theirs.

Construction
------------
Class ``c`` owns a random manifold, a smooth map ``M_c : [0, 1)^D -> [0, 1]^U`` from
``D = dim`` intrinsic coordinates to ``U = n_units`` embedding coordinates. Each of
its ``U`` components is a product of ``D`` random one-dimensional Fourier sums,

    g_{c,u,d}(x) = sum_{k=1..K} a_{c,u,d,k} k^(-alpha) sin(2 pi (k nu_{c,u,d,k} x + phi_{c,u,d,k})),

    f_{c,u}(x_1, ..., x_D) = prod_{d=1..D} g_{c,u,d}(x_d),

with amplitudes ``a``, frequency factors ``nu`` and phases ``phi`` drawn
independently and uniformly from ``[0, 1)``: the ``k``-th component oscillates at a
random frequency in ``[0, k)`` cycles per unit length with an amplitude that falls
off as ``k^-alpha`` (a power spectrum ``1/f^(2 alpha)``). Larger ``alpha`` gives
smoother manifolds. The sum is cut off at ``K = n_freqs`` components, by default
``K = min(ceil(1000^(1/alpha)), 1000)``, the first ``k`` whose amplitude factor
``k^-alpha`` is at most ``1e-3`` (32 for ``alpha = 2``).

Each component is then rescaled into ``[0, 1]`` by its range over the whole cube,

    M_{c,u}(x) = (f_{c,u}(x) - lo_{c,u}) / (hi_{c,u} - lo_{c,u}),

where ``[lo, hi]`` is the range of ``f_{c,u}`` on ``[0, 1]^D``. A product of factors
that each range over an interval takes its extremes at the intervals' end points, so
``lo`` and ``hi`` are the smallest and largest of the ``2^D`` products of the
factors' minima and maxima; each factor's extremes are taken on a uniform grid of
``min(40 K, 4096) + 1`` points (at least 40 per period of the fastest component
when ``K <= 102``; beyond, only components with amplitude factors below
``102^-alpha`` are sampled more coarsely), and the result is clipped into
``[0, 1]`` against the grid's rounding. The scale depends on the manifold only, not
on the samples, so every split of a configuration sees the same manifolds.

Samples
-------
A sample of class ``c`` is ``M_c(x)`` at a point ``x`` drawn uniformly from
``[0, 1)^D``. Its ``U`` values are the firing times of ``U`` input neurons, one spike
each, to be latency-encoded as ``t = t_first + v (t_last - t_first)``
(:func:`eventprop.datasets.latency_encode`). Every neuron fires exactly once in
every sample, so spike counts carry nothing: the class is carried by the timing.

Difficulty
----------
Harder with a larger manifold dimension ``D`` (a class fills more of the cube of
spike times), more classes, smaller ``alpha`` (rougher, more folded manifolds) and
fewer units ``U`` (fewer views of the same intrinsic point, less room between the
manifolds). Logistic regression on the values (10 classes, manifold seed 0, 300
training and 100 validation points per class; validation accuracy): ``D = 1`` or
``2`` at ``U = 100`` 100 %, ``D = 1`` at ``U = 20`` 81 %, ``D = 2`` at ``U = 20``
52 %, ``D = 3`` at ``U = 20`` 67 %, ``D = 3`` at ``U = 50`` 96 %; a vote of the 5
nearest training points is right 98-100 % of the time in every case: the classes
are separable, but not by hyperplanes.

The built-in splits (:func:`randman_split`) use 10 classes, ``U = 20``, ``D = 3``,
``alpha = 2``: logistic regression reaches 69.7 % test accuracy on them, the
spiking networks of ``eventprop train randman`` 94-96 % after about 2 minutes of
training per seed on one core (README, "Randman results").

Random streams
--------------
``np.random.RandomState(seed)`` (the legacy generator: its stream is frozen across
numpy versions) draws, in C order, an array of shape ``(n_classes, n_units, dim, 3,
K)``: ``[..., 0, :]`` the amplitudes, ``[..., 1, :]`` the frequency factors,
``[..., 2, :]`` the phases. The samples come from ``RandomState(sample_seed)`` (or
from the same stream, continued, when ``sample_seed`` is ``None``): the intrinsic
coordinates, shape ``(n_classes, samples_per_class, dim)``, then one permutation of
all ``n_classes * samples_per_class`` samples.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..validation import non_negative_int, positive, positive_int

__all__ = ["RANDMAN_CONFIG", "RANDMAN_SEED", "RANDMAN_SPLITS", "default_n_freqs", "randman", "randman_split"]

#: Configuration of the built-in splits (keyword arguments of :func:`randman`): hard for a
#: linear classifier on the spike times, learnable by a spiking network (module docstring).
RANDMAN_CONFIG: dict[str, int | float] = {"n_classes": 10, "n_units": 20, "dim": 3, "alpha": 2.0}
#: Seed of the built-in splits' manifolds (shared by all three splits).
RANDMAN_SEED: int = 0
#: Built-in splits: name -> (samples per class, sample seed).
RANDMAN_SPLITS: dict[str, tuple[int, int]] = {
    "train": (500, 1),
    "validation": (100, 2),
    "test": (100, 3),
}

_GRID_PER_FREQ = 40
_GRID_MAX = 4096
_MAX_FREQS = 1000
_MAX_SEED = 2**32


def default_n_freqs(alpha: float) -> int:
    """The cut-off ``K = min(ceil(1000^(1/alpha)), 1000)``: the first ``k`` with ``k^-alpha <= 1e-3`` (capped)."""
    return int(min(math.ceil(1000.0 ** (1.0 / positive("alpha", alpha)) - 1e-9), _MAX_FREQS))


def _fourier(x: np.ndarray, amp: np.ndarray, freq: np.ndarray, phase: np.ndarray, alpha: float) -> np.ndarray:
    """``g(x)`` of the module docstring for ``U`` functions at ``N`` points.

    Args:
        x: intrinsic coordinates, shape ``(N,)``.
        amp, freq, phase: ``a``, ``nu``, ``phi``, each of shape ``(U, K)``.
        alpha: the amplitude fall-off exponent.

    Returns:
        ``g`` of shape ``(N, U)``.
    """
    out = np.zeros((x.size, amp.shape[0]))
    for k in range(1, amp.shape[1] + 1):
        i = k - 1
        out += amp[:, i] * k**-alpha * np.sin(2.0 * np.pi * (np.outer(x, k * freq[:, i]) + phase[:, i]))
    return out


def _factor_ranges(params: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Minima and maxima of every factor ``g_{u,d}`` of one class on ``[0, 1]``, each ``(U, D)``."""
    n_units, dim, _, n_freqs = params.shape
    grid = np.linspace(0.0, 1.0, min(_GRID_PER_FREQ * n_freqs, _GRID_MAX) + 1)
    lows, highs = np.empty((n_units, dim)), np.empty((n_units, dim))
    for d in range(dim):
        g = _fourier(grid, params[:, d, 0], params[:, d, 1], params[:, d, 2], alpha)
        lows[:, d], highs[:, d] = g.min(axis=0), g.max(axis=0)
    return lows, highs


def _embed(points: np.ndarray, params: np.ndarray, alpha: float) -> np.ndarray:
    """``M_c(x)`` of one class: points ``(N, D)``, params ``(U, D, 3, K)`` -> values ``(N, U)`` in ``[0, 1]``."""
    n_units, dim = params.shape[:2]
    f = np.ones((points.shape[0], n_units))
    for d in range(dim):
        f *= _fourier(points[:, d], params[:, d, 0], params[:, d, 1], params[:, d, 2], alpha)
    lows, highs = _factor_ranges(params, alpha)
    corners = np.ones((1, n_units))
    for d in range(dim):  # all 2^D products of the factors' extremes, shape (2^D, U)
        corners = np.concatenate([corners * lows[:, d], corners * highs[:, d]])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return np.clip((f - lo) / (hi - lo), 0.0, 1.0)


def _seed(name: str, value: int) -> int:
    """``value`` if it is an int in ``[0, 2**32)`` (what ``RandomState`` takes), else ``ValueError``."""
    if non_negative_int(name, value) >= _MAX_SEED:
        raise ValueError(f"{name} must be an int in [0, 2**32), got {value!r}")
    return int(value)


def randman(
    n_classes: int = 10,
    n_units: int = 100,
    dim: int = 1,
    alpha: float = 2.0,
    samples_per_class: int = 100,
    seed: int = 0,
    *,
    sample_seed: int | None = None,
    n_freqs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``n_classes`` random manifolds (module docstring), shuffled.

    Args:
        n_classes: number of classes (manifolds), ``>= 2``.
        n_units: embedding dimension ``U``: input neurons, one spike each.
        dim: intrinsic dimension ``D`` of every manifold, ``>= 1``.
        alpha: amplitude fall-off exponent (``> 0``): larger is smoother.
        samples_per_class: points drawn from each manifold.
        seed: seed of the manifolds, an int in ``[0, 2**32)``.
        sample_seed: seed of the sample points and their order (same range);
            ``None``: the manifolds' stream continues. The same ``seed`` with
            different ``sample_seed`` gives new points of the same manifolds.
        n_freqs: Fourier components per factor, ``K`` (default:
            :func:`default_n_freqs` of ``alpha``).

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(n_classes * samples_per_class,
        n_units)`` with values in ``[0, 1]`` (dimensionless firing times: the
        trainer maps ``v`` to ``t_first + v (t_last - t_first)``), and ``y`` int64
        of shape ``(n_classes * samples_per_class,)``, each class exactly
        ``samples_per_class`` times, in random order.

    Raises:
        ValueError: naming the offending argument.
    """
    n_classes = positive_int("n_classes", n_classes)
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes!r}")
    n_units = positive_int("n_units", n_units)
    dim = positive_int("dim", dim)
    alpha = positive("alpha", alpha)
    samples_per_class = positive_int("samples_per_class", samples_per_class)
    seed = _seed("seed", seed)
    if n_freqs is None:
        n_freqs = default_n_freqs(alpha)
    elif positive_int("n_freqs", n_freqs) > _MAX_FREQS:
        raise ValueError(f"n_freqs must be at most {_MAX_FREQS}, got {n_freqs!r}")

    rng = np.random.RandomState(seed)
    params = rng.random_sample((n_classes, n_units, dim, 3, int(n_freqs)))
    if sample_seed is not None:
        rng = np.random.RandomState(_seed("sample_seed", sample_seed))
    points = rng.random_sample((n_classes, samples_per_class, dim))
    order = rng.permutation(n_classes * samples_per_class)
    values = np.concatenate([_embed(points[c], params[c], alpha) for c in range(n_classes)])
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), samples_per_class)
    return values[order], labels[order]


@lru_cache(maxsize=len(RANDMAN_SPLITS))
def _split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split ``name``, generated once per process (read-only arrays)."""
    per_class, sample_seed = RANDMAN_SPLITS[name]
    config = RANDMAN_CONFIG
    x, y = randman(
        int(config["n_classes"]),
        int(config["n_units"]),
        int(config["dim"]),
        float(config["alpha"]),
        per_class,
        RANDMAN_SEED,
        sample_seed=sample_seed,
    )
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def randman_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The built-in split ``name`` ("train", "validation" or "test").

    All three are points of the same manifolds (:data:`RANDMAN_CONFIG`, manifold seed
    :data:`RANDMAN_SEED`) drawn with their own sample seed (:data:`RANDMAN_SPLITS`).

    Returns:
        ``(X, y)`` as :func:`randman` does, fresh copies.

    Raises:
        ValueError: if ``name`` is not a known split.
    """
    if name not in RANDMAN_SPLITS:
        raise ValueError(f"name must be one of {sorted(RANDMAN_SPLITS)}, got {name!r}")
    x, y = _split(name)
    return x.copy(), y.copy()
