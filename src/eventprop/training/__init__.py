"""Training classifiers with exact gradients: configuration (:mod:`.config`), tasks
(:mod:`.tasks`), readouts (:mod:`.readouts`), the network (:mod:`.network`), activity
and weight bumping (:mod:`.activity`), the loop (:mod:`.loop`), checkpoints
(:mod:`.checkpoints`), run files (:mod:`.outputs`), multi-seed runs (:mod:`.seeds`) and thread settings (:mod:`.threads`)."""

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
