"""eventprop: exact continuous-time LIF networks with exact EventProp gradients in PyTorch."""

from .feedforward import SpikeLimitError
from .functional import lif_layer
from .layers import LIFLayer
from .neuron import NeuronParams
from .spikes import validate_spike_times

__all__ = ["LIFLayer", "NeuronParams", "SpikeLimitError", "lif_layer", "validate_spike_times"]
__version__ = "0.1.0"
