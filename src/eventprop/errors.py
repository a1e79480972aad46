"""The exceptions of ``eventprop`` that are not plain ``ValueError``.

Bad arguments raise ``ValueError`` naming the argument (see :mod:`eventprop.validation`).
What remains is a run that is valid but exceeds a limit the caller set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_G = TypeVar("_G")

__all__ = [
    "SpikeLimitError",
    "DEFAULT_MAX_SPIKES",
    "TangentialCrossingWarning",
    "refuse_create_graph",
    "check_spike_time_gradient",
    "checked_adjoint",
]

#: The default spike budget of every layer: spikes per neuron and sample. A layer whose
#: neuron would exceed it raises :class:`SpikeLimitError` (a runaway network stops with
#: the numbers instead of running for ever); ``max_spikes=None`` lifts the budget.
DEFAULT_MAX_SPIKES = 1000


class TangentialCrossingWarning(UserWarning):
    """Spikes whose threshold crossing was (near) tangential had their gradient computed.

    At a spike ``dV/dt = (I - theta) / tau_mem``, and the exact gradient carries the factor
    ``1 / (I - theta)`` (paper eq. 30a): it diverges where the voltage only touches the
    threshold. A spike with ``|I - theta| <= tolerance * theta``
    (:func:`eventprop.model.neuron.tangent_tolerance`: ``8 sqrt(eps)`` of the computing
    dtype, 1.2e-7 in float64) is *tangential*: floating point cannot resolve its time
    well enough for that factor, so its gradient is unreliable and can be huge. The
    layer warns with their number; with ``tangent_safeguard=True`` it clips
    ``|I - theta|`` to the tolerance (a bounded jump) and says so. An exact double root
    (``I = theta``) is always given the tolerance (its exact gradient is infinite).
    """

    def __init__(self, count: int, total: int, clipped: bool) -> None:
        what = (
            "clipped to the tolerance (tangent_safeguard=True)"
            if clipped
            else "the exact formula's, hence unreliable and possibly huge (tangent_safeguard=True clips them)"
        )
        super().__init__(f"{count} of {total} spikes crossed the threshold tangentially (|I - theta| at rounding level); their gradients are {what}")
        self.count, self.total, self.clipped = count, total, clipped


class SpikeLimitError(RuntimeError):
    """A neuron would emit more spikes than the layer's ``max_spikes`` (per neuron and sample).

    Spikes are never dropped silently: the layer raises instead of truncating.
    """

    @classmethod
    def exceeded(cls, max_spikes: int, sample: int, neuron: int, time: float | None = None) -> SpikeLimitError:
        """The error for neuron ``neuron`` of sample ``sample``, past ``max_spikes`` spikes (the last stored at ``time``)."""
        when = "" if time is None else f" (by t = {time:.6g})"
        return cls(
            f"neuron {neuron} of sample {sample} emitted more than max_spikes={max_spikes} spikes{when}: the network "
            "runs away, or max_spikes is too small for this activity; raise max_spikes (max_spikes=None: no limit; "
            "CLI: --max-spikes) - spikes are never dropped silently"
        )


def refuse_create_graph(what: str) -> None:
    """``RuntimeError`` when a backward runs under ``create_graph=True`` (grad mode on).

    The library's autograd Functions (EventProp adjoints, compiled trajectory queries,
    the first-spike loss) compute first derivatives only: differentiating their
    gradients again would treat parts of them as constants and give a wrong second
    derivative without any error, so they refuse instead.
    """
    import torch

    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{what} cannot be differentiated twice (create_graph=True): its gradient is computed in closed form, "
            "not by differentiable operations"
        )


def check_spike_time_gradient(grad_out: Any, out_times: Any) -> None:
    """``ValueError`` when ``dL/d(spike time)`` is NaN or infinite at a real output spike of a LIF layer.

    EventProp cannot propagate such a value, and setting it to zero would be a silent
    wrong answer; entries at padding (``out_times = +inf``) are ignored.
    """
    import torch

    from .validation import all_finite

    if all_finite(grad_out):
        return
    bad = ~torch.isfinite(grad_out) & torch.isfinite(out_times)
    if bool(bad.any()):
        n_nan = int((bad & torch.isnan(grad_out)).sum())
        raise ValueError(
            f"dL/d(spike time) is not finite at {int(bad.sum())} output spike(s) of a LIF layer ({n_nan} NaN, "
            f"{int(bad.sum()) - n_nan} infinite): the loss or a later layer made it (EventProp cannot propagate "
            "it; nothing is set to zero)"
        )


def checked_adjoint(grad_out: Any, out_times: Any, adjoint: Callable[[], _G]) -> tuple[_G, int]:
    """``adjoint()`` (an engine's EventProp backward) checked by :func:`check_spike_time_gradient`,
    and its count of tangential spikes (``n_tangential``) as an int.

    An engine on a GPU returns the count as a 0-d device tensor: the check's flag is then
    computed on the device and read back with it, one host synchronisation per backward.
    The check follows the adjoint (whose loops are bounded whatever the values); the
    gradients of a failed check are discarded.
    """
    import torch

    grads = adjoint()
    count = grads.n_tangential
    if not isinstance(count, torch.Tensor):
        check_spike_time_gradient(grad_out, out_times)
        return grads, count
    bad = (~torch.isfinite(grad_out) & torch.isfinite(out_times)).any()
    failed, n_tangential = torch.stack([bad.long(), count.long().reshape(())]).tolist()  # the one host read
    if failed:
        check_spike_time_gradient(grad_out, out_times)  # raises the check's message
    return grads, n_tangential
