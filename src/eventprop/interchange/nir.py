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

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DEFAULT_MAX_SPIKES
from ..layers import LIFLayer, LIReadout
from ..layers.functional import without_self_connections
from ..validation import check_float_dtype, positive

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nir

__all__ = ["MS_PER_UNIT", "from_nir", "require_nir", "to_nir"]

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
        nodes[linear] = nir.Linear(weight=_numpy(layer.weight))
        nodes[neuron] = _neuron_node(nir, layer, unit, area)
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
    p, n = layer.params, layer.out_features
    tau_syn = p.tau_syn / unit

    def full(value: float) -> np.ndarray:
        return np.full(n, value, dtype=np.float64)

    common = {
        "tau_syn": full(tau_syn),
        "tau_mem": full(p.tau_mem / unit),
        "r": full(1.0),
        "v_leak": full(0.0),
        "w_in": full(tau_syn / _area(spike_area, tau_syn)),
    }
    if isinstance(layer, LIReadout):
        return nir.CubaLI(**common, metadata={_KEY: {"window": layer.window / unit, "engine": layer.engine}})
    settings = {
        "horizon": layer.horizon / unit,
        "max_spikes": layer.max_spikes or 0,
        "engine": layer.engine,
        "tangent_safeguard": layer.tangent_safeguard,
    }
    return nir.CubaLIF(**common, v_threshold=full(p.threshold), v_reset=full(0.0), metadata={_KEY: settings})


# --- import ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reading:
    """How :func:`from_nir` reads a graph: its conventions and the new parameters' dtype and device."""

    unit: float  # ms per time unit of the graph
    spike_area: float | str
    window: float | None  # ms, overrides the CubaLI metadata
    dtype: torch.dtype
    device: torch.device | str | None


