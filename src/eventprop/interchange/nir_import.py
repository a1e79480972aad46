"""NIR import: :func:`from_nir` turns a ``nir.NIRGraph`` (or a ``.nir`` file) into an
``nn.Sequential`` of :class:`~eventprop.LIFLayer` and :class:`~eventprop.LIReadout`.

The mapping, the units and every refusal are derived in :mod:`.nir` (export and the
conventions shared by both directions).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..errors import DEFAULT_MAX_SPIKES
from ..layers import LIFLayer, LIReadout
from ..validation import check_float_dtype, positive
from .nir import _area, _check_spike_area, _ms_per_unit, _name, _settings, require_nir

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nir

__all__ = ["from_nir"]


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
    delay: str | None = None  # a Delay waiting for its layer
    for key in chain[1:-1]:
        node = nodes[key]
        if layers and isinstance(layers[-1], LIReadout):
            raise ValueError(f"{_name(key, node)} follows the CubaLI readout: a CubaLI must be the last layer")
        if isinstance(node, nir.Delay):
            if pending is not None or delay is not None:
                raise ValueError(
                    f"{_name(key, node)}: a Delay must come right before a layer's Linear (one delay per input "
                    "neuron: an axonal delay); a delay per neuron or two Delays in a row are not supported"
                )
            delay = key
            continue
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
        delays = _delays(delay, nodes[delay], n_in, reading) if delay is not None else None
        if delays is not None and isinstance(node, nir.CubaLI):
            raise ValueError(f"{_name(delay, nodes[delay])} feeds the CubaLI readout, which has no delays")
        layers.append(_layer(nir, key, node, weight, recurrent, reading, delays))
        n_in, pending, delay = weight.shape[0], None, None
    if pending is not None or delay is not None:
        last = pending if pending is not None else delay
        raise ValueError(f"{_name(last, nodes[last])} feeds the Output: the last layer must be CubaLIF or CubaLI")
    if not layers:
        raise ValueError("the graph has no CubaLIF or CubaLI layer between its Input and its Output")
    return layers


def _delays(key: str, node: Any, n_in: int, reading: _Reading) -> np.ndarray:
    """The axonal delays (ms) of a Delay node before a layer: one per input neuron, finite and ``>= 0``."""
    values = np.asarray(node.delay, dtype=np.float64).reshape(-1)
    if values.shape != (n_in,):
        raise ValueError(f"{_name(key, node)}: delay must hold one value per input neuron ({n_in}), got {values.size}")
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise ValueError(f"{_name(key, node)}: delay must be finite and >= 0")
    return values * reading.unit


def _unsupported(key: str, node: Any) -> ValueError:
    """The error for a node type that eventprop's model cannot express."""
    why = ""
    if type(node).__name__ in ("LIF", "LI"):
        why = (
            " (it has no synaptic current: a spike moves its voltage at once, a single-exponential kernel that "
            "eventprop's neurons, with tau_syn > 0, cannot reproduce)"
        )
    return ValueError(
        f"{_name(key, node)} is not supported{why}; from_nir reads Input, Delay (before a Linear), Linear, Affine "
        "(zero bias), CubaLIF, CubaLI (last layer) and Output nodes"
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
    nir: Any,
    key: str,
    node: Any,
    weight: np.ndarray,
    recurrent: np.ndarray | None,
    reading: _Reading,
    delays: np.ndarray | None = None,
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
        if delays is not None:
            settings["delays"] = "axon"
    try:  # on the meta device: no initial weights are drawn, the global random state is left alone
        layer = cls(weight.shape[1], weight.shape[0], **times, **settings, device="meta", dtype=reading.dtype)
    except ValueError as err:
        raise ValueError(f"{_name(key, node)}: {err}") from err
    factory = {"dtype": reading.dtype, "device": reading.device}
    layer.weight = nn.Parameter(torch.as_tensor(scale * weight, **factory))
    if recurrent is not None:
        layer.recurrent_weight = nn.Parameter(torch.as_tensor(scale * recurrent, **factory))
    if delays is not None:
        layer.delay = nn.Parameter(torch.as_tensor(delays, **factory))
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
