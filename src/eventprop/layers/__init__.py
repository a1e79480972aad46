"""Layers: the functional API (:mod:`.functional`) and thin ``nn.Module`` shells over it."""

from .functional import lif_layer, lif_trajectory, readout_trajectory
from .lif import LIFLayer
from .readout import LIReadout

__all__ = ["LIFLayer", "LIReadout", "lif_layer", "lif_trajectory", "readout_trajectory"]
