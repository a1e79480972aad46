r"""Neuron constants and delays as arguments of the functional layers: checks and forms.

A time constant or threshold is either a real number or a tensor of shape ``()`` or
``(out_features,)`` (one per neuron), finite and positive; a tensor may require grad.
A delay is a tensor of shape ``(in_features,)`` (one per input neuron, an *axonal*
delay: every spike of input ``i`` arrives ``delay[i]`` later) or
``(out_features, in_features)`` (one per synapse), finite and ``>= 0``; a mask a bool
``(out_features, in_features)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..validation import positive

__all__ = ["check_constant", "check_delays", "check_mask", "constant_value"]


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


def check_delays(name: str, delay: Any, shapes: dict[tuple[int, ...], str], like: Tensor) -> Tensor:
    """A validated delay tensor of one of ``shapes`` (shape: how messages name it) in ``like``'s dtype.

    Raises:
        ValueError: not a floating tensor of one of these shapes on ``like``'s device,
            or an entry that is negative or not finite (the message names ``name``).
    """
    wanted = " or ".join(shapes.values())
    if not isinstance(delay, Tensor) or not delay.is_floating_point() or tuple(delay.shape) not in shapes:
        got = f"a {delay.dtype} tensor of shape {tuple(delay.shape)}" if isinstance(delay, Tensor) else type(delay).__name__
        raise ValueError(f"{name} must be a floating-point tensor of shape {wanted}, got {got}")
    if delay.device != like.device:
        raise ValueError(f"{name} must be on the input's device ({like.device}), got {delay.device}")
    bad = ~(torch.isfinite(delay) & (delay >= 0))
    if bool(bad.any()):
        first = delay.detach().reshape(-1)[bad.reshape(-1)][0].item()
        raise ValueError(f"{name} must be finite and >= 0, got {int(bad.sum())} entries that are not (e.g. {first!r})")
    return delay.to(like.dtype)


def check_mask(mask: Any, shape: tuple[int, int], name: str = "mask") -> Tensor:
    """``mask`` if it is a bool tensor of ``shape`` (``ValueError`` otherwise)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
        got = f"a {mask.dtype} tensor of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor of shape (out_features, in_features) = {shape}, got {got}")
    return mask
