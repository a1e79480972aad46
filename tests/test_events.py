"""Event data into the data contract: channel layout, exact round trips, crops, collate,
DataLoader workers, augmentations, and tonic's SHD reader on a file written here in the
original HDF5 layout (nothing downloads)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eventprop import validate_spike_times
from eventprop.datasets import ChannelShift, ClassBlend, ToSpikeTimes, channel_count, collate, event_channels, events_to_spike_times

EVENT = [("t", "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")]


def _random_events(n: int, sensor: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT)
    events["t"] = np.sort(rng.integers(0, 300_000, n))
    events["t"][5:9] = events["t"][4]  # coincident events
    events["x"], events["y"], events["p"] = (rng.integers(0, s, n) for s in sensor)
    events["x"][5:9] = events["x"][4]
    events["y"][5:9], events["p"][5:9] = events["y"][4], events["p"][4]
    return events


def _as_events(times: torch.Tensor, sensor: tuple[int, int, int]) -> list[tuple[float, int, int, int]]:
    w, h, _ = sensor
    out = []
    for channel, t in zip(*np.nonzero(np.isfinite(times.numpy()))):
        p, rest = divmod(int(channel), w * h)
        y, x = divmod(rest, w)
        out.append((float(times[channel, t]), x, y, p))
    return sorted(out)


def test_exact_round_trip_and_channel_layout() -> None:
    sensor = (5, 4, 2)
    events = _random_events(400, sensor)
    times = events_to_spike_times(events, sensor, dtype=torch.float64)
    assert times.shape[0] == channel_count(sensor) == 40
    validate_spike_times(times[None])
    want = sorted((float(e["t"]) * 1e-3, int(e["x"]), int(e["y"]), int(e["p"])) for e in events)
    assert _as_events(times, sensor) == want  # every event, at t * 1e-3 ms exactly as float64 computes it
    # channel-major: the spike counts per channel are torch.flatten of the (P, H, W) histogram
    counts = np.zeros(sensor[::-1], dtype=np.int64)
    np.add.at(counts, (events["p"], events["y"], events["x"]), 1)
    assert torch.equal(torch.isfinite(times).sum(dim=1), torch.flatten(torch.from_numpy(counts)))
    assert np.array_equal(event_channels(events, sensor), (events["p"] * 4 + events["y"]) * 5 + events["x"])


def test_audio_layout_crop_and_scale() -> None:
    """SHD-style events (x only; tonic's p = 1 on a one-polarity sensor), a crop and a time scale."""
    events = np.array([(100, 3, 1), (2500, 3, 1), (900, 0, 1), (4000, 1, 1)], dtype=[("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
    times = events_to_spike_times(events, (700, 1, 1), t_start=200, t_stop=4000, time_scale=2.0, dtype=torch.float64)
    assert times.shape == (700, 1)
    assert times[0, 0] == pytest.approx(1.4) and times[3, 0] == pytest.approx(4.6)
    assert torch.isinf(times[1]).all() and int(torch.isfinite(times).sum()) == 2  # 100 us and 4000 us are cropped
    empty = events_to_spike_times(events[:0], (10,))
    assert empty.shape == (10, 1) and torch.isinf(empty).all() and empty.dtype == torch.float32


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda e: events_to_spike_times(e[["t", "y"]], (5, 4, 2)), r"fields 't' \(microseconds\) and 'x'"),
        (lambda e: events_to_spike_times(np.zeros(3), (5, 4, 2)), "structured array"),
        (lambda e: events_to_spike_times(e, (4, 4, 2)), "field 'x' must lie in 0..3"),
        (lambda e: events_to_spike_times(e, (5, 4, 1, 1)), "sensor_size must be"),
        (lambda e: events_to_spike_times(e, (5, 0, 2)), "sensor_size must be"),
        (lambda e: events_to_spike_times(e, (5, 4, 2), t_start=10, t_stop=10), "t_stop must exceed t_start"),
        (lambda e: events_to_spike_times(e, (5, 4, 2), time_scale=0.0), "time_scale"),
        (lambda e: events_to_spike_times(e, (5, 4, 2), t_start=-1.0), "t_start"),
        (lambda e: events_to_spike_times(e, (5, 4, 2), dtype=torch.int64), "dtype must be a floating"),
    ],
)
def test_bad_events_are_value_errors(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        call(_random_events(20, (5, 4, 2)))


def test_non_finite_times_are_value_errors() -> None:
    events = np.array([(0.5, 1), (math.nan, 2)], dtype=[("t", "<f8"), ("x", "<i8")])
    with pytest.raises(ValueError, match="non-finite times"):
        events_to_spike_times(events, (3,))


def test_collate_pads_with_inf() -> None:
    a, b = torch.tensor([[1.0, 2.0], [3.0, math.inf]]), torch.tensor([[0.5], [0.25]])
    times, labels = collate([(a, 1), (b, np.int64(0))])
    assert times.shape == (2, 2, 2) and labels.tolist() == [1, 0] and labels.dtype == torch.long
    assert torch.equal(times[0], a) and torch.equal(times[1], torch.tensor([[0.5, math.inf], [0.25, math.inf]]))
    with pytest.raises(ValueError, match="one shape\\[0\\] and dtype"):
        collate([(a, 0), (torch.zeros(3, 1), 1)])
    with pytest.raises(ValueError, match="empty"):
        collate([])


class _EventList(torch.utils.data.Dataset):
    """Event arrays and labels, as a tonic dataset returns them."""

    def __init__(self, n: int, sensor: tuple[int, int, int], transform: object = None) -> None:
        self.items = [(_random_events(50 + 7 * k, sensor, seed=k), k % 3) for k in range(n)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[object, int]:
        events, label = self.items[k]
        return (self.transform(events) if self.transform else events), label


def test_dataloader_workers_give_the_batches_of_one_process() -> None:
    sensor = (5, 4, 2)
    data = _EventList(12, sensor, ToSpikeTimes(sensor, t_stop=250_000))
    serial = list(torch.utils.data.DataLoader(data, batch_size=5, collate_fn=collate))
    loader = torch.utils.data.DataLoader(data, batch_size=5, collate_fn=collate, num_workers=2, multiprocessing_context="fork")
    for (t1, y1), (t2, y2) in zip(serial, loader, strict=True):
        assert torch.equal(t1, t2) and torch.equal(y1, y2)
        validate_spike_times(t1, channel_count(sensor))


def test_channel_shift() -> None:
    events = np.array([(10, 0, 0), (20, 5, 0), (30, 9, 0)], dtype=[("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
    shift = ChannelShift(3, (10, 1, 1), seed=1)
    seen = set()
    for _ in range(50):
        moved = shift(events)
        offsets = {int(m["x"] - e["x"]) for m in moved for e in events if m["t"] == e["t"]}
        assert len(offsets) == 1 and abs(offsets.pop()) <= 3  # one shift for the whole sample
        assert ((moved["x"] >= 0) & (moved["x"] < 10)).all() and len(moved) >= 1
        seen.add(int(moved["x"][moved["t"] == 20][0]) - 5)
    assert seen == set(range(-3, 4))
    assert np.array_equal(ChannelShift(0, (10,))(events), events)
    with pytest.raises(ValueError, match="max_shift"):
        ChannelShift(-1, (10,))


def test_class_blend() -> None:
    sensor = (20, 1, 1)
    rng = np.random.default_rng(0)

    def sample(centre: int, t0: int) -> np.ndarray:
        ev = np.zeros(200, dtype=[("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
        ev["t"] = np.sort(t0 + rng.integers(0, 1000, 200))
        ev["x"] = np.clip(centre + rng.integers(-2, 3, 200), 0, 19)
        return ev

    base = [(sample(5, 0), 0), (sample(12, 50_000), 0), (sample(15, 0), 1)]
    blended = ClassBlend(base, [0, 0, 1], sensor, probability=1.0, seed=0)
    events, label = blended[0]
    assert label == 0 and np.all(np.diff(events["t"]) >= 0)
    assert 100 < len(events) < 300  # about half of the pair's 400 events
    assert abs(events["x"].mean() - 5) < 1.0 and events["t"].max() < 2000  # aligned on sample 0's means
    assert len(ClassBlend(base, [0, 0, 1], sensor, probability=0.0)[2][0]) == 200  # untouched
    with pytest.raises(ValueError, match="one entry per item"):
        ClassBlend(base, [0, 1], sensor)
    with pytest.raises(ValueError, match="probability"):
        ClassBlend(base, [0, 0, 1], sensor, probability=2.0)


def _write_shd(folder: Path, split: str, samples: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
    """An SHD file in the original layout (Cramer et al. 2020): spikes/times (float16, s) and
    spikes/units (uint16) as variable-length rows, labels (uint16), extra/speaker, extra/keys;
    with tonic's folder layout (``SHD/shd_<split>.h5`` beside its archive)."""
    h5py = pytest.importorskip("h5py")
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / f"shd_{split}.h5", "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for k, (t, u, _) in enumerate(samples):
            times[k], units[k] = t, u
        f["labels"] = np.array([label for *_, label in samples], dtype=np.uint16)
        f["extra/speaker"] = np.arange(len(samples), dtype=np.uint16) % 3
        f["extra/keys"] = np.array([f"digit-{k}".encode() for k in range(20)])
    (folder / f"shd_{split}.h5.zip").write_bytes(b"")  # tonic checks that the archive is present, not its hash


def test_tonic_shd_reader(tmp_path: Path) -> None:
    tonic = pytest.importorskip("tonic")
    rng = np.random.default_rng(3)
    samples = []
    for k in range(4):
        n = 300 + 50 * k
        samples.append((np.sort(rng.uniform(0, 1.0, n)).astype(np.float16), rng.integers(0, 700, n).astype(np.uint16), (5 * k) % 20))
    _write_shd(tmp_path / "SHD", "train", samples)
    data = tonic.datasets.SHD(str(tmp_path), train=True, transform=ToSpikeTimes(tonic.datasets.SHD.sensor_size, dtype=torch.float64))
    times, labels = collate([data[k] for k in range(len(data))])
    assert labels.tolist() == [label for *_, label in samples] and times.shape[:2] == (4, 700)
    validate_spike_times(times, 700)
    for k, (t, u, _) in enumerate(samples):
        got = sorted((float(times[k, c, j]), int(c)) for c, j in zip(*np.nonzero(np.isfinite(times[k].numpy()))))
        # tonic turns seconds into integer microseconds: a spike at t s is at floor(t * 1e6) * 1e-3 ms
        want = sorted((float(np.floor(np.float64(ti) * 1e6)) * 1e-3, int(ui)) for ti, ui in zip(t, u))
        assert [c for _, c in got] == [c for _, c in want]
        assert np.allclose([t for t, _ in got], [t for t, _ in want], rtol=0, atol=1e-9)
