"""MNIST from IDX files written here as distributed (gzipped or not, flat or torchvision's
folder): exact round trip, the splits, a one-epoch CLI run, bad files as one-line errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error

from eventprop.cli import main
from eventprop.datasets import mnist_split, read_idx


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train: int = 60, n_test: int = 12, *, gz: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)) * (rng.random((n_train, 28, 28)) < 0.2),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)) * (rng.random((n_test, 28, 28)) < 0.2),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = _idx(array)
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize("layout", ["flat", "gzip", "torchvision"])
def test_round_trip_and_splits(tmp_path: Path, layout: str) -> None:
    where = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    arrays = _write_mnist(where, gz=layout != "flat")
    images, labels = arrays["train-images-idx3-ubyte"].reshape(60, 784), arrays["train-labels-idx1-ubyte"]
    x, y = mnist_split(tmp_path, "train")
    assert x.dtype == np.uint8 and np.array_equal(x, images[:50]) and np.array_equal(y, labels[:50])
    x, y = mnist_split(tmp_path, "validation")
    assert np.array_equal(x, images[50:]) and np.array_equal(y, labels[50:])  # the last sixth
    x, y = mnist_split(tmp_path, "test")
    assert np.array_equal(x, arrays["t10k-images-idx3-ubyte"].reshape(12, 784)) and np.array_equal(y, arrays["t10k-labels-idx1-ubyte"])


def test_cli_one_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_mnist(tmp_path / "data", gz=True)
    out = tmp_path / "run"
    assert main(["train", "mnist", "--data", str(tmp_path / "data"), "--epochs", "1", "--hidden", "20", "--quiet", "--out", str(out)]) == 0
    assert "mnist (best preset, voltage readout)" in capsys.readouterr().out
    assert main(["evaluate", str(out / "best.pt"), "--split", "test"]) == 0
    assert "on 12 points of the test split (mnist" in capsys.readouterr().out


def _one_line(capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert_one_line_error(capsys.readouterr().err, message)


def test_bad_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "mnist", "--epochs", "1", "--hidden", "4", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "o0")]) == 2
    _one_line(capsys, "--data: data must name the folder of the mnist task's files")
    assert main([*base, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o1")]) == 2
    _one_line(capsys, f"--data: folder {tmp_path / 'nowhere'} does not exist")
    data = tmp_path / "data"
    _write_mnist(data)
    (data / "train-labels-idx1-ubyte").unlink()
    assert main([*base, "--data", str(data), "--out", str(tmp_path / "o2")]) == 2
    _one_line(capsys, f"--data: {data} holds no train-labels-idx1-ubyte[.gz]")
    cases = {
        "truncated": (lambda raw: raw[:-100], "holds 46940 data bytes, its header (60, 28, 28) says 47040"),
        "foreign": (lambda raw: b"PK\x03\x04" + raw[4:], "is not an unsigned-byte IDX file"),
    }
    for label, (corrupt, message) in cases.items():
        folder = tmp_path / label
        _write_mnist(folder)
        path = folder / "train-images-idx3-ubyte"
        path.write_bytes(corrupt(path.read_bytes()))
        assert main([*base, "--data", str(folder), "--out", str(tmp_path / f"o-{label}")]) == 2
        _one_line(capsys, f"--data: {path} {message}")
    folder = tmp_path / "labels"
    _write_mnist(folder)
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx(np.full(60, 12)))
    assert main([*base, "--data", str(folder), "--out", str(tmp_path / "o-labels")]) == 2
    _one_line(capsys, f"--data: {folder / 'train-labels-idx1-ubyte'}: labels must lie in 0..9, got up to 12")
    folder = tmp_path / "count"
    _write_mnist(folder)
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(59)))
    assert main([*base, "--data", str(folder), "--out", str(tmp_path / "o-count")]) == 2
    _one_line(capsys, "labels for the 60 images of")
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")
