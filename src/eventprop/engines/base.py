r"""The engine contract: what an engine declares, what it computes, what it saves.

An *engine* simulates LIF layers exactly and computes their EventProp backward. The
layers and the functional API (:mod:`eventprop.layers`) validate the arguments, pick an
engine from the registry (:mod:`eventprop.engines`) and wrap it in one
``torch.autograd.Function``; the engine itself sees validated tensors only.

Capabilities (:class:`Engine` class attributes):

- ``kinds``: the layer kinds it serves (:class:`LayerKind`): ``feedforward`` and
  ``recurrent`` spiking layers (``simulate`` / ``adjoint``), and ``trajectory``: the
  exact voltage trajectory of a readout or of a LIF layer given its spikes
  (``trajectory``);
- ``devices``: device types it runs on (``None``: any);
- ``dtypes``: floating dtypes it accepts;
- ``compute_dtype``: the dtype its spiking layers are simulated and differentiated in
  (``None``: the input's). The autograd function of :mod:`eventprop.layers.functional`
  widens the tensors to it and rounds the results back, so an engine sees this dtype
  only: computed in float64, float32 spike times are correctly rounded at any trial
  length (in float32 arithmetic, ``t + s == t`` once ``s`` is below half a float32 step
  of ``t``, and a long trial's spike loop could stall), and the tangent tolerance is
  float64's;
- ``priority``: ``engine="auto"`` picks the highest-priority engine that can serve the
  call (:func:`~eventprop.engines.select_engine`);
- ``checks_values``: whether ``simulate`` and ``trajectory`` themselves reject NaN,
  negative or non-ascending spike times (inputs, and a trajectory's own ``spikes``) and
  non-finite weights with the ``ValueErrors`` of
  :func:`~eventprop.model.spikes.check_spike_values` and
  :func:`~eventprop.validation.check_finite` (otherwise the caller checks). An engine on a
  GPU does, to read the checks back with its output's size in one host
  synchronisation (:class:`~eventprop.model.spikes.ValueChecks`).

Entry points, for a layer with ``N = weight.shape[0]`` neurons and input
``times`` ``(batch, in_features, max_in)`` (data contract of :mod:`eventprop.model.spikes`):

- ``simulate(kind, spec, times, weight, recurrent_weight) -> (out_times, saved)``:
  ``out_times`` ``(batch, N, max_out)`` in ``times``' dtype and device, ascending,
  ``+inf`` padded, ``max_out >= 1``, every spike kept (``spec.max_spikes`` exceeded:
  :class:`~eventprop.errors.SpikeLimitError`); ``saved`` is a tuple of tensors, passed
  to ``save_for_backward`` and back to ``adjoint`` unchanged. It holds per-event and
  per-spike data only (memory grows with spikes, never with simulated time).
- ``adjoint(kind, spec, grad_out, saved, input_shape, want_times=True) -> LayerGradients``
  (every engine accepts ``want_times``; the layer function passes it by keyword): the exact
  EventProp gradient (paper Table 2, :mod:`eventprop.model.neuron`) for ``grad_out =
  dL/d out_times`` (entries at padding are ignored): ``times``, ``weight`` and
  ``recurrent_weight`` (``None`` for a feed-forward layer; zero diagonal for a
  recurrent one) gradients in their shapes; ``n_tangential`` counts the spikes with
  ``|I - theta| <= tangent_tolerance * theta`` (an int, or a 0-d integer tensor on the
  device that the caller reads together with its check of ``grad_out``:
  :func:`~eventprop.errors.checked_adjoint`), whose jump denominator is clipped to
  that bound when ``spec.tangent_safeguard`` is set (see
  :func:`~eventprop.model.neuron.adjoint_jump`; never a division error); ``jumps``:
  the jump ``J_k`` of the spiking neuron's ``lambda_V`` at every output spike
  (``out_times``' shape, 0 at padding), from which the gradients of the time
  constants follow (:mod:`eventprop.model.sensitivity`). With ``want_times=False``
  (the input times need no gradient, as for data) ``times`` may be ``None``: an engine
  may then skip the sum over the neurons that ``dL/dt`` of each input event costs.
- ``simulate_connections(spec, times, connections, recurrent) -> (out_times, saved)``
  and ``adjoint_connections(spec, grad_out, saved, input_shape, want_tau) ->
  ConnectionGradients`` (kind ``connections``): a layer given as a list of input
  synapses grouped by target neuron (:class:`Connections`: a source, weight and delay
  per synapse, time constants per neuron, threshold 1) and, for a recurrent layer, its
  recurrent synapses grouped by source (:class:`RecurrentConnections`, else ``None``);
  the same outputs and the gradients of every tensor of both (the time constants' only
  where ``want_tau``, zeros otherwise).
- ``trajectory(times, spikes, weight, recurrent_weight, params, window) ->
  VoltageTrajectory``: states just after every event on ``[0, window]``
  (:class:`~eventprop.model.trajectory.VoltageTrajectory`), differentiable by autograd
  in everything it depends on; ``spikes`` is ``None`` for a non-spiking readout.

Reductions over the batch (weight gradients) must not depend on the number of threads.
"""

