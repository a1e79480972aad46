"""The model's mathematics: one neuron between events (:mod:`.neuron`), the spike-train
data contract (:mod:`.spikes`) and exact voltage trajectories (:mod:`.trajectory`)."""

from .neuron import NeuronParams
from .spikes import validate_spike_times
from .trajectory import VoltageTrajectory

__all__ = ["NeuronParams", "VoltageTrajectory", "validate_spike_times"]
