"""eventprop: exact continuous-time LIF networks with exact EventProp gradients in PyTorch."""

from .feedforward import SpikeLimitError
from .functional import lif_layer
from .gradcheck import GradcheckReport, gradcheck
from .layers import LIFLayer
from .losses import first_spike_correct, first_spike_cross_entropy, first_spike_predictions, first_spikes
from .neuron import NeuronParams
from .spikes import validate_spike_times

__all__ = [
    "GradcheckReport",
    "LIFLayer",
    "NeuronParams",
    "SpikeLimitError",
    "first_spike_correct",
    "first_spike_cross_entropy",
    "first_spike_predictions",
    "first_spikes",
    "gradcheck",
    "lif_layer",
    "validate_spike_times",
]
__version__ = "0.1.0"
