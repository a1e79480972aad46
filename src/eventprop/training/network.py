"""The classifier network of a run: a stack of hidden LIF layers and a readout layer."""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..layers import LIFLayer
from .config import TrainConfig
from .readouts import READOUTS, Readout

__all__ = ["build_model", "readout_of", "forward_layers"]


def readout_of(config: TrainConfig) -> Readout:
    """The readout named by ``config.readout``, its fields taken from the configuration fields of the same names."""
    cls = READOUTS[config.readout]
    return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


def build_model(config: TrainConfig, n_inputs: int, n_classes: int) -> nn.Sequential:
    """``n_inputs -> hidden[0] -> ... -> hidden[-1] -> n_classes``.

    Every hidden layer is a :class:`~eventprop.LIFLayer` (feed-forward or recurrent, as
    configured per layer; learned time constants, thresholds and delays as configured);
    the last module is the readout's output layer. Weights are drawn in network order
    (input weights, then recurrent weights, layer by layer; then the delays).
    """
    factory = {"dtype": config.torch_dtype, "device": config.device}
    neuron = {"tau_mem": config.tau_mem, "tau_syn": config.tau_syn, "threshold": config.threshold}
    budget = config.max_spikes or None  # 0: no limit
    learned = {
        "learn_tau": False if config.learn_tau == "off" else config.learn_tau,
        "learn_threshold": config.learn_threshold,
        "delays": None if config.delays == "none" else config.delays,
        "init_delay": config.init_delay,
    }
    layers: list[nn.Module] = []
    n_in = n_inputs
    for plan in config.hidden_layers():
        rec = {} if plan.recurrent_init is None else {"recurrent_init_mean": plan.recurrent_init[0], "recurrent_init_std": plan.recurrent_init[1]}
        layers.append(
            LIFLayer(
                n_in, plan.size, recurrent=plan.recurrent, init_mean=plan.init[0], init_std=plan.init[1],
                engine=config.engine, max_spikes=budget, tangent_safeguard=config.tangent_safeguard, **rec, **neuron,
                **learned, **factory,
            )  # fmt: skip
        )
        n_in = plan.size
    readout = readout_of(config).build(
        n_in, n_classes, neuron, config.output_init, engine=config.engine, max_spikes=budget,
        tangent_safeguard=config.tangent_safeguard, **factory,
    )  # fmt: skip
    layers.append(readout)
    return nn.Sequential(*layers)


def forward_layers(model: nn.Sequential, readout: Readout, x: Tensor) -> list[Tensor]:
    """The output of every layer for input spikes ``x``; the last is the readout's output."""
    *hidden, output = model  # (slicing an nn.Sequential would build a new module every call)
    outs = []
    for layer in hidden:
        x = layer(x)
        outs.append(x)
    outs.append(readout.output(output, x))
    return outs
