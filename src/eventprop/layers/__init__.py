"""Layers: the functional API (:mod:`.functional`) and thin ``nn.Module`` shells over it."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "lif_layer": ".functional",
        "lif_trajectory": ".functional",
        "readout_trajectory": ".functional",
        "LIFLayer": ".lif",
        "LIReadout": ".readout",
    },
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time the names load on first use
    from .functional import lif_layer, lif_trajectory, readout_trajectory
    from .lif import LIFLayer
    from .readout import LIReadout

__all__ = ["LIFLayer", "LIReadout", "lif_layer", "lif_trajectory", "readout_trajectory"]
