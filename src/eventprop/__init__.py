"""eventprop: exact continuous-time LIF networks with exact EventProp gradients in PyTorch.

The package, bottom up (imports flow one way, downwards in this list):

- :mod:`eventprop.validation`, :mod:`eventprop.errors`: argument checks, exceptions;
- :mod:`eventprop.model`: the mathematics of one neuron, the spike-train data
  contract, exact voltage trajectories;
- :mod:`eventprop.engines`: the engines (PyTorch, compiled CPU) behind one contract,
  and their registry;
- :mod:`eventprop.layers`: the functional API and ``nn.Module`` layers over it;
- :mod:`eventprop.losses`: spike-time and voltage losses and metrics;
- :mod:`eventprop.datasets`: built-in data and encoders;
- :mod:`eventprop.inspection`: traces, gradient checks, plots, the paper's Figure 1;
- :mod:`eventprop.interchange`: NIR export and import (:func:`to_nir`, :func:`from_nir`;
  the ``nir`` package is imported only when they are called);
- :mod:`eventprop.training`: configuration, tasks, readouts, the training loop,
  checkpoints, multi-seed runs; :mod:`eventprop.cli`: the ``eventprop`` command.

The public names below load on first use (:mod:`eventprop.lazy`): ``import eventprop``
and ``eventprop --help`` do not import torch. The torch version is checked when the
engines load (:mod:`eventprop.compat`).
"""

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from .compat import prefer_fork_safe_threading as _prefer_fork_safe_threading
from .lazy import lazy_exports

_prefer_fork_safe_threading()

_EXPORTS = {
    "first_spike_correct": ".losses",
    "first_spike_cross_entropy": ".losses",
    "first_spike_predictions": ".losses",
    "first_spikes": ".losses",
    "from_nir": ".interchange",
    "gradcheck": ".inspection.gradcheck",
    "GradcheckReport": ".inspection.gradcheck",
    "label_voltage_gap": ".losses",
    "Connectivity": ".layers",
    "lif_connections": ".layers",
    "lif_layer": ".layers",
    "lif_trajectory": ".layers",
    "LIFConv2d": ".layers",
    "LIFLayer": ".layers",
    "LIReadout": ".layers",
    "max_voltage_cross_entropy": ".losses",
    "NeuronParams": ".model",
    "readout_trajectory": ".layers",
    "shaped_voltage_cross_entropy": ".losses",
    "SpikeLimitError": ".errors",
    "to_nir": ".interchange",
    "validate_spike_times": ".model",
    "voltage_correct": ".losses",
    "voltage_cross_entropy": ".losses",
    "voltage_integral_loss": ".losses",
    "voltage_predictions": ".losses",
    "VoltageTrajectory": ".model",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; at run time the names load on first use
    from .errors import SpikeLimitError
    from .inspection.gradcheck import GradcheckReport, gradcheck
    from .interchange import from_nir, to_nir
    from .layers import (
        Connectivity,
        LIFConv2d,
        LIFLayer,
        LIReadout,
        lif_connections,
        lif_layer,
        lif_trajectory,
        readout_trajectory,
    )
    from .losses import (
        first_spike_correct,
        first_spike_cross_entropy,
        first_spike_predictions,
        first_spikes,
        label_voltage_gap,
        max_voltage_cross_entropy,
        shaped_voltage_cross_entropy,
        voltage_correct,
        voltage_cross_entropy,
        voltage_integral_loss,
        voltage_predictions,
    )
    from .model import NeuronParams, VoltageTrajectory, validate_spike_times

try:
    __version__ = _metadata.version("eventprop")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Connectivity",
    "GradcheckReport",
    "LIFConv2d",
    "LIFLayer",
    "LIReadout",
    "NeuronParams",
    "SpikeLimitError",
    "VoltageTrajectory",
    "first_spike_correct",
    "first_spike_cross_entropy",
    "first_spike_predictions",
    "first_spikes",
    "from_nir",
    "gradcheck",
    "label_voltage_gap",
    "lif_connections",
    "lif_layer",
    "lif_trajectory",
    "max_voltage_cross_entropy",
    "readout_trajectory",
    "shaped_voltage_cross_entropy",
    "to_nir",
    "validate_spike_times",
    "voltage_correct",
    "voltage_cross_entropy",
    "voltage_integral_loss",
    "voltage_predictions",
]
