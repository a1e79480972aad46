"""What every loss shares: the labels check and the reduction over the batch."""

from __future__ import annotations

import torch
from torch import Tensor

from ..validation import all_finite

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
    """Per-sample ``loss`` reduced by ``reduction``: ``"mean"``, ``"sum"`` or ``"none"``.

    The mean is summed as ``sum(loss / n)``, so it is finite wherever the losses are; a
    sum that overflows the dtype and the mean of an empty batch (NaN) raise
    ``ValueError`` with the numbers instead of returning ``inf`` or NaN.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if reduction == "none":
        return loss
    n = loss.numel()
    if reduction == "mean":
        if n == 0:
            raise ValueError("reduction='mean' of an empty batch is undefined (no samples); use reduction='sum' (0) or skip the batch")
        total = (loss / n).sum()
    else:
        total = loss.sum()
    if not bool(torch.isfinite(total)) and all_finite(loss):
        raise ValueError(
            f"reduction={reduction!r}: the sum of {n} finite losses (largest {float(loss.abs().max()):g}) overflows "
            f"{loss.dtype}; use reduction='mean' or compute in float64"
        )
    return total
