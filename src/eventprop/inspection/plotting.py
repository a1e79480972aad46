"""Plotting helpers (optional dependency: ``pip install eventprop[plot]``).

matplotlib is imported lazily, inside the functions, so ``import eventprop`` never
needs it; a missing installation raises :class:`ImportError` with the install hint.

Functions that take an ``ax`` draw into it; with ``ax=None`` they create a figure with
``matplotlib.pyplot`` (the user's backend). Functions that write a file build a
standalone :class:`matplotlib.figure.Figure` rendered by the Agg canvas: no pyplot,
no global backend change, no window.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["require_matplotlib", "new_figure", "plot_raster", "plot_voltage", "plot_training_curves"]

_HINT = "plotting needs matplotlib: pip install eventprop[plot]  (or: pip install matplotlib)"


def require_matplotlib() -> Any:
    """Import and return the ``matplotlib`` module, or raise ``ImportError`` with the install hint."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(_HINT) from err
    return matplotlib


def new_figure(**kwargs: Any) -> Figure:
    """A standalone Agg-rendered :class:`~matplotlib.figure.Figure` (no pyplot state).

    Keyword arguments go to ``Figure`` (``figsize``, ``layout``, ...).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _axes(ax: Axes | None) -> Axes:
    require_matplotlib()
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new_ax = plt.subplots()
    return new_ax


def _finite_rows(times: Tensor, sample: int) -> list[list[float]]:
    if times.dim() != 3:
        raise ValueError(f"times must have shape (batch, neurons, max_spikes), got {tuple(times.shape)}")
    rows = times.detach()[sample].to(torch.float64).cpu()
    return [[float(t) for t in row[torch.isfinite(row)].tolist()] for row in rows]


def plot_raster(
    times: Tensor,
    sample: int = 0,
    ax: Axes | None = None,
    *,
    color: str = "k",
    marker_size: float = 4.0,
    label: str | None = None,
) -> Axes:
    """Raster plot of one sample's spike trains: a dot per spike, one row per neuron.

    Args:
        times: ``(batch, neurons, max_spikes)`` spike times (``+inf`` padded).
        sample: which batch element to draw.
        ax: axes to draw into (a new figure when ``None``).

    Returns:
        The axes (x: time, y: neuron index).
    """
    rows = _finite_rows(times, sample)
    ax = _axes(ax)
    xs = [t for row in rows for t in row]
    ys = [n for n, row in enumerate(rows) for _ in row]
    ax.scatter(xs, ys, s=marker_size, c=color, marker="|" if marker_size > 6 else ".", linewidths=0.8, label=label)
    ax.set_xlabel("time")
    ax.set_ylabel("neuron")
    ax.set_ylim(-0.5, max(len(rows) - 0.5, 0.5))
    return ax


def plot_voltage(
    V: Tensor,
    grid: Tensor | Sequence[float],
    sample: int = 0,
    neurons: Sequence[int] | None = None,
    ax: Axes | None = None,
    *,
    threshold: float | None = None,
    spike_times: Tensor | None = None,
    color: str | None = None,
    label: str | None = None,
) -> Axes:
    """Membrane potential traces ``V(t)`` (e.g. from :func:`eventprop.inspection.traces.voltage_traces`).

    Args:
        V: ``(batch, neurons, G)`` values on ``grid`` (or ``(neurons, G)``, ``(G,)``).
        grid: ``(G,)`` times.
        sample: batch element; neurons: which neurons (default: all).
        threshold: draw a dashed line at ``theta``.
        spike_times: ``(batch, neurons, K)`` output spikes: marked by arrows above the
            threshold line (or above the trace's maximum).

    Returns:
        The axes.
    """
    v = V.detach().to(torch.float64).cpu()
    if v.dim() == 1:
        v = v[None, None]
    elif v.dim() == 2:
        v = v[None]
    g = torch.as_tensor(grid, dtype=torch.float64).cpu()
    if v.shape[-1] != g.shape[0]:
        raise ValueError(f"V has {v.shape[-1]} grid points, grid has {g.shape[0]}")
    chosen = list(range(v.shape[1])) if neurons is None else list(neurons)
    ax = _axes(ax)
    for n in chosen:
        ax.plot(g.numpy(), v[sample if V.dim() == 3 else 0, n].numpy(), color=color, lw=1.0, label=label)
    top = float(v.max()) if v.numel() else 1.0
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=0.8)
        top = max(top, threshold)
    if spike_times is not None:
        rows = _finite_rows(spike_times, sample)
        for n in chosen:
            for t in rows[n]:
                ax.annotate(
                    "", xy=(t, top * 1.02), xytext=(t, top * 1.25),
                    arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.0},
                )
        ax.set_ylim(top=top * 1.3 if top > 0 else 1.0)
    ax.set_xlabel("time")
    ax.set_ylabel("V")
    return ax


def _two_and_five(value: float, _pos: int) -> str:
    """Minor tick labels of a log axis: only the 2s and 5s of each decade."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if leading in (2.0, 5.0) else ""


def plot_training_curves(
    metrics_per_seed: list[dict[str, list[float]]],
    path: str | os.PathLike[str],
    *,
    keys: Sequence[str] = ("val_error", "val_loss"),
    labels: Sequence[str] = ("validation error", "validation loss"),
    title: str | None = None,
    best_epoch: int | None = None,
) -> Path:
    """Per-epoch curves of one or several seeds, like the paper's Figure 3 C-D; saved to ``path``.

    One panel per key. Several seeds: each seed's curve thin grey, the mean over seeds
    bold (over the epochs all seeds have), labelled "mean of N seeds". One seed: its
    curve bold, with a marker per epoch when there are at most 30. The x axis is
    ``metrics["epoch"]`` when present, else ``1, 2, ...``, with integer ticks (a single
    epoch is one centred point). ``val_error`` is drawn in percent when all its values
    are in ``[0, 1]``, on a log axis labelled with plain numbers (``0.5, 1, 2, 5``)
    when all values are positive.

    Args:
        metrics_per_seed: one dict per seed, ``{key: values per epoch}``.
        path: output image file (format from the suffix, e.g. ``.png``, ``.pdf``).
        keys: metrics to draw (each must be present in every dict).
        labels: y-axis labels of the panels.
        title: figure title (none by default).
        best_epoch: an epoch to mark in every panel with a dashed line ("best
            validation, epoch k"), e.g. the epoch whose model was kept.

    Returns:
        The path written.
    """
    require_matplotlib()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if not metrics_per_seed:
        raise ValueError("metrics_per_seed is empty")
    for key in keys:
        for i, m in enumerate(metrics_per_seed):
            if key not in m:
                raise ValueError(f"seed {i} has no metric {key!r} (has {sorted(m)})")
    fig = new_figure(figsize=(4.0 * len(keys), 3.2), layout="constrained")
    if title:
        fig.suptitle(title, fontsize="medium")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    single = len(metrics_per_seed) == 1
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    for ax, key, label in zip(axes, keys, list(labels) + list(keys[len(labels):])):
        curves = [list(map(float, m[key])) for m in metrics_per_seed]
        flat = [x for c in curves for x in c if math.isfinite(x)]
        scale = 100.0 if key.endswith("error") and flat and min(flat) >= 0 and max(flat) <= 1 else 1.0
        epochs = [list(m.get("epoch", range(1, len(c) + 1)))[: len(c)] for m, c in zip(metrics_per_seed, curves)]
        if single:
            marker = "o" if len(curves[0]) <= 30 else None
            ax.plot(epochs[0], [scale * y for y in curves[0]], color="k", lw=1.5, marker=marker, ms=3)
        else:
            for x, c in zip(epochs, curves):
                ax.plot(x, [scale * y for y in c], color="0.7", lw=0.8)
            common = min(len(c) for c in curves)
            if common:
                mean = [scale * sum(c[e] for c in curves) / len(curves) for e in range(common)]
                ax.plot(epochs[0][:common], mean, color="k", lw=2.0, label=f"mean of {len(curves)} seeds")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:blue", ls="--", lw=1.0, label=f"best validation, epoch {best_epoch}")
        xs = [x for e in epochs for x in e]
        if xs and min(xs) == max(xs):
            ax.set_xlim(min(xs) - 1, max(xs) + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label + (" [%]" if scale == 100.0 else ""))
        if key.endswith("error") and flat and min(flat) > 0:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize="small")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out
