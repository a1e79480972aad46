"""What every loss shares: the labels check and the reduction over the batch."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_labels", "reduce_loss"]


def check_labels(labels: Tensor, batch: int, n_classes: int) -> None:
    """Raise ``ValueError`` unless ``labels`` is an integer tensor of shape ``(batch,)`` in ``[0, n_classes)``."""
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        what = f"dtype {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor, got {what}")
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.numel():
        values = labels.numpy() if labels.device.type == "cpu" else labels  # numpy: cheaper per call
        if int(values.min()) < 0 or int(values.max()) >= n_classes:
            raise ValueError(f"labels must lie in [0, {n_classes})")


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Per-sample ``loss`` reduced by ``reduction``: ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
