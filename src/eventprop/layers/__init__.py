"""Layers: the functional API (:mod:`.functional`) and thin ``nn.Module`` shells over it."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "lif_layer": ".functional",
        "lif_trajectory": ".functional",
        "readout_trajectory": ".functional",
        "lif_connections": ".connected",
        "Connectivity": ".connectivity",
        "LIFLayer": ".lif",
        "LIFConv2d": ".conv",
        "LIReadout": ".readout",
    },
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time the names load on first use
    from .connected import lif_connections
    from .connectivity import Connectivity
    from .conv import LIFConv2d
    from .functional import lif_layer, lif_trajectory, readout_trajectory
    from .lif import LIFLayer
    from .readout import LIReadout

__all__ = [
    "LIFLayer",
    "LIFConv2d",
    "LIReadout",
    "Connectivity",
    "lif_layer",
    "lif_connections",
    "lif_trajectory",
    "readout_trajectory",
]
