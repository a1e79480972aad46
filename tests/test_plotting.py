"""Plotting helpers render with Agg into pytest's tmp_path; a missing matplotlib gives the install hint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from eventprop.inspection.plotting import new_figure, plot_raster, plot_training_curves, plot_voltage, require_matplotlib  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INF = float("inf")


def _times() -> torch.Tensor:
    return torch.tensor([[[1.0, 2.0, INF], [0.5, INF, INF], [INF, INF, INF]], [[3.0, INF, INF]] * 3])


def test_raster_draws_one_mark_per_spike() -> None:
    fig = new_figure()
    ax = fig.add_subplot()
    assert plot_raster(_times(), sample=0, ax=ax) is ax
    offsets = ax.collections[0].get_offsets()
    assert sorted(map(tuple, offsets.tolist())) == [(0.5, 1.0), (1.0, 0.0), (2.0, 0.0)]
    ax2 = fig.add_subplot()
    plot_raster(_times(), sample=1, ax=ax2)
    assert len(ax2.collections[0].get_offsets()) == 3


def test_voltage_lines_threshold_and_spike_arrows() -> None:
    grid = torch.linspace(0, 10, 11)
    v = torch.rand(2, 3, 11)
    fig = new_figure()
    ax = fig.add_subplot()
    plot_voltage(v, grid, sample=1, neurons=[0, 2], ax=ax, threshold=1.0, spike_times=_times())
    lines = ax.get_lines()
    assert len(lines) == 3  # two neurons + threshold
    assert torch.allclose(torch.tensor(lines[1].get_ydata(), dtype=torch.float32), v[1, 2])
    assert len(ax.texts) == 2  # neurons 0 and 2 of sample 1 spike once each
    with pytest.raises(ValueError, match="grid"):
        plot_voltage(v, torch.linspace(0, 1, 5), ax=ax)


def test_training_curves_written_to_tmp_path(tmp_path: Path) -> None:
    metrics = [
        {"epoch": [1, 2, 3], "val_error": [0.5, 0.2, 0.1], "val_loss": [1.0, 0.6, 0.4]},
        {"epoch": [1, 2, 3], "val_error": [0.4, 0.3, 0.05], "val_loss": [0.9, 0.7, 0.3]},
    ]
    out = plot_training_curves(metrics, tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="val_loss"):
        plot_training_curves([{"val_error": [0.1]}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([], tmp_path / "y.png")


def test_missing_matplotlib_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"pip install eventprop\[plot\]"):
        require_matplotlib()
    with pytest.raises(ImportError, match=r"pip install eventprop\[plot\]"):
        plot_training_curves([{"val_error": [0.1], "val_loss": [1.0]}], tmp_path / "z.png")
    from eventprop.inspection.figure1 import run_figure1

    with pytest.raises(ImportError, match=r"pip install eventprop\[plot\]"):
        run_figure1(tmp_path / "fig")
    assert not (tmp_path / "fig").exists()
