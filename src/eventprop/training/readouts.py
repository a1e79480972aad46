r"""Readouts: the output layer of a classifier, its loss and its accuracy.

A readout is a small frozen dataclass whose fields are named like the configuration
fields they take (:func:`~eventprop.training.network.readout_of` fills them); the
trainer asks it for the output layer and, per minibatch, for the loss and the correct
samples of that layer's output. Registered in :data:`READOUTS` by name:

- ``first-spike`` (:class:`FirstSpikeReadout`): LIF output neurons, the paper's
  first-spike cross-entropy (eq. 35); correct = the label neuron fires strictly first.
  Optionally (``silent_push > 0``) samples whose label neuron stays silent, which eq. 35
  leaves without gradient, add ``silent_push * (threshold - max_t V_label) / batch``
  (:func:`~eventprop.label_voltage_gap` on ``[0, t_silent]``, exact gradient through
  the output layer's trajectory).
- ``voltage`` (:class:`VoltageReadout`): leaky integrators (no threshold) on
  ``[0, window]``, softmax cross-entropy of ``voltage_scale * max_t V``; correct = the
  label neuron has the strictly largest maximum.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .. import layers, losses  # lazy packages: torch loads when a readout computes

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["Readout", "FirstSpikeReadout", "VoltageReadout", "READOUTS"]


class Readout(ABC):
    """Output layer of a classifier and what is computed from its output."""

    name: ClassVar[str]
    #: whether the output layer emits spikes (counted in the activity, subject to bumping)
    spiking: ClassVar[bool]

    @abstractmethod
    def build(
        self,
        n_in: int,
        n_classes: int,
        neuron: dict[str, float],
        init: tuple[float, float],
        *,
        engine: str,
        max_spikes: int | None,
        tangent_safeguard: bool,
        **factory: object,
    ) -> nn.Module:
        """The output layer.

        Args:
            n_in, n_classes: its input and output sizes.
            neuron: ``tau_mem``, ``tau_syn``, ``threshold`` of the network.
            init: ``(mean, std)`` of its weights.
            engine, max_spikes, tangent_safeguard: of the network's LIF layers.
            factory: ``dtype`` and ``device`` of its parameters.
        """

    @abstractmethod
    def output(self, layer: nn.Module, x: Tensor) -> Tensor:
        """What the loss and the accuracy read from the output layer for input spikes ``x``."""

    @abstractmethod
    def loss(self, out: Tensor, labels: Tensor) -> Tensor:
        """Mean loss of the minibatch."""

    @abstractmethod
    def correct(self, out: Tensor, labels: Tensor) -> Tensor:
        """``(batch,)`` bool: correctly classified samples."""

    def predict(self, out: Tensor) -> Tensor:
        """``(batch,)`` predicted classes (``-1`` where the readout names none); needed by
        ``eventprop evaluate --predictions``."""
        raise NotImplementedError(f"{type(self).__name__} does not name predicted classes")

    def auxiliary_loss(self, layer: nn.Module, x: Tensor, out: Tensor, labels: Tensor) -> Tensor | None:
        """A training-only term added to :meth:`loss` (not reported); ``None``: none."""
        return None


@dataclass(frozen=True)
class FirstSpikeReadout(Readout):
    """LIF output neurons and the first-spike cross-entropy (module docstring).

    Attributes:
        tau0, tau1, alpha, t_silent: of :func:`~eventprop.first_spike_cross_entropy`.
        silent_push: weight of the label-voltage gap of silent label neurons (0: off).
    """

    tau0: float
    tau1: float
    alpha: float
    t_silent: float
    silent_push: float = 0.0

    name: ClassVar[str] = "first-spike"
    spiking: ClassVar[bool] = True

    def build(
        self,
        n_in: int,
        n_classes: int,
        neuron: dict[str, float],
        init: tuple[float, float],
        *,
        engine: str,
        max_spikes: int | None,
        tangent_safeguard: bool,
        **factory: object,
    ) -> nn.Module:
        return layers.LIFLayer(
            n_in, n_classes, **neuron, init_mean=init[0], init_std=init[1], engine=engine, max_spikes=max_spikes,
            tangent_safeguard=tangent_safeguard, **factory,
        )  # fmt: skip

    def output(self, layer: nn.Module, x: Tensor) -> Tensor:
        return layer(x)

    def loss(self, out: Tensor, labels: Tensor) -> Tensor:
        return losses.first_spike_cross_entropy(
            losses.first_spikes(out), labels, tau0=self.tau0, tau1=self.tau1, alpha=self.alpha, t_silent=self.t_silent
        )

    def correct(self, out: Tensor, labels: Tensor) -> Tensor:
        return losses.first_spike_correct(losses.first_spikes(out), labels)

    def predict(self, out: Tensor) -> Tensor:
        """The unique earliest output neuron; ``-1`` if none fires or several tie."""
        return losses.first_spike_predictions(losses.first_spikes(out))

    def auxiliary_loss(self, layer: nn.Module, x: Tensor, out: Tensor, labels: Tensor) -> Tensor | None:
        """``silent_push / batch * sum (threshold - max_t V_label)`` over samples whose label neuron is silent.

        ``None`` when off or when every label neuron fires.
        """
        if self.silent_push == 0:
            return None
        silent = losses.first_spikes(out).gather(1, labels[:, None]).squeeze(1).isinf()
        if not bool(silent.any()):
            return None
        idx = silent.nonzero().squeeze(1)
        p = layer.params
        trajectory = layers.lif_trajectory(
            x[idx], out[idx], layer.weight, tau_mem=p.tau_mem, tau_syn=p.tau_syn, threshold=p.threshold, window=self.t_silent,
            engine=layer.engine,
        )  # fmt: skip
        return self.silent_push * losses.label_voltage_gap(trajectory, labels[idx], reduction="sum") / labels.shape[0]


@dataclass(frozen=True)
class VoltageReadout(Readout):
    """Leaky-integrator output neurons and the max-over-time voltage cross-entropy.

    Attributes:
        window: ``T`` of the maximum over ``[0, T]`` (time unit).
        voltage_scale: softmax scale on ``max V`` (1 / voltage unit).
    """

    window: float
    voltage_scale: float

    name: ClassVar[str] = "voltage"
    spiking: ClassVar[bool] = False

    def build(
        self,
        n_in: int,
        n_classes: int,
        neuron: dict[str, float],
        init: tuple[float, float],
        *,
        engine: str,
        max_spikes: int | None,
        tangent_safeguard: bool,
        **factory: object,
    ) -> nn.Module:
        # no threshold: it never fires
        taus = {"tau_mem": neuron["tau_mem"], "tau_syn": neuron["tau_syn"]}
        return layers.LIReadout(
            n_in, n_classes, **taus, window=self.window, init_mean=init[0], init_std=init[1], engine=engine, **factory
        )

    def output(self, layer: nn.Module, x: Tensor) -> Tensor:
        return layer(x).max()[0]

    def loss(self, out: Tensor, labels: Tensor) -> Tensor:
        return losses.voltage_cross_entropy(out, labels, scale=self.voltage_scale)

    def correct(self, out: Tensor, labels: Tensor) -> Tensor:
        return losses.voltage_correct(out, labels)

    def predict(self, out: Tensor) -> Tensor:
        """The output neuron of the largest maximum voltage."""
        return losses.voltage_predictions(out)


#: Readouts by name (the ``readout`` field of the configuration).
READOUTS: dict[str, type[Readout]] = {r.name: r for r in (FirstSpikeReadout, VoltageReadout)}


