"""Files a run writes besides checkpoints: ``metrics.csv``, ``summary.json``, ``training.png``.

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

__all__ = ["write_metrics", "read_metrics", "write_json", "plot_runs"]


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


def plot_runs(path: Path, runs: Sequence[Sequence[dict[str, float]]]) -> None:
    """Validation error and loss per epoch of one or several runs (each seed grey, mean bold)."""
    from ..inspection.plotting import plot_training_curves

    curves = [{k: [r[k] for r in rows] for k in ("epoch", "val_accuracy", "val_loss")} for rows in runs]
    for c in curves:
        c["val_error"] = [1 - a for a in c["val_accuracy"]]
    plot_training_curves(curves, path)