def from_nir(
    graph_or_path: nir.NIRGraph | str | os.PathLike[str],
    *,
    time_unit: str = "ms",
    spike_area: float | str = 1.0,
    window: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> nn.Sequential:
    r"""The eventprop network of a NIR graph (see the module docstring for the mapping).

    The graph must be one chain ``Input -> [Linear | Affine] -> CubaLIF -> ... -> Output``
    (a missing ``Linear`` is the identity), optionally ending in a ``CubaLI`` readout, with
    recurrent loops ``CubaLIF -> Linear -> CubaLIF``. Each ``CubaLIF`` becomes an
    :class:`~eventprop.LIFLayer` (recurrent if it has a loop), the ``CubaLI`` an
    :class:`~eventprop.LIReadout`, with ``weight = r w_in a W / tau_syn`` row by row.
    No random numbers are drawn.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a ``.nir`` file (``nir.read``).
        time_unit: unit of the graph's times (``"ms"`` or ``"s"``); the model's are ms.
        spike_area: the area ``a`` of one spike in NIR's ``S`` (in ``time_unit``): ``1``
            (Dirac spikes, what :func:`to_nir` writes), the producer's time step ``dt``
            (snnTorch: ``1e-4`` with ``time_unit="s"``), or ``"tau_syn"`` (``w_in`` is the
            current jump per unit weight: Norse's export).
        window: the window ``T`` (ms) of an ``LIReadout``; default: the one stored in the
            ``CubaLI`` node's metadata (required for a readout from elsewhere).
        dtype: of the weights; default ``float32`` if all the graph's weights are
            ``float32``, else ``float64``.
        device: of the weights.

    Returns:
        an ``nn.Sequential`` of ``LIFLayer`` (and a last ``LIReadout``).

    Raises:
        ValueError: naming the node, for anything the model cannot express (see the
            module docstring), and for ``time_unit``/``spike_area`` that contradict what
            eventprop recorded in the graph.
        ModuleNotFoundError: without the ``nir`` package.

    Shape:
        - ``Linear`` / ``Affine`` weight ``W``: ``(out, in)``; a recurrent one ``(out, out)``
        - ``CubaLIF`` / ``CubaLI`` arrays: ``(out,)`` or scalars; ``r`` and ``w_in`` may
          differ per neuron, the others must not

    Examples:
        >>> net = from_nir(to_nir(LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0)))
        >>> net[0].params.tau_mem, tuple(net[0].weight.shape)
        (20.0, (2, 3))
    """
    nir = require_nir()
    unit, area = _ms_per_unit(time_unit), _check_spike_area(spike_area)
    window = None if window is None else positive("window", window)
    graph = nir.read(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"from_nir needs a nir.NIRGraph or the path of a .nir file, got {type(graph).__name__}")
    _check_recorded(graph, time_unit, area)
    reading = _Reading(unit, area, window, _dtype(nir, graph, dtype), device)
    chain, loops = _walk(nir, graph)
    return nn.Sequential(*_build(nir, graph, chain, loops, reading))


def _check_recorded(graph: Any, time_unit: str, spike_area: float | str) -> None:
    """``ValueError`` if eventprop wrote the graph with other conventions than those given."""
    recorded = _settings(graph)
    for name, given in (("time_unit", time_unit), ("spike_area", spike_area)):
        if name in recorded and recorded[name] != given:
            raise ValueError(
                f"the graph was written by eventprop with {name}={recorded[name]!r}, but from_nir was called with "
                f"{name}={given!r}: pass {name}={recorded[name]!r}"
            )


def _dtype(nir: Any, graph: Any, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of the weights: ``dtype``, else float32 if every weight of the graph is, else float64."""
    if dtype is not None:
        check_float_dtype("dtype", dtype)
        return dtype
    kinds = [np.asarray(n.weight).dtype for n in graph.nodes.values() if isinstance(n, (nir.Linear, nir.Affine))]
    return torch.float32 if kinds and all(kind == np.float32 for kind in kinds) else torch.float64


def _walk(nir: Any, graph: Any) -> tuple[list[str], dict[str, str]]:
    """The node keys from the Input to the Output, and the recurrent loops ``{CubaLIF key: Linear key}``."""
    nodes = graph.nodes
    succ: dict[str, list[str]] = {key: [] for key in nodes}
    pred: dict[str, list[str]] = {key: [] for key in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"the edge ({a!r}, {b!r}) names a node the graph does not have")
        if a == b:
            raise ValueError(f"{_name(a, nodes[a])} is connected to itself (eventprop has no self-connections)")
        succ[a].append(b)
        pred[b].append(a)
    loops = {
        pred[key][0]: key
        for key, node in nodes.items()
        if isinstance(node, (nir.Linear, nir.Affine)) and len(pred[key]) == 1 and pred[key] == succ[key]
    }
    for neuron, linear in loops.items():
        if not isinstance(nodes[neuron], nir.CubaLIF):
            raise ValueError(
                f"{_name(neuron, nodes[neuron])} has a recurrent loop through {_name(linear, nodes[linear])}: only "
                "CubaLIF layers can be recurrent"
            )
    chain = [key for key, node in nodes.items() if isinstance(node, nir.Input)]
    if len(chain) != 1:
        raise ValueError(f"the graph must have exactly one Input node, it has {len(chain)}: {chain}")
    while not isinstance(nodes[chain[-1]], nir.Output):
        key = chain[-1]
        after = [k for k in succ[key] if k != loops.get(key)]
        if len(after) != 1:
            raise ValueError(
                f"{_name(key, nodes[key])} feeds {len(after)} nodes {after}: from_nir reads one chain from Input to "
                "Output (plus recurrent loops)"
            )
        into = [k for k in pred[after[0]] if k != loops.get(after[0])]
        if into != [key] or after[0] in chain:
            raise ValueError(
                f"{_name(after[0], nodes[after[0]])} receives from {into}: from_nir reads one chain from Input to "
                "Output (plus recurrent loops)"
            )
        chain.append(after[0])
    used = set(chain) | {loops[key] for key in chain if key in loops}
    unused = [key for key in nodes if key not in used]
    if unused:
        raise ValueError(f"nodes {unused} are not on the chain from the Input to the Output")
    return chain, loops


def _build(nir: Any, graph: Any, chain: list[str], loops: dict[str, str], reading: _Reading) -> list[nn.Module]:
    """The layers of the chain ``Input, ..., Output``."""
    nodes = graph.nodes
    n_in = _input_size(chain[0], nodes[chain[0]])
    layers: list[nn.Module] = []
    pending: str | None = None  # a Linear waiting for its neuron layer
    for key in chain[1:-1]:
        node = nodes[key]
        if layers and isinstance(layers[-1], LIReadout):
            raise ValueError(f"{_name(key, node)} follows the CubaLI readout: a CubaLI must be the last layer")
        if isinstance(node, (nir.Linear, nir.Affine)):
            if pending is not None:
                raise ValueError(
                    f"{_name(key, node)} follows {_name(pending, nodes[pending])}: a layer has one weight matrix"
                )
            pending = key
            continue
        if not isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            raise _unsupported(key, node)
        weight = np.eye(n_in) if pending is None else _weight(nir, pending, nodes[pending])
        if weight.shape[1] != n_in:
            raise ValueError(f"{_name(pending, nodes[pending])} has {weight.shape[1]} inputs, its source has {n_in}")
        recurrent = _recurrent(nir, loops[key], nodes[loops[key]], weight.shape[0]) if key in loops else None
        layers.append(_layer(nir, key, node, weight, recurrent, reading))
        n_in, pending = weight.shape[0], None
    if pending is not None:
        raise ValueError(f"{_name(pending, nodes[pending])} feeds the Output: the last layer must be CubaLIF or CubaLI")
    if not layers:
        raise ValueError("the graph has no CubaLIF or CubaLI layer between its Input and its Output")
    return layers


def _unsupported(key: str, node: Any) -> ValueError:
    """The error for a node type that eventprop's model cannot express."""
    why = ""
    if type(node).__name__ in ("LIF", "LI"):
        why = (
            " (it has no synaptic current: a spike moves its voltage at once, a single-exponential kernel that "
            "eventprop's neurons, with tau_syn > 0, cannot reproduce)"
        )
    return ValueError(
        f"{_name(key, node)} is not supported{why}; from_nir reads Input, Linear, Affine (zero bias), CubaLIF, "
        "CubaLI (last layer) and Output nodes"
    )


def _input_size(key: str, node: Any) -> int:
    """Number of input neurons of the Input node (``ValueError`` unless its shape is one-dimensional)."""
    shape = np.asarray(node.input_type["input"]).reshape(-1)
    if shape.size != 1:
        raise ValueError(f"{_name(key, node)} has shape {tuple(shape)}: eventprop layers take a vector of neurons")
    return int(shape[0])


def _weight(nir: Any, key: str, node: Any) -> np.ndarray:
    """The weight ``(out, in)`` of a Linear or zero-bias Affine node, as float64."""
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2 or not np.isfinite(weight).all():
        raise ValueError(f"{_name(key, node)}: the weight must be a finite (out, in) matrix, got shape {weight.shape}")
    if isinstance(node, nir.Affine) and node.bias is not None and np.any(np.asarray(node.bias) != 0):
        raise ValueError(f"{_name(key, node)} has a nonzero bias: eventprop's neurons have no bias current")
    return weight


def _recurrent(nir: Any, key: str, node: Any, n: int) -> np.ndarray:
    """The recurrent weight ``(n, n)`` of a loop's Linear node (``ValueError`` for a nonzero diagonal)."""
    weight = _weight(nir, key, node)
    if weight.shape != (n, n):
        raise ValueError(f"{_name(key, node)}: a recurrent weight must have shape ({n}, {n}), got {weight.shape}")
    if np.any(np.diagonal(weight) != 0):
        raise ValueError(
            f"{_name(key, node)}: the recurrent weight has a nonzero diagonal (self-connections), which eventprop's "
            "recurrent layers do not have"
        )
    return weight


def _shared(key: str, node: Any, field: str) -> float:
    """The one value of ``field`` that all neurons of the node share (``ValueError`` for per-neuron values)."""
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise ValueError(
            f"{_name(key, node)}: {field} has {values.size} different values; per-neuron values are not supported yet "
            f"(all neurons of a layer share one {field})"
        )
    return float(values[0])


def _zero(key: str, node: Any, field: str) -> None:
    """``ValueError`` unless ``field`` is 0 for every neuron (eventprop's neurons rest at and reset to 0)."""
    values = np.asarray(getattr(node, field), dtype=np.float64)
    if np.any(values != 0):
        raise ValueError(
            f"{_name(key, node)}: {field} must be 0 (eventprop's neurons rest at and reset to 0), got {values.tolist()}"
        )


def _input_scale(key: str, node: Any, tau_syn: float, spike_area: float | str, n: int) -> np.ndarray:
    """``r w_in a / tau_syn`` per neuron ``(n,)``: the current jump per unit of ``W`` (rule (*))."""
    r, w_in = np.asarray(node.r, dtype=np.float64), np.asarray(node.w_in, dtype=np.float64)
    try:
        scale = np.broadcast_to(r * w_in * _area(spike_area, tau_syn) / tau_syn, (n,))
    except ValueError as err:
        raise ValueError(f"{_name(key, node)}: r and w_in must hold one value or one per neuron ({n})") from err
    if not np.isfinite(scale).all():
        raise ValueError(f"{_name(key, node)}: r and w_in must be finite")
    return scale


def _layer(
    nir: Any, key: str, node: Any, weight: np.ndarray, recurrent: np.ndarray | None, reading: _Reading
) -> nn.Module:
    """The ``LIFLayer`` of a CubaLIF node or the ``LIReadout`` of a CubaLI node, with its weights."""
    tau_syn = _shared(key, node, "tau_syn")
    _zero(key, node, "v_leak")
    scale = _input_scale(key, node, tau_syn, reading.spike_area, weight.shape[0])[:, None]
    times = {"tau_mem": _shared(key, node, "tau_mem") * reading.unit, "tau_syn": tau_syn * reading.unit}
    if isinstance(node, nir.CubaLI):
        cls, settings = LIReadout, _readout_settings(key, node, reading)
    else:
        cls, settings = LIFLayer, _lif_settings(key, node, recurrent is not None, reading)
    try:  # on the meta device: no initial weights are drawn, the global random state is left alone
        layer = cls(weight.shape[1], weight.shape[0], **times, **settings, device="meta", dtype=reading.dtype)
    except ValueError as err:
        raise ValueError(f"{_name(key, node)}: {err}") from err
    factory = {"dtype": reading.dtype, "device": reading.device}
    layer.weight = nn.Parameter(torch.as_tensor(scale * weight, **factory))
    if recurrent is not None:
        layer.recurrent_weight = nn.Parameter(torch.as_tensor(scale * recurrent, **factory))
    return layer


def _lif_settings(key: str, node: Any, recurrent: bool, reading: _Reading) -> dict[str, Any]:
    """The ``LIFLayer`` arguments of a CubaLIF node besides sizes and time constants (defaults without metadata)."""
    _zero(key, node, "v_reset")
    settings = _settings(node)
    budget = (int(settings["max_spikes"]) or None) if "max_spikes" in settings else DEFAULT_MAX_SPIKES
    return {
        "threshold": _shared(key, node, "v_threshold"),
        "recurrent": recurrent,
        "horizon": float(settings.get("horizon", math.inf)) * reading.unit,
        "max_spikes": budget,
        "engine": str(settings.get("engine", "auto")),
        "tangent_safeguard": bool(settings.get("tangent_safeguard", False)),
    }


def _readout_settings(key: str, node: Any, reading: _Reading) -> dict[str, Any]:
    """The ``LIReadout`` arguments of a CubaLI node: the window (``reading``'s, else the metadata's) and the engine."""
    settings = _settings(node)
    if reading.window is None and "window" not in settings:
        raise ValueError(
            f"{_name(key, node)} has no eventprop window in its metadata: pass from_nir(..., window=T) (T in ms)"
        )
    window = reading.window if reading.window is not None else float(settings["window"]) * reading.unit
    return {"window": window, "engine": str(settings.get("engine", "auto"))}
