r"""Neuron constants and delays as arguments of the functional layers: checks and forms.

A time constant or threshold is either a real number or a tensor of shape ``()`` or
``(out_features,)`` (one per neuron), finite and positive; a tensor may require grad.
A delay is a tensor of shape ``(in_features,)`` (one per input neuron, an *axonal*
delay: every spike of input ``i`` arrives ``delay[i]`` later) or
``(out_features, in_features)`` (one per synapse), finite and ``>= 0``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..validation import positive

__all__ = ["check_constant", "check_delay", "constant_value"]


def check_constant(name: str, value: Any, n_out: int, like: Tensor) -> float | Tensor:
    """``value`` as a float, or as a validated tensor of shape ``()`` or ``(n_out,)``.

    Raises:
        ValueError: not a real number or a floating tensor of one of these shapes, or
            an entry that is not finite and positive (the message names ``name``).
    """
    if not isinstance(value, Tensor):
        return positive(name, value)
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a real number or a floating-point tensor, got a {value.dtype} tensor")
    if value.shape not in ((), (n_out,)):
        raise ValueError(
            f"{name} must be a number or a tensor of shape () or (out_features,) = ({n_out},), got shape "
            f"{tuple(value.shape)}"
        )
    if value.device != like.device:
        raise ValueError(f"{name} must be on the input's device ({like.device}), got {value.device}")
    bad = ~(torch.isfinite(value) & (value > 0))
    if bool(bad.any()):
        first = value.detach().reshape(-1)[bad.reshape(-1)][0].item()
        raise ValueError(f"{name} must be finite and positive, got {int(bad.sum())} entries that are not (e.g. {first!r})")
    return value


def constant_value(value: float | Tensor) -> float | None:
    """The common value of a constant (a float, or a tensor with one value); ``None`` if its entries differ."""
    if not isinstance(value, Tensor):
        return value
    flat = value.detach().reshape(-1)
    first = float(flat[0])
    return first if bool((flat == flat[0]).all()) else None


def check_delay(delay: Any, n_out: int, n_in: int, like: Tensor) -> Tensor:
    """A validated delay tensor of shape ``(n_in,)`` or ``(n_out, n_in)`` in ``like``'s dtype.

    Raises:
        ValueError: not a floating tensor of one of these shapes on ``like``'s device,
            or an entry that is negative or not finite.
    """
    if not isinstance(delay, Tensor) or not delay.is_floating_point():
        raise ValueError(f"delay must be a floating-point tensor, got {type(delay).__name__}")
    if delay.shape not in ((n_in,), (n_out, n_in)):
        raise ValueError(
            f"delay must have shape (in_features,) = ({n_in},) or (out_features, in_features) = ({n_out}, {n_in}), "
            f"got {tuple(delay.shape)}"
        )
    if delay.device != like.device:
        raise ValueError(f"delay must be on the input's device ({like.device}), got {delay.device}")
    bad = ~(torch.isfinite(delay) & (delay >= 0))
    if bool(bad.any()):
        first = delay.detach().reshape(-1)[bad.reshape(-1)][0].item()
        raise ValueError(f"delay must be finite and >= 0, got {int(bad.sum())} entries that are not (e.g. {first!r})")
    return delay.to(like.dtype)
