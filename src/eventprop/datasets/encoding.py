"""Encoders: real values to spike times (latency coding, intensity coding).

Output follows the spike-train data contract (:mod:`eventprop.model.spikes`): a float
tensor ``(batch, neurons, max_spikes)`` of spike times in the unit of ``t_first`` /
``t_last`` (ms in the examples), ascending, ``+inf`` padded. Both encoders place every
spike in ``[t_first, t_last]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
import torch

from ..validation import non_negative, renamed

__all__ = ["latency_encode", "intensity_encode", "on_off_encode"]


def _times(where: str, t_first: float | None, t_last: float | None, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    """``(t_first, t_last)`` validated, accepting the deprecated spellings ``t_min`` / ``t_max``."""
    t_first = renamed(where, "t_min", t_min, "t_first", t_first, None, stacklevel=4)
    t_last = renamed(where, "t_max", t_max, "t_last", t_last, None, stacklevel=4)
    if t_first is None or t_last is None:
        raise ValueError(f"{where}: t_first and t_last are required")
    t_first = non_negative("t_first", t_first)
    t_last = non_negative("t_last", t_last)
    if t_last < t_first:
        raise ValueError(f"t_last must be >= t_first, got t_last={t_last!r} < t_first={t_first!r}")
    return t_first, t_last


def latency_encode(
    values: torch.Tensor,
    *,
    t_first: float | None = None,
    t_last: float | None = None,
    bias_times: Sequence[float] = (),
    t_min: float | None = None,
    t_max: float | None = None,
) -> torch.Tensor:
    """Encode values in ``[0, 1]`` as single spike times, plus bias neurons.

    Feature ``j`` of sample ``b`` becomes one spike of input neuron ``j`` at

        t[b, j] = t_first + values[b, j] * (t_last - t_first),

    and for every entry ``t_k`` of ``bias_times`` one extra neuron (index
    ``features + k``) spikes once at ``t_k`` in every sample.

    Args:
        values: shape ``(batch, features)``, entries in ``[0, 1]``
            (dimensionless).  A tensor or anything ``torch.as_tensor``
            accepts (e.g. a numpy array).
        t_first: spike time of value 0 (time units, e.g. ms), ``>= 0``; required.
        t_last: spike time of value 1 (same unit), ``>= t_first``; required.
        bias_times: spike times of the bias neurons (same unit), each finite
            and ``>= 0``.
        t_min, t_max: deprecated spellings of ``t_first`` and ``t_last``.

    Returns:
        Spike trains of shape ``(batch, features + len(bias_times), 1)``.
        Dtype is that of ``values`` if it is floating point, otherwise
        ``torch.get_default_dtype()``; device is that of ``values``.
        Differentiable with respect to ``values``.

    Raises:
        ValueError: naming the argument, if ``values`` is not 2-D, contains
            NaN or values outside ``[0, 1]``; if ``t_first`` is negative or not
            finite, ``t_last < t_first`` or ``t_last`` is not finite; if a bias
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

    t_first, t_last = _times("latency_encode", t_first, t_last, t_min, t_max)
    bias = [non_negative(f"bias_times[{k}]", t) for k, t in enumerate(bias_times)]

    times = t_first + values * (t_last - t_first)
    if bias:
        bias_row = torch.tensor(bias, dtype=values.dtype, device=values.device)
        times = torch.cat([times, bias_row.expand(values.shape[0], -1)], dim=1)
    return times.unsqueeze(-1)


def intensity_encode(
    values: torch.Tensor,
    *,
    t_first: float | None = None,
    t_last: float | None = None,
    bias_times: Sequence[float] = (),
    t_min: float | None = None,
    t_max: float | None = None,
) -> torch.Tensor:
    """Encode intensities in ``[0, 1]`` as single spikes, brighter = earlier, zero = silent.

    Feature ``j`` of sample ``b`` with ``values[b, j] > 0`` spikes once at

        t[b, j] = t_first + (1 - values[b, j]) * (t_last - t_first),

    so intensity 1 fires at ``t_first`` and faint pixels fire near ``t_last``; a zero
    intensity emits no spike (``+inf``): a blank pixel carries no information and
    costs no event. Bias neurons as in :func:`latency_encode`.

    Args, returns and errors: as :func:`latency_encode` (shape
    ``(batch, features + len(bias_times), 1)``, ``+inf`` for silent pixels).
    """
    values = torch.as_tensor(values)
    if not values.is_floating_point() and not values.is_complex():
        values = values.to(torch.get_default_dtype())
    t_first, t_last = _times("intensity_encode", t_first, t_last, t_min, t_max)
    times = latency_encode(1 - values, t_first=t_first, t_last=t_last, bias_times=bias_times)  # validates
    silent = torch.zeros(times.shape[:2], dtype=torch.bool, device=times.device)
    silent[:, : values.shape[1]] = values == 0
    return torch.where(silent[..., None], torch.full_like(times, math.inf), times)


def on_off_encode(
    values: torch.Tensor,
    *,
    t_first: float,
    t_last: float,
    bias_times: Sequence[float] = (),
) -> torch.Tensor:
    """Encode intensities in ``[0, 1]`` by two channels per feature: an "on" channel that
    fires earlier the brighter the feature, and an "off" channel that fires earlier the
    darker it is (as retinal ON and OFF cells).

    For ``F`` features, channel ``j < F`` (on) of sample ``b`` spikes at

        t_first + (1 - values[b, j]) * (t_last - t_first)   where values[b, j] > 0,

    channel ``F + j`` (off) at

        t_first + values[b, j] * (t_last - t_first)          where values[b, j] < 1,

    and is silent (``+inf``) otherwise: a blank feature fires its off channel at
    ``t_first`` instead of saying nothing, a saturated one its on channel. Bias neurons
    follow (channels ``2F ...``), as in :func:`latency_encode`.

    Shape:
        - values: ``(batch, F)``
        - output: ``(batch, 2 F + len(bias_times), 1)``

    Errors: as :func:`latency_encode`.

    Examples:
        >>> on_off_encode(torch.tensor([[0.0, 0.25, 1.0]]), t_first=0.0, t_last=20.0)[0, :, 0]
        tensor([inf, 15.,  0.,  0.,  5., inf])
    """
    values = torch.as_tensor(values)
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    on = intensity_encode(values, t_first=t_first, t_last=t_last)  # validates
    off = intensity_encode(1 - values, t_first=t_first, t_last=t_last)
    bias = latency_encode(values[:, :0], t_first=t_first, t_last=t_last, bias_times=bias_times)
    return torch.cat([on, off, bias], dim=1)
