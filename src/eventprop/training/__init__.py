"""Training classifiers with exact gradients: configuration (:mod:`.config`), tasks
(:mod:`.tasks`), readouts (:mod:`.readouts`), the network (:mod:`.network`), activity
and weight bumping (:mod:`.activity`), the loop (:mod:`.loop`), checkpoints
(:mod:`.checkpoints`), run files (:mod:`.outputs`), multi-seed runs (:mod:`.seeds`) and thread settings (:mod:`.threads`)."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "load_model": ".checkpoints",
        "TrainConfig": ".config",
        "preset_config": ".config",
        "encode": ".loop",
        "evaluate_model": ".loop",
        "train": ".loop",
        "build_model": ".network",
        "READOUTS": ".readouts",
        "FirstSpikeReadout": ".readouts",
        "Readout": ".readouts",
        "VoltageReadout": ".readouts",
        "train_seeds": ".seeds",
        "TASKS": ".tasks",
        "Task": ".tasks",
        "set_threads": ".threads",
    },
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time the names load on first use
    from .checkpoints import load_model
    from .config import TrainConfig, preset_config
    from .loop import encode, evaluate_model, train
    from .network import build_model
    from .readouts import READOUTS, FirstSpikeReadout, Readout, VoltageReadout
    from .seeds import train_seeds
    from .tasks import TASKS, Task
    from .threads import set_threads

__all__ = [
    "READOUTS",
    "TASKS",
    "FirstSpikeReadout",
    "Readout",
    "Task",
    "TrainConfig",
    "VoltageReadout",
    "build_model",
    "encode",
    "evaluate_model",
    "load_model",
    "preset_config",
    "set_threads",
    "train",
    "train_seeds",
]
