"""Checkpoints: what a run saves every epoch, and loading models back.

``checkpoint.pt`` holds everything needed to continue a run to the same numbers as an
uninterrupted one (model, averaged model, optimiser, scheduler, random-number states,
epoch, best validation accuracy, metrics so far); ``best.pt`` the model of the best
validation accuracy. Both carry the configuration, the network's input and class
counts and the format number :data:`FORMAT`, and are written atomically. A run is
resumed only from a checkpoint of the current format (format 1, before per-layer
metrics, is refused with a one-line error); a model loads from any format. They contain tensors, numbers, strings and
containers only, and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig, config_from_dict
from .network import build_model

__all__ = ["FORMAT", "save_atomic", "load_checkpoint", "check_resumable", "load_model"]

#: Checkpoint format written by this version: 2 = per-layer metrics (``hidden1_spikes``, ...).
FORMAT = 2


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary name, then move it into place."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], TrainConfig]:
    """The saved state and its configuration; ``ValueError`` for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        config = config_from_dict(state["config"])
    except Exception as exc:  # a file that is not one of our checkpoints
        raise ValueError(f"checkpoint {str(path)!r} is not an eventprop checkpoint ({exc})") from None
    return state, config


def check_resumable(state: dict[str, Any], path: Path) -> None:
    """``ValueError`` unless a run can continue from ``state`` (a checkpoint of the current format)."""
    found = state.get("format", 1)
    if found != FORMAT or "optimizer" not in state:
        what = f"format {found}" if found != FORMAT else "a model only (best.pt)"
        raise ValueError(
            f"--resume: {path} holds {what}, this version resumes format {FORMAT} checkpoints only; "
            "continue it with the eventprop version that wrote it, or start a new run (its models still load for evaluation)"
        )


def load_model(path: str | os.PathLike[str], device: str | None = None) -> tuple[nn.Sequential, TrainConfig]:
    """Load a model saved by :func:`~eventprop.training.train` (``best.pt`` or ``checkpoint.pt``)."""
    state, config = load_checkpoint(path)
    if device is not None:
        config.device = device
    model = build_model(config, state["n_inputs"], state["n_classes"])
    model.load_state_dict(state["model"])
    return model, config
