"""The exceptions of ``eventprop`` that are not plain ``ValueError``.

Bad arguments raise ``ValueError`` naming the argument (see :mod:`eventprop.validation`).
What remains is a run that is valid but exceeds a limit the caller set.
"""

from __future__ import annotations

__all__ = ["SpikeLimitError"]


class SpikeLimitError(RuntimeError):
    """A neuron would emit more spikes than the caller's ``max_spikes``.

    Spikes are never dropped silently: the layer raises instead of truncating.
    """

    @classmethod
    def exceeded(cls, max_spikes: int) -> SpikeLimitError:
        """The error for a neuron that emitted more than ``max_spikes`` spikes."""
        return cls(
            f"a neuron emitted more than max_spikes={max_spikes} spikes; raise max_spikes "
            "(or set it to None) - spikes are never dropped silently"
        )
