"""eventprop: exact continuous-time LIF networks with exact EventProp gradients in PyTorch."""

from .feedforward import SpikeLimitError
from .functional import lif_layer
from .gradcheck import GradcheckReport, gradcheck
from .layers import LIFLayer
from .losses import first_spike_correct, first_spike_cross_entropy, first_spike_predictions, first_spikes
from .neuron import NeuronParams
from .readout import LIReadout
from .spikes import validate_spike_times
from .trajectory import VoltageTrajectory, lif_trajectory, readout_trajectory
from .voltage_losses import (
    label_voltage_gap,
    max_voltage_cross_entropy,
    shaped_voltage_cross_entropy,
    voltage_correct,
    voltage_cross_entropy,
    voltage_integral_loss,
    voltage_predictions,
)

__all__ = [
    "GradcheckReport",
    "LIFLayer",
    "LIReadout",
    "NeuronParams",
    "SpikeLimitError",
    "VoltageTrajectory",
    "first_spike_correct",
    "first_spike_cross_entropy",
    "first_spike_predictions",
    "first_spikes",
    "gradcheck",
    "label_voltage_gap",
    "lif_layer",
    "lif_trajectory",
    "max_voltage_cross_entropy",
    "readout_trajectory",
    "shaped_voltage_cross_entropy",
    "validate_spike_times",
    "voltage_correct",
    "voltage_cross_entropy",
    "voltage_integral_loss",
    "voltage_predictions",
]
__version__ = "0.1.0"
