"""Latency (time-to-first-spike) encoding of real-valued inputs.

Spike-train data contract used throughout ``eventprop``: a spike train is a
float tensor of shape ``(batch, neurons, max_spikes)`` holding spike times
(in the same time unit as ``t_min``/``t_max``, e.g. ms), ascending along the
last axis and padded with ``+inf`` where a neuron has fewer spikes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["latency_encode", "intensity_encode"]


def _check_time(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
    return value


def latency_encode(
    values: torch.Tensor,
    *,
    t_min: float,
    t_max: float,
    bias_times: Sequence[float] = (),
) -> torch.Tensor:
    """Encode values in ``[0, 1]`` as single spike times, plus bias neurons.

    Feature ``j`` of sample ``b`` becomes one spike of input neuron ``j`` at

        t[b, j] = t_min + values[b, j] * (t_max - t_min),

    and for every entry ``t_k`` of ``bias_times`` one extra neuron (index
    ``features + k``) spikes once at ``t_k`` in every sample.

    Args:
        values: shape ``(batch, features)``, entries in ``[0, 1]``
            (dimensionless).  A tensor or anything ``torch.as_tensor``
            accepts (e.g. a numpy array).
        t_min: spike time of value 0 (time units, e.g. ms), ``>= 0``.
        t_max: spike time of value 1 (same unit), ``>= t_min``.
        bias_times: spike times of the bias neurons (same unit), each finite
            and ``>= 0``.

    Returns:
        Spike trains of shape ``(batch, features + len(bias_times), 1)``.
        Dtype is that of ``values`` if it is floating point, otherwise
        ``torch.get_default_dtype()``; device is that of ``values``.
        Differentiable with respect to ``values``.

    Raises:
        ValueError: naming the argument, if ``values`` is not 2-D, contains
            NaN or values outside ``[0, 1]``; if ``t_min`` is negative or not
            finite, ``t_max < t_min`` or ``t_max`` is not finite; if a bias
            time is negative or not finite.
        TypeError: if ``values`` is complex.
    """
    values = torch.as_tensor(values)
    if values.is_complex():
        raise TypeError(f"values must be real, got dtype {values.dtype}")
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    if values.dim() != 2:
        raise ValueError(
            f"values must have shape (batch, features), got shape {tuple(values.shape)}"
        )
    if bool(torch.isnan(values).any()):
        raise ValueError("values must not contain NaN")
    if bool(((values < 0) | (values > 1)).any()):
        raise ValueError("values must lie in [0, 1]")

    t_min = _check_time("t_min", t_min)
    t_max = _check_time("t_max", t_max)
    if t_max < t_min:
        raise ValueError(f"t_max must be >= t_min, got t_max={t_max!r} < t_min={t_min!r}")
    bias = [_check_time(f"bias_times[{k}]", t) for k, t in enumerate(bias_times)]

    times = t_min + values * (t_max - t_min)
    if bias:
        bias_row = torch.tensor(bias, dtype=values.dtype, device=values.device)
        times = torch.cat([times, bias_row.expand(values.shape[0], -1)], dim=1)
    return times.unsqueeze(-1)


def intensity_encode(
    values: torch.Tensor,
    *,
    t_min: float,
    t_max: float,
    bias_times: Sequence[float] = (),
) -> torch.Tensor:
    """Encode intensities in ``[0, 1]`` as single spikes, brighter = earlier, zero = silent.

    Feature ``j`` of sample ``b`` with ``values[b, j] > 0`` spikes once at

        t[b, j] = t_min + (1 - values[b, j]) * (t_max - t_min),

    so intensity 1 fires at ``t_min`` and faint pixels fire near ``t_max``; a zero
    intensity emits no spike (``+inf``): a blank pixel carries no information and
    costs no event. Bias neurons as in :func:`latency_encode`.

    Args, returns and errors: as :func:`latency_encode` (shape
    ``(batch, features + len(bias_times), 1)``, ``+inf`` for silent pixels).
    """
    values = torch.as_tensor(values)
    if not values.is_floating_point() and not values.is_complex():
        values = values.to(torch.get_default_dtype())
    times = latency_encode(1 - values, t_min=t_min, t_max=t_max, bias_times=bias_times)  # validates
    silent = torch.zeros(times.shape[:2], dtype=torch.bool, device=times.device)
    silent[:, : values.shape[1]] = values == 0
    return torch.where(silent[..., None], torch.full_like(times, math.inf), times)
