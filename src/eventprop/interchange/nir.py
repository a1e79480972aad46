r"""NIR interchange: eventprop networks to and from the Neuromorphic Intermediate Representation.

:func:`to_nir` writes a :class:`~eventprop.LIFLayer`, a :class:`~eventprop.LIReadout` or
an ``nn.Sequential`` of them (what :func:`eventprop.training.network.build_model`
returns) as a ``nir.NIRGraph``; :func:`from_nir` turns a graph, or a ``.nir`` file, back
into an ``nn.Sequential``. The ``nir`` package (``pip install eventprop[nir]``) is
imported only when one of them is called.

The graph (layer ``k`` of the sequence; node keys in quotes)::

    "input"      Input, shape (in_features,)
    LIFLayer k:  "k.linear" Linear(weight) -> "k.lif" CubaLIF
                 recurrent: "k.lif" -> "k.recurrent" Linear(recurrent_weight) -> "k.lif"
    LIReadout k: "k.linear" Linear(weight) -> "k.li" CubaLI          (last layer only)
    "output"     Output, shape (out_features of the last layer,)

A layer with axonal delays (``delays="axon"``) gets ``"k.delay"`` Delay(delay) before its
``Linear``; a masked layer's ``Linear`` holds ``weight * mask`` (absent synapses are
zero weights); learned time constants and thresholds are written with their current
values, one per neuron (:func:`from_nir` reads Delay nodes before a ``Linear`` back as
axonal delays; per-neuron time constants and thresholds it does not read back yet).
Delays per synapse and convolutional layers have no NIR form here: :func:`to_nir`
refuses them.

The equations. eventprop, between events (:mod:`eventprop.model.neuron`)::

    tau_mem dV/dt = -V + I,    tau_syn dI/dt = -I,
    input spike of neuron i:  I_n -> I_n + weight[n, i];    V_n = threshold:  V_n -> 0.

NIR's ``CubaLIF`` (``CubaLI``: the same without threshold), fed by ``Linear(W)`` from the
spike trains ``S_i``::

    tau_syn dI/dt = -I + w_in (W S),    tau_mem dv/dt = (v_leak - v) + r I,
    v > v_threshold:  v -> v_reset.

With ``S_i(t) = a sum_k delta(t - t_ik)`` (``a``: the *spike area*, 1 for Dirac spikes) a
spike of ``i`` makes ``I_n`` jump by ``w_in[n] W[n, i] a / tau_syn``, and ``v`` is driven
by ``r I``. So the two models are the same, with ``V = v`` and ``I = r I_nir``, when::

    v_leak = v_reset = 0,    weight[n, i] = r[n] w_in[n] a W[n, i] / tau_syn.      (*)

(In continuous time ``v`` meets the threshold exactly, so NIR's reset to ``v_reset = 0``
is our reset by subtraction.) :func:`to_nir` writes ``W = weight``, ``r = 1``,
``w_in = tau_syn / a`` (so that ``I_nir = I``), ``v_threshold = threshold``,
``v_leak = v_reset = 0``, and the recurrent ``Linear`` is ``recurrent_weight`` with its
diagonal zeroed (as the layer uses it). :func:`from_nir` folds (*) into the rows of
``weight`` and ``recurrent_weight`` (both feed the same ``I``), so it reads any ``r`` and
``w_in``, per neuron too.

Units. Times in the graph (``tau_mem``, ``tau_syn``, ``w_in = tau_syn / a``, and the
metadata's ``horizon`` and ``window``) are in ``time_unit``: ``"ms"`` (the default, the
unit NIR's documents state and eventprop's) or ``"s"``; the models :func:`from_nir`
builds are in ms. Voltages and weights are not scaled (the threshold is in the graph's
voltage unit). The spike area ``a`` (in ``time_unit``) says how the producer fed spikes
into NIR's equations:

- ``1`` (default): Dirac spikes, NIR's equations read literally; what :func:`to_nir`
  writes.
- a time step ``dt``: discrete-time producers whose spikes are unit samples fed to an
  Euler step ``dt``. snnTorch writes its ``Synaptic`` neuron (``syn <- alpha syn + W x``,
  ``mem <- beta mem + syn``) as ``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``,
  ``r = tau_mem / dt``, ``w_in = tau_syn / dt`` with ``dt = 1e-4`` s: read it with
  ``time_unit="s", spike_area=1e-4``, and (*) gives ``weight = W tau_mem / dt = W / (1 - beta)``,
  its continuous-time limit.
- ``"tau_syn"`` (``a = tau_syn``): producers whose ``w_in`` is the current jump per unit
  weight. Norse writes its ``LIFCell`` (``i <- i + W z``, ``tau_mem dv/dt = v_leak - v + i``)
  as ``CubaLIF(tau = 1 / tau_inv in s, r = 1, w_in = 1)``: read it with
  ``time_unit="s", spike_area="tau_syn"``, and (*) gives ``weight = W``.

eventprop-only settings ride in ``metadata["eventprop"]``, so that a round trip restores
them: of each ``CubaLIF`` node ``horizon``, ``max_spikes`` (0: no limit), ``engine`` and
``tangent_safeguard``; of each ``CubaLI`` node ``window`` and ``engine``; of the graph
``time_unit`` and ``spike_area`` (:func:`from_nir` refuses arguments that contradict them).
A graph from elsewhere gets the layers' defaults (no horizon, 1000 spikes, ``"auto"``).

:func:`from_nir` raises ``ValueError``, naming the node, for what the model cannot
express: node types other than ``Input``, ``Linear``, ``Affine`` (zero bias),
``CubaLIF``, ``CubaLI`` and ``Output`` (``LIF`` and ``LI`` have no synaptic current: a
spike moves their voltage at once, a single-exponential kernel that our neurons, with
``tau_syn > 0``, do not have); nonzero ``v_leak`` or ``v_reset``; per-neuron values of
``tau_mem``, ``tau_syn`` or ``v_threshold``; a nonzero ``Affine`` bias; a recurrent
``Linear`` with a nonzero diagonal or on anything but a ``CubaLIF``; graphs that are not
one chain from ``Input`` to ``Output`` (plus recurrent loops).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor, nn

from ..layers import LIFLayer, LIReadout
from ..layers.functional import without_self_connections
from ..validation import positive

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nir

__all__ = ["MS_PER_UNIT", "require_nir", "to_nir"]

#: Milliseconds per time unit of a graph (the ``time_unit`` argument).
MS_PER_UNIT: dict[str, float] = {"ms": 1.0, "s": 1000.0}

_HINT = "NIR interchange needs the nir package: pip install eventprop[nir]  (or: pip install nir)"
_KEY = "eventprop"  # the metadata namespace


def require_nir() -> Any:
    """Import and return the ``nir`` module, or raise ``ModuleNotFoundError`` with the install hint."""
    try:
        import nir
    except ImportError as err:
        raise ModuleNotFoundError(_HINT, name="nir") from err
    return nir


def _ms_per_unit(time_unit: str) -> float:
    """Milliseconds per ``time_unit`` (``ValueError`` unless ``"ms"`` or ``"s"``)."""
    if not isinstance(time_unit, str) or time_unit not in MS_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(MS_PER_UNIT)}, got {time_unit!r}")
    return MS_PER_UNIT[time_unit]


def _check_spike_area(spike_area: float | str) -> float | str:
    """``spike_area`` as a positive float, or the string ``"tau_syn"``."""
    if isinstance(spike_area, str):
        if spike_area != "tau_syn":
            raise ValueError(f"spike_area must be a positive number or 'tau_syn', got {spike_area!r}")
        return "tau_syn"
    return positive("spike_area", spike_area)


def _area(spike_area: float | str, tau_syn: float) -> float:
    """The spike area ``a`` of a layer with synaptic time constant ``tau_syn`` (both in the graph's unit)."""
    return tau_syn if spike_area == "tau_syn" else float(spike_area)


def _name(key: str, node: Any) -> str:
    """How messages name a node: its type and key."""
    return f"{type(node).__name__} node {key!r}"


def _settings(node: Any) -> dict[str, Any]:
    """The eventprop metadata of a node or graph (empty if it has none), numpy scalars as Python numbers."""
    metadata = node.metadata if isinstance(node.metadata, dict) else {}
    settings = metadata.get(_KEY, {})
    if not isinstance(settings, dict):
        return {}
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in settings.items()}


