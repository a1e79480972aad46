"""The Randman generator (random manifolds in spike times), its fixed splits and ``train randman``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from eventprop import datasets
from eventprop.cli import main
from eventprop.datasets import RANDMAN_CONFIG, RANDMAN_SEED, RANDMAN_SPLITS, randman, randman_split
from eventprop.datasets.randman import default_n_freqs
from eventprop.training.tasks import TASKS

SMALL = {"n_classes": 3, "n_units": 8, "dim": 1, "alpha": 2.0, "samples_per_class": 40}


def _nearest_labels(queries: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Label of each query's nearest point (Euclidean)."""
    d2 = ((queries[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    return labels[np.argmin(d2, axis=1)]


def test_same_seed_same_arrays_other_seeds_differ() -> None:
    x1, y1 = randman(**SMALL, seed=7)
    x2, y2 = randman(**SMALL, seed=7)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    x3, _ = randman(**SMALL, seed=8)
    x4, _ = randman(**SMALL, seed=7, sample_seed=1)
    assert not np.allclose(x1, x3) and not np.allclose(x1, x4)


def test_shapes_dtypes_ranges_and_balance() -> None:
    x, y = randman(n_classes=4, n_units=6, dim=2, alpha=1.5, samples_per_class=300, seed=3)
    assert x.shape == (1200, 6) and x.dtype == np.float64
    assert y.shape == (1200,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.array_equal(np.bincount(y), [300] * 4)
    assert np.any(np.diff(y) < 0), "samples come shuffled"
    # each coordinate is rescaled by its range over the whole cube: samples come close to both ends
    for c in range(4):
        assert x[y == c].min(axis=0).max() < 0.2 and x[y == c].max(axis=0).min() > 0.8


def test_formula_transcribed_from_the_docstring() -> None:
    """An independent transcription: Fourier products, the range found by brute force on a 2-d grid."""
    seed, sample_seed, alpha, n_freqs = 11, 12, 2.0, 4
    shape = {"n_classes": 2, "n_units": 3, "dim": 2, "alpha": alpha, "samples_per_class": 5}
    x, y = randman(**shape, seed=seed, sample_seed=sample_seed, n_freqs=n_freqs)
    params = np.random.RandomState(seed).random_sample((2, 3, 2, 3, n_freqs))
    rng = np.random.RandomState(sample_seed)
    points = rng.random_sample((2, 5, 2))
    order = rng.permutation(10)

    def f(c: int, u: int, p: np.ndarray) -> np.ndarray:
        out = np.ones(p.shape[:-1])
        for d in range(2):
            a, nu, phi = params[c, u, d]
            out = out * sum(a[k - 1] * k**-alpha * np.sin(2 * np.pi * (k * nu[k - 1] * p[..., d] + phi[k - 1])) for k in range(1, n_freqs + 1))
        return out

    side = np.linspace(0.0, 1.0, 401)
    grid = np.stack(np.meshgrid(side, side, indexing="ij"), axis=-1)
    expected = np.empty((10, 3))
    for c in range(2):
        for u in range(3):
            dense = f(c, u, grid)
            expected[c * 5 : (c + 1) * 5, u] = (f(c, u, points[c]) - dense.min()) / (dense.max() - dense.min())
    np.testing.assert_allclose(x, np.clip(expected[order], 0.0, 1.0), atol=2e-3)
    assert np.array_equal(y, np.repeat([0, 1], 5)[order])


def test_classes_are_distinct_manifolds() -> None:
    """New points of a class lie nearer to its manifold (its other points) than to any other class's."""
    x_a, y_a = randman(**{**SMALL, "samples_per_class": 200}, seed=5, sample_seed=1)
    x_b, y_b = randman(**SMALL, seed=5, sample_seed=2)
    assert np.mean(_nearest_labels(x_b, x_a, y_a) == y_b) > 0.97
    # other manifolds (seed) for the same labels: the nearest-manifold rule is then at chance
    x_c, y_c = randman(**SMALL, seed=6, sample_seed=2)
    assert np.mean(_nearest_labels(x_c, x_a, y_a) == y_c) < 0.7


def test_default_cut_off() -> None:
    assert default_n_freqs(2.0) == 32 and default_n_freqs(1.0) == 1000 and default_n_freqs(3.0) == 10
    assert default_n_freqs(0.5) == 1000  # capped


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 2.5}, "n_classes"),
        ({"n_units": 0}, "n_units"),
        ({"dim": 0}, "dim"),
        ({"dim": True}, "dim"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"samples_per_class": 0}, "samples_per_class"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"sample_seed": -3}, "sample_seed"),
        ({"n_freqs": 0}, "n_freqs"),
        ({"n_freqs": 1001}, "n_freqs"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, object], name: str) -> None:
    args = {**SMALL, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=f"^{name} must"):
        randman(**args)  # type: ignore[arg-type]


