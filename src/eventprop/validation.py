"""One home for argument checks: numbers, counts, weight tensors, renamed keywords.

The rule for numbers, everywhere in ``eventprop``: a *real number* is an instance of
:class:`numbers.Real` (Python ``int`` and ``float``, numpy's integer and floating
scalars such as ``np.float32(20)``) but not a ``bool``; strings, tensors and ``None``
are not. Every check raises ``ValueError`` naming the argument and the problem, and
returns the value as a Python ``float`` (or ``int``), so that downstream arithmetic
never sees a numpy scalar.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = [
    "real",
    "positive",
    "non_negative",
    "fraction",
    "integer",
    "positive_int",
    "non_negative_int",
    "optional_positive_int",
    "check_weight",
    "check_matrix",
    "check_float_dtype",
    "all_finite",
    "check_finite",
    "smallest",
    "renamed",
]


def real(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    rule: str | None = None,
) -> float:
    """``value`` as a float if it is a real number in the interval; else ``ValueError``.

    Args:
        name: the argument's name, for the message.
        low, high: bounds; ``low_open`` / ``high_open`` exclude them.
        allow_inf: accept ``+-inf`` (still subject to the bounds).
        rule: how the message states the requirement (default: the interval).
    """
    if type(value) is float or type(value) is int:  # the common case, without the ABC check
        x = float(value)
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    else:
        x = float(value)
    below = x <= low if low_open else x < low
    above = x >= high if high_open else x > high
    if math.isnan(x) or (math.isinf(x) and not allow_inf) or below or above:
        if rule is None:
            finite = "" if allow_inf else "finite and "
            rule = f"{finite}lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return x


def positive(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """A real number ``> 0`` (finite unless ``allow_inf``)."""
    rule = "positive (or inf)" if allow_inf else "finite and positive"
    return real(name, value, low=0.0, low_open=True, allow_inf=allow_inf, rule=rule)


def non_negative(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """A real number ``>= 0`` (finite unless ``allow_inf``)."""
    rule = "non-negative (or inf)" if allow_inf else "finite and non-negative"
    return real(name, value, low=0.0, allow_inf=allow_inf, rule=rule)


def fraction(name: str, value: Any) -> float:
    """A real number in ``[0, 1]``."""
    return real(name, value, low=0.0, high=1.0)


def _integer(name: str, value: Any, low: int, what: str) -> int:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)) or int(value) < low:
        raise ValueError(f"{name} must be a {what} int, got {value!r}")
    return int(value)


def integer(name: str, value: Any) -> int:
    """Any integer (Python or numpy integer, not ``bool``)."""
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """An integer ``>= 1`` (Python or numpy integer, not ``bool``)."""
    return _integer(name, value, 1, "positive")


def non_negative_int(name: str, value: Any) -> int:
    """An integer ``>= 0`` (Python or numpy integer, not ``bool``)."""
    return _integer(name, value, 0, "non-negative")


def optional_positive_int(name: str, value: Any) -> int | None:
    """``None`` or an integer ``>= 1``."""
    return None if value is None else _integer(name, value, 1, "positive")


def smallest(x: Tensor) -> float:
    """``x.min()`` as a float: NaN if ``x`` holds a NaN, ``+inf`` if it is empty; through a
    numpy view for CPU tensors (losses check their inputs on every call)."""
    import torch  # here, not at the top: the scalar checks serve the CLI before torch loads

    if x.numel() == 0:
        return math.inf
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return float(x.detach().numpy().min())
    return float(x.min())


def all_finite(x: Tensor) -> bool:
    """``torch.isfinite(x).all()``; through a numpy view for CPU float32/float64 tensors,
    which takes a third of the time of the two tensor operations (layers check every call)."""
    import torch

    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(x.detach().numpy()).all())
    return bool(torch.isfinite(x).all())


def check_matrix(name: str, weight: Any) -> Tensor:
    """``weight`` if it is a 2-d tensor ``(out_features, in_features)``, else ``ValueError``."""
    import torch

    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"{name} must be a 2-d tensor of shape (out_features, in_features)")
    return weight


def check_float_dtype(name: str, dtype: torch.dtype | None) -> None:
    """``ValueError`` unless ``dtype`` is ``None`` (the default dtype) or a floating dtype."""
    import torch

    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"{name} must be a floating dtype, got {dtype}")


def check_finite(name: str, x: Tensor) -> None:
    """``ValueError`` naming ``name`` if the tensor ``x`` holds NaN or inf."""
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf")


def check_weight(weight: Any, name: str, shape: tuple[int, ...], like: Tensor, finite: bool = True) -> None:
    """``ValueError`` unless ``weight`` is a tensor of ``shape`` with ``like``'s dtype and
    device and (``finite``) holds no NaN or inf (an engine that checks values itself, on
    its device, passes ``finite=False``: :attr:`eventprop.engines.Engine.checks_values`)."""
    import torch

    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if tuple(weight.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(weight.shape)}")
    if weight.dtype != like.dtype:
        raise ValueError(f"{name} has dtype {weight.dtype} but times has dtype {like.dtype}")
    if weight.device != like.device:
        raise ValueError(f"{name} is on {weight.device} but times is on {like.device}")
    if finite:
        check_finite(name, weight)


def renamed(where: str, old: str, old_value: Any, new: str, new_value: Any, default: Any, stacklevel: int = 3) -> Any:
    """The value of an argument that was renamed from ``old`` to ``new``.

    ``old_value`` is ``None`` unless the caller used the deprecated spelling; then it
    wins, with a ``DeprecationWarning`` attributed ``stacklevel`` frames up (the user's
    call: 3 when the public function calls this directly). Both spellings given is a
    ``ValueError``.
    """
    if old_value is None:
        return new_value
    if new_value is not default and new_value != default:
        raise ValueError(f"{where}: pass {new}= only ({old}= is its deprecated spelling)")
    warnings.warn(f"{where}: {old}= is deprecated, use {new}=", DeprecationWarning, stacklevel=stacklevel)
    return old_value
