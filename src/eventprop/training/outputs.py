"""Files a run writes besides checkpoints: ``metrics.csv``, ``summary.json``, ``training.png``,
and on request TensorBoard event files.

Every file is written to a temporary name and moved into place, so an interrupted run
never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_metrics", "read_metrics", "write_json", "plot_runs", "TensorBoardLog"]


def write_metrics(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """One CSV row per epoch; the columns are the keys of the first row."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` as floats."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def plot_runs(
    path: Path, runs: Sequence[Sequence[dict[str, float]]], *, title: str | None = None, best_epoch: int | None = None
) -> str | None:
    """Validation error and loss per epoch of one or several runs (each seed grey, mean bold).

    Returns ``None`` when the figure was written, else the one-line reason it was
    skipped (matplotlib is not installed): a run's results never depend on the figure.
    """
    from ..inspection.plotting import plot_training_curves

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"{path.name} skipped: plotting needs matplotlib (pip install matplotlib)"
    curves = [{k: [r[k] for r in rows] for k in ("epoch", "val_accuracy", "val_loss")} for rows in runs]
    for c in curves:
        c["val_error"] = [1 - a for a in c["val_accuracy"]]
    plot_training_curves(curves, path, title=title, best_epoch=best_epoch)
    return None


class TensorBoardLog:
    """The per-epoch metrics of a run as TensorBoard scalars in ``folder`` (``out/tensorboard``).

    Each ``metrics.csv`` column except ``epoch`` becomes a scalar at step ``epoch``,
    grouped as ``train/``, ``val/``, ``activity/`` (spikes, silent fractions,
    tangential spikes) and ``run/`` (learning rate, seconds). A resumed run continues
    the same event files; steps after the checkpoint's epoch that an interrupted run
    had already written are purged, so the curves match an uninterrupted run's.
    ``tensorboard --logdir runs`` shows all runs under ``runs/``.

    Raises:
        ValueError: the ``tensorboard`` package is missing (``pip install eventprop[tensorboard]``).
    """

    def __init__(self, folder: Path, first_epoch: int = 1) -> None:
        self.require()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(folder), purge_step=first_epoch)

    @staticmethod
    def require() -> None:
        """``ValueError`` with the install hint unless the ``tensorboard`` package is installed."""
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package: pip install eventprop[tensorboard]") from None

    @staticmethod
    def tag(column: str) -> str:
        """The scalar's name for a ``metrics.csv`` column."""
        for prefix, group in (("train_", "train/"), ("val_", "val/")):
            if column.startswith(prefix):
                return group + column[len(prefix):]
        return ("run/" if column in ("lr", "seconds") else "activity/") + column

    def add(self, row: dict[str, float]) -> None:
        """One epoch's row (as written to ``metrics.csv``)."""
        step = int(row["epoch"])
        for column, value in row.items():
            if column != "epoch":
                self._writer.add_scalar(self.tag(column), float(value), step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
