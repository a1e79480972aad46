"""Tasks: a data set as the trainer sees it (splits, encoder, sizes) and its presets.

:class:`Task`: built-in feature data (rows of values, encoded into spike times once).
:class:`EventTask`: event data read from the user's ``--data`` folder through tonic
(:mod:`eventprop.datasets.heidelberg`), each sample's events turned into spike times
when a minibatch asks for it.

A preset is a dictionary of :class:`~eventprop.training.config.TrainConfig` fields; its
optional key ``"readouts"`` maps a readout name to further fields applied when that
readout is selected (:func:`~eventprop.training.config.preset_config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import datasets
from ..datasets import RANDMAN_CONFIG, digits_split, randman_split, yinyang_split

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Task", "EventTask", "TASKS"]


@dataclass(frozen=True)
class Task:
    """A classification data set as the trainer sees it.

    Attributes:
        split: ``name -> (X, y)`` for ``"train"``, ``"validation"``, ``"test"``.
        n_features, n_classes: sizes of ``X``'s rows and of the label range.
        encoder: ``(values in [0, 1], t_first=, t_last=, bias_times=) -> spike times``.
        scale: divides the raw features into ``[0, 1]``.
        features: what a row of ``X`` is (for messages).
        presets: name -> field overrides (module docstring); the first is the default.
        encoding: how the encoder places the spikes (for the CLI's help).
        default_readout: the readout unless ``--readout`` says otherwise.
        needs_data: ``split`` reads the user's files: it is called as ``split(name, data_dir)``
            with ``--data`` (MNIST), not ``split(name)``.
    """

    split: Callable[..., tuple[np.ndarray, np.ndarray]]
    n_features: int
    n_classes: int
    encoder: Callable[..., Tensor]
    scale: float
    features: str
    presets: dict[str, dict[str, Any]]
    encoding: str = ""
    default_readout: str = "first-spike"
    needs_data: bool = False


@dataclass(frozen=True)
class EventTask:
    """An event data set as the trainer sees it (read from ``--data DIR``).

    Attributes:
        source: the data set in :mod:`eventprop.datasets.sources` (``"shd"``, ``"ssc"``, ``"nmnist"``).
        n_features: input channels (``W * H * P`` of ``sensor_size``).
        n_classes: size of the label range.
        sensor_size: ``(W, H, P)`` as in tonic.
        trial_ms: the trial length: events at or after it are cropped.
        features, encoding: what a sample is and how it becomes spike times (for the CLI's help).
        presets: as :class:`Task`'s.
        default_readout: the readout unless ``--readout`` says otherwise.
    """

    source: str
    n_features: int
    n_classes: int
    sensor_size: tuple[int, int, int]
    trial_ms: float
    features: str
    presets: dict[str, dict[str, Any]]
    encoding: str = ""
    default_readout: str = "voltage"
    needs_data: ClassVar[bool] = True


def _latency_encode(values: Tensor, **kwargs: Any) -> Tensor:
    """:func:`eventprop.datasets.latency_encode` (loaded on first use: the CLI's help needs no torch)."""
    return datasets.latency_encode(values, **kwargs)


def _intensity_encode(values: Tensor, **kwargs: Any) -> Tensor:
    """:func:`eventprop.datasets.intensity_encode` (loaded on first use)."""
    return datasets.intensity_encode(values, **kwargs)


def _on_off_encode(values: Tensor, **kwargs: Any) -> Tensor:
    """:func:`eventprop.datasets.on_off_encode` (loaded on first use)."""
    return datasets.on_off_encode(values, **kwargs)


_HEIDELBERG_PRESET: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 32,
    "lr": 1e-3,
    "lr_decay": 1.0,
    "hidden": (256,),
    "recurrent": (True,),
    "hidden_init": (0.023, 0.04),
    "recurrent_init": (0.0, 0.02),
    "dtype": "float32",
    "readouts": {"voltage": {"output_init": (0.0, 0.0625), "window": 1000.0, "voltage_scale": 1.0}},
}

def _mnist_split(name: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`eventprop.datasets.mnist_split` with the task's argument order."""
    return datasets.mnist_split(data_dir, name)


def _heidelberg_task(source: str, n_classes: int, what: str) -> EventTask:
    """SHD or SSC: 700 cochlea channels, 1 s trials, the shared preset."""
    return EventTask(
        source=source,
        n_features=700,
        n_classes=n_classes,
        sensor_size=(700, 1, 1),
        trial_ms=1000.0,
        features=f"700 cochlea channels of {what}",
        encoding="each event is a spike of its channel at its time (ms), cropped at 1 s",
        presets={"best": _HEIDELBERG_PRESET},
    )


# Readout fields that suit any task with inputs in [0, 30] ms and tau = 20 / 5 ms.
_VOLTAGE_READOUT: dict[str, Any] = {"output_init": (0.0, 0.3), "window": 60.0, "voltage_scale": 5.0}

TASKS: dict[str, Task | EventTask] = {
    "yinyang": Task(
        split=yinyang_split,
        n_features=4,
        n_classes=3,
        encoder=_latency_encode,
        scale=1.0,
        features="[x, y, 1-x, 1-y]",
        encoding="value v spikes at t_first + v (t_last - t_first)",
        presets={
            # The authors' final set-up (eventprop/eventprop repository) with 400 hidden
            # neurons (output init scaled by 200/400), gradient-norm clipping at 1 and the
            # silent-label push; chosen on validation accuracy (README), our default.
            "best": {
                "readouts": {
                    "first-spike": {"hidden": (400,), "output_init": (0.465, 0.05), "grad_clip": 1.0, "silent_push": 3.0},
                    "voltage": _VOLTAGE_READOUT,
                }
            },
            # The arXiv paper, Figure 4. The original ran 30,000 minibatch iterations (1200 epochs).
            "paper": {
                "epochs": 1200,
                "batch_size": 200,
                "lr": 1e-3,
                "lr_decay": 1.0,
                "t_first": 10.0,
                "t_last": 40.0,
                "bias_times": (20.0,),
                "hidden_init": (2.0, 1.0),
                "output_init": (0.4, 0.4),
                "tau0": 0.4 * 5.0,
                "tau1": 2.0 * 5.0,
                "alpha": 1e-2,
                "t_silent": 80.0,
                "bump": 1e-4,
                "max_silent_hidden": (0.15,),
                "max_silent_output": 0.0,
                "readouts": {"voltage": {**_VOLTAGE_READOUT, "window": 70.0}},
            },
        },
    ),
    "digits": Task(
        split=digits_split,
        n_features=64,
        n_classes=10,
        encoder=_on_off_encode,
        scale=16.0,
        features="64 pixel intensities 0..16 (row-major 8x8)",
        encoding="two channels per pixel: 'on' spikes at t_first + (1 - p/16) (t_last - t_first) where p > 0, "
        "'off' at t_first + (p/16) (t_last - t_first) where p < 16 (128 channels, then the bias spike)",
        presets={
            # 128 on/off channels + a bias spike at 0 -> 400 hidden -> 10, inputs in [0, 15] ms,
            # 10 % of the input spikes deleted in training. Chosen on the validation split,
            # the mean over 5 seeds of each seed's best validation accuracy (README, "Digits
            # results"): the on/off encoding (+2 %), spike deletion with 50 epochs, a 15 ms
            # input window and 400 hidden neurons each helped.
            "best": {
                "epochs": 50,
                "hidden": (400,),
                "t_first": 0.0,
                "t_last": 15.0,
                "bias_times": (0.0,),
                "hidden_init": (0.2, 0.3),
                "output_init": (0.5, 0.2),
                "input_dropout": 0.1,
                # the voltage readout's fields: those of the earlier preset, not tuned again
                "readouts": {"voltage": {"output_init": (0.0, 0.3), "window": 60.0, "voltage_scale": 5.0}},
            },
        },
    ),
    # One recurrent hidden layer of 256 and a leaky-integrator readout with the max-over-time
    # voltage loss, as in the published EventProp SHD set-up (tau_mem 20 ms, tau_syn 5 ms,
    # 1 s trials). Initial weights make the hidden layer fire at about 8 Hz on SHD-shaped
    # input (benchmarks/bench_shd.py). Not tuned on the real data here (README).
    "shd": _heidelberg_task("shd", 20, "a spoken digit (Spiking Heidelberg Digits)"),
    "ssc": _heidelberg_task("ssc", 35, "a spoken command (Spiking Speech Commands)"),
    # Randman (eventprop.datasets.randman): one spike per input neuron, the class is in the timing.
    "randman": Task(
        split=randman_split,
        n_features=int(RANDMAN_CONFIG["n_units"]),
        n_classes=int(RANDMAN_CONFIG["n_classes"]),
        encoder=_latency_encode,
        scale=1.0,
        features=f"{RANDMAN_CONFIG['n_units']} firing times in [0, 1] (points of {RANDMAN_CONFIG['dim']}-d random manifolds)",
        encoding="value v spikes at t_first + v (t_last - t_first), plus the bias spike(s)",
        # 20 inputs + a bias spike at 0 -> 400 LIF hidden -> 10, inputs jittered by 0.5 ms in
        # training. Chosen on validation accuracy (seeds 0-1) within about 3 minutes per seed
        # on one core (README, "Randman results"): 400 hidden beat 100, 200 and 600, jitter
        # helped both; the recurrent layer's activity (hence cost) grows in training: 40 epochs.
        # The voltage readout's fields are the generic ones above (not tuned here).
        presets={
            "best": {
                "epochs": 60,
                "hidden": (400,),
                "hidden_init": (0.5, 0.5),
                "output_init": (0.35, 0.15),
                "jitter": 0.5,
                "readouts": {"voltage": _VOLTAGE_READOUT},
            },
            "recurrent": {
                "epochs": 40,
                "hidden": (400,),
                "recurrent": (True,),
                "hidden_init": (0.5, 0.5),
                "output_init": (0.35, 0.15),
                "jitter": 0.5,
                "readouts": {"voltage": _VOLTAGE_READOUT},
            },
        },
    ),
    # The authors' latency MNIST set-up: 784-350-10 with a maximum-voltage readout (they
    # report 97.6 +- 0.1 %); pixels of intensity p > 0 spike once, brighter earlier, blank
    # pixels stay silent. Initial weights scaled from the earlier digits preset (blank pixels silent) by the number of
    # lit pixels (about 150 against 30). Not tuned on the real data here (README).
    "mnist": Task(
        split=_mnist_split,
        n_features=784,
        n_classes=10,
        encoder=_intensity_encode,
        scale=255.0,
        features="784 pixel intensities 0..255 (row-major 28x28, MNIST's IDX files)",
        encoding="intensity p > 0 spikes at t_first + (1 - p/255) (t_last - t_first), blank pixels stay silent",
        default_readout="voltage",
        needs_data=True,
        presets={
            "best": {
                "epochs": 30,
                "hidden": (350,),
                "t_first": 0.0,
                "t_last": 30.0,
                "bias_times": (0.0,),
                "readouts": {
                    "voltage": {"hidden_init": (0.13, 0.13), "output_init": (0.0, 0.16), "window": 60.0, "voltage_scale": 5.0}
                },
            },
        },
    ),
    # N-MNIST, all three saccades (300 ms): 34 x 34 x 2 = 2312 input channels, a hidden layer
    # of 200 and a leaky-integrator readout. Not tuned on the real data here (README).
    "nmnist": EventTask(
        source="nmnist",
        n_features=2312,
        n_classes=10,
        sensor_size=(34, 34, 2),
        trial_ms=300.0,
        features="34 x 34 x 2 event-camera channels of a moving MNIST digit (N-MNIST)",
        encoding="each event is a spike of channel (p * 34 + y) * 34 + x at its time (ms), cropped at 300 ms",
        presets={
            "best": {
                "epochs": 20,
                "batch_size": 32,
                "lr": 1e-3,
                "lr_decay": 1.0,
                "hidden": (200,),
                "hidden_init": (0.02, 0.05),
                "dtype": "float32",
                "readouts": {"voltage": {"output_init": (0.0, 0.07), "window": 300.0, "voltage_scale": 1.0}},
            }
        },
    ),
}
