"""The exceptions of ``eventprop`` that are not plain ``ValueError``.

Bad arguments raise ``ValueError`` naming the argument (see :mod:`eventprop.validation`).
What remains is a run that is valid but exceeds a limit the caller set.
"""

from __future__ import annotations

__all__ = ["SpikeLimitError", "DEFAULT_MAX_SPIKES"]

#: The default spike budget of every layer: spikes per neuron and sample. A layer whose
#: neuron would exceed it raises :class:`SpikeLimitError` (a runaway network stops with
#: the numbers instead of running for ever); ``max_spikes=None`` lifts the budget.
DEFAULT_MAX_SPIKES = 1000


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
