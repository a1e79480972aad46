"""Losses and metrics: on first-spike times (:mod:`.first_spike`) and on voltage trajectories (:mod:`.voltage`)."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_FIRST_SPIKE = ("first_spike_correct", "first_spike_cross_entropy", "first_spike_predictions", "first_spikes")
_VOLTAGE = (
    "label_voltage_gap",
    "max_voltage_cross_entropy",
    "shaped_voltage_cross_entropy",
    "voltage_correct",
    "voltage_cross_entropy",
    "voltage_integral_loss",
    "voltage_predictions",
)
__getattr__, __dir__ = lazy_exports(__name__, {**dict.fromkeys(_FIRST_SPIKE, ".first_spike"), **dict.fromkeys(_VOLTAGE, ".voltage")})

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time the names load on first use
    from .first_spike import first_spike_correct, first_spike_cross_entropy, first_spike_predictions, first_spikes
    from .voltage import (
        label_voltage_gap,
        max_voltage_cross_entropy,
        shaped_voltage_cross_entropy,
        voltage_correct,
        voltage_cross_entropy,
        voltage_integral_loss,
        voltage_predictions,
    )

__all__ = [
    "first_spike_correct",
    "first_spike_cross_entropy",
    "first_spike_predictions",
    "first_spikes",
    "label_voltage_gap",
    "max_voltage_cross_entropy",
    "shaped_voltage_cross_entropy",
    "voltage_correct",
    "voltage_cross_entropy",
    "voltage_integral_loss",
    "voltage_predictions",
]