from __future__ import annotations

import enum
from abc import ABC
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from ..model.neuron import NeuronParams, tangent_tolerance
from ..model.trajectory import VoltageTrajectory

__all__ = ["LayerKind", "LayerSpec", "LayerGradients", "Connections", "RecurrentConnections", "ConnectionGradients", "Engine"]


class LayerKind(str, enum.Enum):
    """What an engine call computes."""

    FEEDFORWARD = "feedforward"
    RECURRENT = "recurrent"
    CONNECTIONS = "connections"
    TRAJECTORY = "trajectory"


@dataclass(frozen=True)
class LayerSpec:
    """Everything of a spiking layer call that is not a tensor.

    Attributes:
        params: time constants and threshold.
        horizon: no spike is emitted after it (``inf``: none).
        max_spikes: cap on spikes per neuron (``None``: none); exceeding it raises.
        tangent_safeguard: clip the gradient's ``1 / (I - theta)`` at tangential spikes.
    """

    params: NeuronParams
    horizon: float
    max_spikes: int | None
    tangent_safeguard: bool = False

    def clip(self, dtype: torch.dtype) -> float:
        """The jump denominator's bound for ``dtype``: ``tangent_tolerance * theta``, or 0 without the safeguard."""
        return tangent_tolerance(dtype) * self.params.threshold if self.tangent_safeguard else 0.0


class LayerGradients(NamedTuple):
    """What :meth:`Engine.adjoint` returns (module docstring)."""

    times: Tensor | None
    weight: Tensor
    recurrent_weight: Tensor | None
    n_tangential: int | Tensor
    jumps: Tensor


class Connections(NamedTuple):
    """A feed-forward layer as a list of synapses grouped by target neuron (kind ``connections``).

    Synapse ``c`` with ``pointer[j] <= c < pointer[j + 1]`` carries every spike of input
    neuron ``source[c]`` to neuron ``j``, arriving ``delay[c]`` later, where it adds
    ``weight[c]`` to ``I_j``; neuron ``j`` has time constants ``tau_mem[j]``,
    ``tau_syn[j]`` and threshold 1 (``spec.params.threshold``).

    Shape:
        - source, weight, delay: ``(C,)`` (``source`` int64, ``delay >= 0``)
        - pointer: ``(N + 1,)`` int64, ascending, ``pointer[0] = 0``, ``pointer[N] = C``
        - tau_mem, tau_syn: ``(N,)``, positive
    """

    source: Tensor
    pointer: Tensor
    weight: Tensor
    delay: Tensor
    tau_mem: Tensor
    tau_syn: Tensor


