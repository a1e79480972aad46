"""Engines behind one contract (:mod:`eventprop.engines.base`), and their registry.

``engine="auto"`` picks, among the registered engines that can serve a call (layer
kind, device, dtype, installed packages), the one with the highest priority; an
explicit name that cannot serve the call raises ``ValueError`` naming the engine and
why. A new engine is one module (or folder) with an :class:`Engine` subclass, and one
:func:`register_engine` line below.

Registered:

- ``"numba"`` (:mod:`eventprop.engines.numba_cpu`): compiled CPU kernels, every kind
  (feed-forward, recurrent, connection lists, trajectory); picked by ``auto`` for CPU
  tensors when numba is installed;
- ``"cuda"`` (:mod:`eventprop.engines.numba_cuda`): numba-cuda kernels, feed-forward
  and recurrent layers and trajectories; picked by ``auto`` for CUDA tensors when numba-cuda finds a GPU (and, under
  numba's CUDA simulator, available for CPU tensors by name: the tests use it so);
- ``"torch"`` (:mod:`eventprop.engines.pytorch`): vectorised PyTorch, feed-forward,
  recurrent and trajectory, any device.
"""

from __future__ import annotations

import functools

import torch

from ..compat import check_torch_version

check_torch_version(torch.__version__)  # every computation goes through the engines

from .base import (  # noqa: E402 (after the version check)
    ConnectionGradients,
    Connections,
    Engine,
    LayerGradients,
    LayerKind,
    LayerSpec,
    RecurrentConnections,
)
from .numba_cpu import NumbaEngine  # noqa: E402
from .numba_cuda import CudaEngine  # noqa: E402
from .pytorch import TorchEngine  # noqa: E402

__all__ = [
    "Engine",
    "LayerKind",
    "LayerSpec",
    "LayerGradients",
    "Connections",
    "RecurrentConnections",
    "ConnectionGradients",
    "register_engine",
    "get_engine",
    "engine_names",
    "select_engine",
]

_REGISTRY: dict[str, Engine] = {}


def register_engine(engine: Engine) -> Engine:
    """Add ``engine`` under ``engine.name`` (``ValueError`` if the name is taken or ``"auto"``)."""
    if not isinstance(engine, Engine):
        raise ValueError(f"engine must be an Engine instance, got {type(engine).__name__}")
    if engine.name == "auto" or engine.name in _REGISTRY:
        raise ValueError(f"an engine named {engine.name!r} cannot be registered (reserved or taken)")
    _REGISTRY[engine.name] = engine
    _select.cache_clear()
    return engine


def engine_names() -> tuple[str, ...]:
    """Names of the registered engines, highest priority first."""
    return tuple(sorted(_REGISTRY, key=lambda n: -_REGISTRY[n].priority))


def get_engine(name: str) -> Engine:
    """The registered engine ``name`` (``ValueError`` if there is none)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"engine must be 'auto' or one of {list(engine_names())}, got {name!r}")
    return _REGISTRY[name]


def check_engine_name(name: str) -> str:
    """``name`` if it is ``"auto"`` or registered, else ``ValueError``."""
    if name != "auto":
        get_engine(name)
    return name


@functools.lru_cache(maxsize=256)
def _select(name: str, kind: LayerKind, device: torch.device, dtype: torch.dtype) -> Engine:
    if name == "auto":
        reasons = []
        for candidate in engine_names():
            engine = _REGISTRY[candidate]
            reason = engine.refusal(kind, device, dtype)
            if reason is None:
                return engine
            reasons.append(f"{candidate}: {reason}")
        raise ValueError(f"no engine can serve a {kind.value} layer on {device} in {dtype} ({'; '.join(reasons)})")
    engine = get_engine(name)
    reason = engine.refusal(kind, device, dtype)
    if reason is not None:
        raise ValueError(f"engine={name!r} cannot serve a {kind.value} layer on {device} in {dtype}: {reason}")
    return engine


def select_engine(name: str, kind: LayerKind, device: torch.device, dtype: torch.dtype) -> Engine:
    """The engine for a call: ``name`` itself, or for ``"auto"`` the best that can serve it.

    Raises:
        ValueError: ``name`` is unknown, or cannot serve ``kind`` on ``device`` in
            ``dtype`` (the message says why), or (``auto``) no engine can.
    """
    return _select(name, LayerKind(kind), torch.device(device), dtype)


register_engine(NumbaEngine())
register_engine(CudaEngine())
register_engine(TorchEngine())