# --- export ----------------------------------------------------------------------------


def to_nir(model: nn.Module, *, time_unit: str = "ms", spike_area: float | str = 1.0) -> nir.NIRGraph:
    r"""The network ``model`` as a NIR graph (see the module docstring for the mapping).

    Every LIF layer becomes a ``Linear`` (``weight``) into a ``CubaLIF``, a recurrent one
    also a ``Linear`` (``recurrent_weight``, diagonal zero) from that ``CubaLIF`` back to
    itself; an ``LIReadout`` becomes a ``Linear`` into a ``CubaLI``. With ``r = 1`` and
    ``w_in = tau_syn / spike_area`` NIR's ``tau_syn dI/dt = -I + w_in (W S)`` makes ``I``
    jump by ``weight[n, i]`` at a spike of ``i``, as in eventprop.

    Args:
        model: an :class:`~eventprop.LIFLayer`, an :class:`~eventprop.LIReadout`, or an
            ``nn.Sequential`` of them whose sizes chain, an ``LIReadout`` only last.
        time_unit: unit of the times written (``"ms"`` or ``"s"``); the model's are ms.
        spike_area: the area ``a`` of one spike in NIR's ``S`` (in ``time_unit``): ``1``
            (Dirac spikes), a consumer's time step ``dt``, or ``"tau_syn"`` (``w_in = 1``).

    Returns:
        a ``nir.NIRGraph`` with nodes ``"input"``, ``"k.linear"``, ``"k.lif"`` or
        ``"k.li"``, ``"k.recurrent"`` (recurrent layers) and ``"output"``; eventprop's
        own settings in ``metadata["eventprop"]``.

    Shape:
        - ``"k.linear"`` weight: ``(out_features, in_features)`` of layer ``k``
        - ``"k.recurrent"`` weight: ``(out_features, out_features)``
        - ``CubaLIF`` / ``CubaLI`` parameters: ``(out_features,)``

    Examples:
        >>> layer = LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, recurrent=True)
        >>> sorted(to_nir(layer).nodes)
        ['0.lif', '0.linear', '0.recurrent', 'input', 'output']
    """
    nir = require_nir()
    unit, area = _ms_per_unit(time_unit), _check_spike_area(spike_area)
    layers = _layers_of(model)
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([layers[0].in_features]))}
    edges: list[tuple[str, str]] = []
    source = "input"
    for k, layer in enumerate(layers):
        linear, neuron = f"{k}.linear", (f"{k}.lif" if isinstance(layer, LIFLayer) else f"{k}.li")
        mask = getattr(layer, "mask", None)
        nodes[linear] = nir.Linear(weight=_numpy(layer.weight if mask is None else layer.weight * mask))
        nodes[neuron] = _neuron_node(nir, layer, unit, area)
        if isinstance(layer, LIFLayer) and layer.delays == "axon":
            nodes[f"{k}.delay"] = nir.Delay(delay=_numpy(layer.delay.clamp(min=0.0)).astype(np.float64) / unit)
            edges.append((source, f"{k}.delay"))
            source = f"{k}.delay"
        edges += [(source, linear), (linear, neuron)]
        if isinstance(layer, LIFLayer) and layer.recurrent_weight is not None:
            nodes[f"{k}.recurrent"] = nir.Linear(weight=_numpy(without_self_connections(layer.recurrent_weight)))
            edges += [(neuron, f"{k}.recurrent"), (f"{k}.recurrent", neuron)]
        source = neuron
    nodes["output"] = nir.Output(output_type=np.array([layers[-1].out_features]))
    edges.append((source, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={_KEY: {"time_unit": time_unit, "spike_area": area}})


def _layers_of(model: nn.Module) -> list[LIFLayer | LIReadout]:
    """The layers of ``model`` in order (``ValueError`` unless they form an exportable network)."""
    layers = list(model) if isinstance(model, nn.Sequential) else [model]
    if not layers:
        raise ValueError("to_nir: the nn.Sequential is empty")
    for k, layer in enumerate(layers):
        if not isinstance(layer, (LIFLayer, LIReadout)):
            raise ValueError(
                f"to_nir exports an LIFLayer, an LIReadout or an nn.Sequential of them; module {k} is a "
                f"{type(layer).__name__}"
            )
        if isinstance(layer, LIFLayer) and layer.delays == "synapse":
            raise ValueError(
                f"to_nir: module {k} has a delay per synapse, which NIR cannot express (its Delay node delays a whole "
                "input neuron: delays='axon')"
            )
        if isinstance(layer, LIReadout) and k < len(layers) - 1:
            raise ValueError(f"to_nir: module {k} is an LIReadout but not the last module (a readout emits no spikes)")
        if k and layer.in_features != layers[k - 1].out_features:
            raise ValueError(
                f"to_nir: module {k} has {layer.in_features} inputs, module {k - 1} has "
                f"{layers[k - 1].out_features} outputs"
            )
    return layers


def _numpy(tensor: Tensor) -> np.ndarray:
    """A numpy copy of a parameter (the graph must not alias the model)."""
    return tensor.detach().cpu().numpy().copy()


def _neuron_node(nir: Any, layer: LIFLayer | LIReadout, unit: float, spike_area: float | str) -> Any:
    """The ``CubaLIF`` (LIF layer) or ``CubaLI`` (readout) node of ``layer``, times in the graph's unit."""
    n = layer.out_features

    def full(value: float | Tensor) -> np.ndarray:
        if isinstance(value, Tensor):  # a learned constant: its current values
            return np.broadcast_to(value.detach().cpu().numpy().astype(np.float64), (n,)).copy()
        return np.full(n, value, dtype=np.float64)

    if isinstance(layer, LIFLayer):
        tau_mem, tau_syn, threshold = full(layer.tau_mem), full(layer.tau_syn), full(layer.threshold)
    else:
        tau_mem, tau_syn, threshold = full(layer.params.tau_mem), full(layer.params.tau_syn), None
    tau_syn = tau_syn / unit
    common = {
        "tau_syn": tau_syn,
        "tau_mem": tau_mem / unit,
        "r": full(1.0),
        "v_leak": full(0.0),
        "w_in": tau_syn / np.array([_area(spike_area, t) for t in tau_syn]),
    }
    if isinstance(layer, LIReadout):
        return nir.CubaLI(**common, metadata={_KEY: {"window": layer.window / unit, "engine": layer.engine}})
    settings = {
        "horizon": layer.horizon / unit,
        "max_spikes": layer.max_spikes or 0,
        "engine": layer.engine,
        "tangent_safeguard": layer.tangent_safeguard,
    }
    return nir.CubaLIF(**common, v_threshold=threshold, v_reset=full(0.0), metadata={_KEY: settings})


# --- import ----------------------------------------------------------------------------
