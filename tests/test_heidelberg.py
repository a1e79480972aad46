"""SHD and SSC from --data through tonic: splits (SHD's speaker-wise validation), exact
spike times and labels, a one-epoch CLI run with evaluation, and bad data as one-line
errors naming the file. The files are written here in the original HDF5 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tonic")
pytest.importorskip("h5py")

from helpers import assert_one_line_error, heidelberg_samples, write_heidelberg  # noqa: E402

from eventprop.cli import main  # noqa: E402
from eventprop.datasets import ToSpikeTimes, collate  # noqa: E402
from eventprop.datasets.heidelberg import SHD_VALIDATION_SPEAKER, heidelberg_split  # noqa: E402


@pytest.fixture()
def shd(tmp_path: Path) -> tuple[Path, list, list]:
    train, test = heidelberg_samples(12, 0), heidelberg_samples(6, 1)
    write_heidelberg(tmp_path / "SHD", "shd_train.h5", train)
    write_heidelberg(tmp_path / "SHD", "shd_test.h5", test)
    return tmp_path, train, test


def _spikes(sample: tuple) -> list[tuple[float, int]]:
    """A sample's spikes as tonic delivers them: float16 seconds to integer microseconds, then ms, cropped at 1 s."""
    t, u, *_ = sample
    us = np.floor(np.asarray(t, dtype=np.float16).astype(np.float64) * 1e6)
    return sorted((float(x) * 1e-3, int(c)) for x, c in zip(us, u) if x < 1e6)


def _as_list(times: torch.Tensor) -> list[tuple[float, int]]:
    return sorted((float(times[c, j]), int(c)) for c, j in zip(*np.nonzero(np.isfinite(times.numpy()))))


def test_splits_spikes_and_labels(shd: tuple[Path, list, list]) -> None:
    folder, train, test = shd
    to_times = ToSpikeTimes((700, 1, 1), t_stop=1_000_000, dtype=torch.float64)
    parts = {name: heidelberg_split("shd", folder, name, transform=to_times) for name in ("train", "validation", "test")}
    expected = {
        "train": [s for s in train if s[3] != SHD_VALIDATION_SPEAKER],
        "validation": [s for s in train if s[3] == SHD_VALIDATION_SPEAKER],
        "test": test,
    }
    for name, (dataset, labels) in parts.items():
        assert labels.tolist() == [s[2] for s in expected[name]] and len(dataset) == len(expected[name])
        for k, sample in enumerate(expected[name]):
            times, label = dataset[k]
            assert int(label) == sample[2] and times.shape[0] == 700
            got, want = _as_list(times), _spikes(sample)
            assert [c for _, c in got] == [c for _, c in want]
            assert np.allclose([t for t, _ in got], [t for t, _ in want], rtol=0, atol=1e-9)
    batch, labels = collate([parts["test"][0][k] for k in range(3)])
    assert batch.shape[:2] == (3, 700) and labels.tolist() == [s[2] for s in test[:3]]


def test_ssc_has_its_own_validation_file(tmp_path: Path) -> None:
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        write_heidelberg(tmp_path / "SSC", f"ssc_{split}.h5", heidelberg_samples(4, seed, classes=35), classes=35)
    dataset, labels = heidelberg_split("ssc", tmp_path, "validation")
    assert len(dataset) == 4 and labels.tolist() == [s[2] for s in heidelberg_samples(4, 1, classes=35)]


def test_cli_one_epoch_and_evaluate(shd: tuple[Path, list, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _, test = shd
    out = tmp_path / "run"
    argv = ["train", "shd", "--data", str(folder), "--epochs", "1", "--hidden", "16", "--batch-size", "4", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(out / "best.pt"), "--split", "test", "--predictions", str(tmp_path / "p.csv")]) == 0
    assert f"on {len(test)} points of the test split (shd" in capsys.readouterr().out
    assert len((tmp_path / "p.csv").read_text().splitlines()) == len(test) + 1


def _one_line(capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert_one_line_error(capsys.readouterr().err, message)


def test_bad_data_is_one_line_error(shd: tuple[Path, list, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, train, _ = shd
    base = ["train", "shd", "--epochs", "1", "--hidden", "4", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    _one_line(capsys, "--data: data must name the folder of the shd task's files")
    assert main([*base, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    _one_line(capsys, f"--data: folder {tmp_path / 'nowhere'} does not exist")
    empty = tmp_path / "empty"
    (empty / "SHD").mkdir(parents=True)
    assert main([*base, "--data", str(empty), "--out", str(tmp_path / "c")]) == 2
    _one_line(capsys, f"--data: {empty / 'SHD' / 'shd_train.h5'} is missing")
    truncated = tmp_path / "truncated"
    (truncated / "SHD").mkdir(parents=True)
    good = (folder / "SHD" / "shd_train.h5").read_bytes()
    (truncated / "SHD" / "shd_train.h5").write_bytes(good[: len(good) // 2])
    assert main([*base, "--data", str(truncated), "--out", str(tmp_path / "d")]) == 2
    _one_line(capsys, f"--data: {truncated / 'SHD' / 'shd_train.h5'} is not a readable SHD/SSC file")
    labels = tmp_path / "labels"
    write_heidelberg(labels / "SHD", "shd_train.h5", [(*s[:2], 25, s[3]) for s in train])
    assert main([*base, "--data", str(labels), "--out", str(tmp_path / "e")]) == 2
    _one_line(capsys, f"--data: {labels / 'SHD' / 'shd_train.h5'}: labels must lie in 0..19, got 25..25")
    with pytest.raises(SystemExit) as exit_:  # an event task's flag only
        main(["train", "yinyang", "--download"])
    assert exit_.value.code == 2 and "unrecognized arguments: --download" in capsys.readouterr().err
