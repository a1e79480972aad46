"""N-MNIST from --data through tonic, on binary files written here in the original format
(5 bytes per event): exact events and labels, the splits, a one-epoch CLI run, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tonic")

from eventprop.cli import main  # noqa: E402
from eventprop.datasets import ToSpikeTimes  # noqa: E402
from eventprop.datasets.nmnist import nmnist_split  # noqa: E402


def _encode(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> bytes:
    """N-MNIST's event format: x, y, then bit 7 polarity and a 23-bit time (microseconds), big-endian."""
    raw = np.zeros((x.size, 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 127)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    return raw.tobytes()


def _write(folder: Path, per_digit: int, seed: int) -> dict[Path, tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    written = {}
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for k in range(per_digit):
            n = int(rng.integers(20, 60))
            events = (rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 2, n))
            path = folder / str(digit) / f"{k:05d}.bin"
            path.write_bytes(_encode(*events))
            written[path] = events
    return written


@pytest.fixture()
def nmnist(tmp_path: Path) -> tuple[Path, dict, dict]:
    train = _write(tmp_path / "NMNIST" / "Train", 3, 0)
    test = _write(tmp_path / "NMNIST" / "Test", 1, 1)
    return tmp_path, train, test


def test_events_labels_and_splits(nmnist: tuple[Path, dict, dict]) -> None:
    folder, train, test = nmnist
    to_times = ToSpikeTimes((34, 34, 2), t_stop=300_000)
    dataset, labels = nmnist_split(folder, "test", transform=to_times)
    assert labels.tolist() == list(range(10))
    for k, (path, (x, y, t, p)) in enumerate(sorted(test.items())):
        times, label = dataset[k]
        assert label == int(path.parent.name) and times.shape[0] == 2312
        channels = np.nonzero(np.isfinite(times.numpy()))[0]
        got = sorted(zip(channels.tolist(), np.round(times.numpy()[np.isfinite(times.numpy())] * 1000).astype(int).tolist()))
        assert got == sorted(zip(((p * 34 + y) * 34 + x).tolist(), t.tolist()))
    train_set, train_labels = nmnist_split(folder, "train")
    val_set, val_labels = nmnist_split(folder, "validation")
    assert len(train_set) + len(val_set) == 30 and len(val_set) == 5
    assert sorted(train_labels.tolist() + val_labels.tolist()) == sorted([d for d in range(10) for _ in range(3)])


def test_cli_one_epoch(nmnist: tuple[Path, dict, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _, _ = nmnist
    out = tmp_path / "run"
    assert main(["train", "nmnist", "--data", str(folder), "--epochs", "1", "--hidden", "8", "--batch-size", "8", "--quiet", "--out", str(out)]) == 0
    assert "nmnist (best preset, voltage readout)" in capsys.readouterr().out
    assert main(["evaluate", str(out / "best.pt"), "--split", "test"]) == 0
    assert "on 10 points of the test split (nmnist" in capsys.readouterr().out


def test_bad_files(nmnist: tuple[Path, dict, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, train, _ = nmnist
    base = ["train", "nmnist", "--epochs", "1", "--hidden", "4", "--quiet"]
    assert main([*base, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")]) == 2
    assert f"--data: folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty" / "NMNIST" / "Train").mkdir(parents=True)
    assert main([*base, "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "b")]) == 2
    assert "holds no N-MNIST files (<digit>/*.bin)" in capsys.readouterr().err
    path = sorted(train)[0]
    path.write_bytes(path.read_bytes()[:-2])
    assert main([*base, "--data", str(folder), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--data: {path} is not an N-MNIST event file" in err and "\n" not in err