class RecurrentConnections(NamedTuple):
    """A layer's recurrent synapses grouped by source neuron (kind ``connections``).

    A spike of neuron ``m`` at ``t`` adds ``weight[c]`` to ``I`` of neuron ``target[c]``
    at ``t + delay[c]`` for every ``pointer[m] <= c < pointer[m + 1]``.

    Shape:
        - pointer: ``(N + 1,)`` int64; target, weight, delay: ``(C_rec,)`` (``delay >= 0``)
    """

    pointer: Tensor
    target: Tensor
    weight: Tensor
    delay: Tensor


class ConnectionGradients(NamedTuple):
    """What :meth:`Engine.adjoint_connections` returns: the gradients of the input times and of the synapse lists' tensors."""

    times: Tensor
    weight: Tensor
    delay: Tensor
    tau_mem: Tensor
    tau_syn: Tensor
    n_tangential: int
    jumps: Tensor
    recurrent_weight: Tensor | None = None
    recurrent_delay: Tensor | None = None


class Engine(ABC):
    """An engine: declared capabilities and the entry points of the module docstring.

    Subclasses set the class attributes and implement the entry points of the kinds
    they declare; the others raise ``NotImplementedError``.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[LayerKind]]
    devices: ClassVar[frozenset[str] | None] = None
    dtypes: ClassVar[frozenset[torch.dtype]] = frozenset({torch.float32, torch.float64})
    compute_dtype: ClassVar[torch.dtype | None] = None
    priority: ClassVar[int] = 0
    checks_values: ClassVar[bool] = False

    def unavailable(self) -> str | None:
        """Why the engine cannot run on this installation (``None``: it can)."""
        return None

    def refusal(self, kind: LayerKind, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why the engine cannot serve this call (``None``: it can)."""
        missing = self.unavailable()
        if missing is not None:
            return missing
        if kind not in self.kinds:
            served = ", ".join(sorted(k.value for k in self.kinds))
            return f"it serves {served} layers only, not {kind.value}"
        if self.devices is not None and device.type not in self.devices:
            return f"it runs on {', '.join(sorted(self.devices))} tensors only, not {device}"
        if dtype not in self.dtypes:
            names = ", ".join(sorted(str(d).removeprefix("torch.") for d in self.dtypes))
            return f"it computes in {names} only, not {str(dtype).removeprefix('torch.')}"
        return None

    def simulate(
        self, kind: LayerKind, spec: LayerSpec, times: Tensor, weight: Tensor, recurrent_weight: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Exact forward simulation (module docstring)."""
        raise NotImplementedError(f"engine {self.name!r} does not simulate {kind.value} layers")

    def adjoint(
        self,
        kind: LayerKind,
        spec: LayerSpec,
        grad_out: Tensor,
        saved: tuple[Tensor, ...],
        input_shape: torch.Size,
        want_times: bool = True,
    ) -> LayerGradients:
        """EventProp backward of :meth:`simulate` (module docstring)."""
        raise NotImplementedError(f"engine {self.name!r} has no adjoint for {kind.value} layers")

    def simulate_connections(
        self, spec: LayerSpec, times: Tensor, connections: Connections, recurrent: RecurrentConnections | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Exact forward simulation of a layer given as :class:`Connections` (module docstring)."""
        raise NotImplementedError(f"engine {self.name!r} does not simulate connection-list layers")

    def adjoint_connections(
        self, spec: LayerSpec, grad_out: Tensor, saved: tuple[Tensor, ...], input_shape: torch.Size, want_tau: bool
    ) -> ConnectionGradients:
        """EventProp backward of :meth:`simulate_connections` (module docstring)."""
        raise NotImplementedError(f"engine {self.name!r} has no adjoint for connection-list layers")

    def trajectory(
        self,
        times: Tensor,
        spikes: Tensor | None,
        weight: Tensor,
        recurrent_weight: Tensor | None,
        params: NeuronParams,
        window: float,
    ) -> VoltageTrajectory:
        """Exact voltage trajectory on ``[0, window]`` (module docstring)."""
        raise NotImplementedError(f"engine {self.name!r} computes no trajectories")

    def __repr__(self) -> str:
        return f"<engine {self.name!r}>"
