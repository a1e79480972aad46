"""Tests of the Yin-Yang generator against the published splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eventprop.datasets import YINYANG_SPLITS, yinyang, yinyang_split

EXPECTED_COUNTS = {
    "train": [1681, 1702, 1617],
    "validation": [316, 336, 348],
    "test": [350, 316, 334],
}

# (index, x, y, label) obtained from the generator and cross-checked against the
# independent transcription below and the published class counts.
EXPECTED_POINTS = {
    "train": [
        (0, 0.6803075385877797, 0.450499251969543, 2),
        (1, 0.09767211400638387, 0.6842330265121569, 1),
        (2, 0.7553614103176525, 0.4251558744912447, 2),
        (4999, 0.7690797231107925, 0.5883389337522971, 2),
    ],
    "validation": [
        (0, 0.6805727261759029, 0.3209733938933629, 0),
        (1, 0.6685157172603458, 0.9174478488708967, 1),
        (2, 0.8019778902252007, 0.17902872922296542, 0),
        (999, 0.7107040957004825, 0.804733352731108, 1),
    ],
    "test": [
        (0, 0.23409664559563403, 0.4017249751828972, 2),
        (1, 0.7513290219574494, 0.4682425192680968, 2),
        (2, 0.13832530718825586, 0.570953971325061, 1),
        (999, 0.32834060537145815, 0.3899830419619741, 1),
    ],
}


def _reference(size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5):
    """Independent, literal transcription of the original draw loop."""
    rng = np.random.RandomState(seed)
    rows, labels = [], []
    for _ in range(size):
        goal = rng.randint(3)
        while True:
            pair = rng.rand(2) * 2.0 * r_big
            px, py = pair[0], pair[1]
            if math.hypot(px - r_big, py - r_big) > r_big:
                continue
            dr = math.hypot(px - 1.5 * r_big, py - r_big)
            dl = math.hypot(px - 0.5 * r_big, py - r_big)
            yin_predicate = (
                dr <= r_small
                or (dl > r_small and dl <= 0.5 * r_big)
                or (py > r_big and dr > 0.5 * r_big)
            )
            c = 2 if (dr < r_small or dl < r_small) else int(yin_predicate)
            if c == goal:
                break
        rows.append([px, py, 1.0 - px, 1.0 - py])
        labels.append(c)
    return np.array(rows), np.array(labels)


@pytest.fixture(scope="module", params=sorted(YINYANG_SPLITS))
def split(request):
    name = request.param
    X, y = yinyang_split(name)
    return name, X, y


def test_split_table() -> None:
    assert YINYANG_SPLITS == {
        "train": (5000, 42),
        "validation": (1000, 41),
        "test": (1000, 40),
    }


def test_shapes_and_dtypes(split) -> None:
    name, X, y = split
    size = YINYANG_SPLITS[name][0]
    assert X.shape == (size, 4) and X.dtype == np.float64
    assert y.shape == (size,) and y.dtype == np.int64


def test_class_counts(split) -> None:
    name, _, y = split
    assert np.bincount(y, minlength=3).tolist() == EXPECTED_COUNTS[name]


def test_exact_points(split) -> None:
    name, X, y = split
    for i, px, py, label in EXPECTED_POINTS[name]:
        assert X[i, 0] == px and X[i, 1] == py
        assert y[i] == label


def test_matches_independent_transcription(split) -> None:
    name, X, y = split
    X_ref, y_ref = _reference(*YINYANG_SPLITS[name])
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-15)


def test_features_and_labels(split) -> None:
    _, X, y = split
    np.testing.assert_allclose(X[:, 0] + X[:, 2], 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(X[:, 1] + X[:, 3], 1.0, rtol=0, atol=1e-15)
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert set(np.unique(y).tolist()) == {0, 1, 2}
    # every point lies inside the big disc
    assert np.all(np.hypot(X[:, 0] - 0.5, X[:, 1] - 0.5) <= 0.5)


def test_dot_geometry(split) -> None:
    _, X, y = split
    d_left = np.hypot(X[:, 0] - 0.25, X[:, 1] - 0.5)
    d_right = np.hypot(X[:, 0] - 0.75, X[:, 1] - 0.5)
    in_dot = (d_left < 0.1) | (d_right < 0.1)
    np.testing.assert_array_equal(in_dot, y == 2)


def test_determinism_and_seed_dependence() -> None:
    X1, y1 = yinyang(200, 7)
    X2, y2 = yinyang(200, 7)
    X3, _ = yinyang(200, 8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


def test_prefix_property() -> None:
    # the draw order is sequential, so a smaller set is a prefix of a larger one
    X_small, y_small = yinyang(10, 42)
    X_train, y_train = yinyang_split("train")
    np.testing.assert_array_equal(X_small, X_train[:10])
    np.testing.assert_array_equal(y_small, y_train[:10])


def test_custom_radii_match_reference() -> None:
    X, y = yinyang(300, 3, r_small=0.05, r_big=0.4)
    X_ref, y_ref = _reference(300, 3, r_small=0.05, r_big=0.4)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-15)
    assert X[:, :2].max() < 0.8


@pytest.mark.parametrize(
    ("kwargs", "argname"),
    [
        ({"size": 0, "seed": 1}, "size"),
        ({"size": -3, "seed": 1}, "size"),
        ({"size": 2.0, "seed": 1}, "size"),
        ({"size": True, "seed": 1}, "size"),
        ({"size": 5, "seed": -1}, "seed"),
        ({"size": 5, "seed": 1.5}, "seed"),
        ({"size": 5, "seed": 2**32}, "seed"),
        ({"size": 5, "seed": 1, "r_small": 0.0}, "r_small"),
        ({"size": 5, "seed": 1, "r_small": float("nan")}, "r_small"),
        ({"size": 5, "seed": 1, "r_big": -0.5}, "r_big"),
        ({"size": 5, "seed": 1, "r_big": 0.6}, "r_big"),
        ({"size": 5, "seed": 1, "r_small": 0.3, "r_big": 0.5}, "r_small"),
    ],
)
def test_argument_validation(kwargs: dict, argname: str) -> None:
    with pytest.raises(ValueError, match=argname):
        yinyang(**kwargs)


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="name"):
        yinyang_split("training")