def test_fixed_splits() -> None:
    parts = {name: randman_split(name) for name in RANDMAN_SPLITS}
    n_classes, n_units = RANDMAN_CONFIG["n_classes"], RANDMAN_CONFIG["n_units"]
    for name, (per_class, _) in RANDMAN_SPLITS.items():
        x, y = parts[name]
        assert x.shape == (per_class * n_classes, n_units) and np.array_equal(np.bincount(y), [per_class] * n_classes)
    # the same as the generator with the stated arguments
    x, y = randman(**RANDMAN_CONFIG, samples_per_class=RANDMAN_SPLITS["test"][0], seed=RANDMAN_SEED, sample_seed=RANDMAN_SPLITS["test"][1])  # type: ignore[arg-type]
    assert np.array_equal(x, parts["test"][0]) and np.array_equal(y, parts["test"][1])
    # fixed: labels exactly (a permutation from the frozen legacy stream), values to rounding
    digests = {name: hashlib.sha256(parts[name][1].tobytes()).hexdigest()[:16] for name in RANDMAN_SPLITS}
    assert digests == EXPECTED_LABEL_DIGESTS
    for name, rows in EXPECTED_VALUES.items():
        for i, j, value in rows:
            assert parts[name][0][i, j] == pytest.approx(value, rel=1e-9, abs=1e-12)
    # the splits are points of the same manifolds
    (x_train, y_train), (x_val, y_val) = parts["train"], parts["validation"]
    assert np.mean(_nearest_labels(x_val[:200], x_train, y_train) == y_val[:200]) > 0.95
    # fresh copies
    parts["test"][0][0, 0] = -1.0
    assert randman_split("test")[0][0, 0] >= 0.0
    with pytest.raises(ValueError, match="name must be one of"):
        randman_split("dev")


# Obtained from the generator; the labels' SHA-256 (first 16 hex digits) and (row, column, value) entries.
EXPECTED_LABEL_DIGESTS = {"train": "90c8d23f789e3502", "validation": "55bccff95be6f0be", "test": "6c90ba7f624e5f9f"}
EXPECTED_VALUES = {
    "train": [(0, 0, 0.5077553694221107), (1, 7, 0.5516098430047714), (4999, 19, 0.5359475925793784)],
    "validation": [(0, 0, 0.4647872503316706), (1, 7, 0.6449013668286036), (999, 19, 0.6948918008944401)],
    "test": [(0, 0, 0.4532236681900041), (1, 7, 0.5197772797775784), (999, 19, 0.43409772629035714)],
}


def test_exports_and_task() -> None:
    assert {"randman", "randman_split", "RANDMAN_SPLITS", "RANDMAN_CONFIG", "RANDMAN_SEED"} <= set(datasets.__all__)
    task = TASKS["randman"]
    x, y = randman_split("validation")
    assert task.n_features == x.shape[1] and task.n_classes == int(y.max()) + 1
    assert {"best", "recurrent"} <= set(task.presets)
    assert any(task.presets["recurrent"].get("recurrent", (False,)))


@pytest.mark.parametrize("preset", ["best", "recurrent"])
def test_cli_train_randman_one_epoch(tmp_path: Path, preset: str) -> None:
    out = tmp_path / preset
    argv = ["train", "randman", "--preset", preset, "--epochs", "1", "--train-size", "100", "--val-size", "50"]
    assert main([*argv, "--hidden", "16", "--quiet", "--out", str(out)]) == 0
    assert (out / "best.pt").exists() and (out / "summary.json").exists()
