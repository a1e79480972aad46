"""Checkpoints: what a run saves every epoch, loading it back, and the run lock.

``checkpoint.pt`` holds everything needed to continue a run to the same numbers as an
uninterrupted one (model, averaged model, optimiser, scheduler, random-number states,
epoch, best validation accuracy, metrics so far); ``best.pt`` the model of the best
validation accuracy. Both carry the configuration, the network's input and class
counts, the format number :data:`FORMAT` and a SHA-256 content hash
(:func:`content_hash`: every tensor's dtype, shape and bytes and every other value, in
a fixed order), and are written atomically. Loading checks the hash, so a flipped bit
in a weight is an error, not a silently different model. They contain tensors,
numbers, strings and containers only and are read with ``torch.load(weights_only=True)``
(a crafted file cannot run code). A run is resumed only from a checkpoint of the
current format (format 1, before per-layer metrics and hashes, is refused with a
one-line error); a model loads from any format.

A run holds ``run.lock`` in its output folder (an advisory ``flock``, released when
the process ends, however it ends): a second run on the same folder refuses to start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import TrainConfig, config_from_dict
from .network import build_model

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock
    fcntl = None

__all__ = ["FORMAT", "content_hash", "save_atomic", "load_checkpoint", "check_resumable", "load_model", "RunLock"]

#: Checkpoint format written by this version: 2 = per-layer metrics (``hidden1_spikes``, ...) and a content hash.
FORMAT = 2


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, np.ndarray):  # pragma: no cover - not written by the trainer
        _feed(h, torch.from_numpy(obj))
    else:
        h.update(f"V{obj!r}".encode())


def content_hash(state: dict[str, Any]) -> str:
    """SHA-256 of everything in ``state`` except its ``"sha256"`` entry (module docstring)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "sha256"})
    return h.hexdigest()


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` of ``obj`` with its content hash, to a temporary name, then moved into place."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**obj, "sha256": content_hash(obj)}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], TrainConfig]:
    """The saved state and its configuration.

    Raises:
        ValueError: (one line) the file is missing or not a file, cannot be read (empty,
            truncated, not a checkpoint), is not one of ours, or fails its content hash.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated, random bytes, a pickle with code in it, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {str(path)!r} cannot be read: {first[:200]}") from None
    if not isinstance(state, dict) or not {"config", "model", "n_inputs", "n_classes"} <= set(state):
        raise ValueError(f"checkpoint {str(path)!r} is not an eventprop checkpoint (no configuration and model in it)")
    if "sha256" in state and state["sha256"] != content_hash(state):
        raise ValueError(f"checkpoint {str(path)!r} is corrupt: its content does not match its SHA-256 hash")
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in model.items()):
        raise ValueError(f"checkpoint {str(path)!r} is not an eventprop checkpoint (its model is not a dict of tensors)")
    for name in ("n_inputs", "n_classes"):
        if not _is_int(state[name]) or state[name] < 1:
            raise ValueError(f"checkpoint {str(path)!r} is not an eventprop checkpoint ({name} = {state[name]!r})")
    try:
        if not isinstance(state["config"], dict):
            raise TypeError(f"a {type(state['config']).__name__}, not a dict")
        config = config_from_dict(state["config"])
        dataclasses.replace(config, device="cpu", engine="auto").validate()  # what does not depend on this machine
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} holds a configuration this version cannot read ({exc})") from None
    return state, config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: What a resumable checkpoint holds besides the model: name -> (what it must be, test).
_RESUME_FIELDS: dict[str, tuple[str, Any]] = {
    "optimizer": ("an optimiser state dict", lambda v: isinstance(v, dict) and {"state", "param_groups"} <= set(v)),
    "scheduler": ("a scheduler state dict", lambda v: isinstance(v, dict)),
    "averaged": ("None or a state dict", lambda v: v is None or isinstance(v, dict)),
    "shuffle_rng": ("a generator state (uint8 tensor)", lambda v: isinstance(v, Tensor) and v.dtype == torch.uint8),
    "noise_rng": ("a generator state (uint8 tensor)", lambda v: isinstance(v, Tensor) and v.dtype == torch.uint8),
    "torch_rng": ("a generator state (uint8 tensor)", lambda v: isinstance(v, Tensor) and v.dtype == torch.uint8),
    "epoch": ("an epoch index >= 0", lambda v: _is_int(v) and v >= 0),
    "best_accuracy": ("an accuracy in [0, 1]", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1),
    "metrics": ("a list of rows", lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)),
}


def check_resumable(state: dict[str, Any], path: Path) -> None:
    """``ValueError`` unless a run can continue from ``state`` (a checkpoint of the current format)."""
    found = state.get("format", 1)
    if found != FORMAT or "optimizer" not in state:
        what = f"format {found}" if found != FORMAT else "a model only (best.pt)"
        raise ValueError(
            f"--resume: {path} holds {what}, this version resumes format {FORMAT} checkpoints only; "
            "continue it with the eventprop version that wrote it, or start a new run (its models still load for evaluation)"
        )
    for name, (what, ok) in _RESUME_FIELDS.items():
        if name not in state:
            raise ValueError(f"--resume: {path} is not a complete checkpoint (it has no {name!r})")
        if not ok(state[name]):
            raise ValueError(f"--resume: {path} is not a valid checkpoint ({name!r} must be {what})")
    epoch, best = state["epoch"], state.get("best_epoch")
    if len(state["metrics"]) != epoch + 1:
        raise ValueError(f"--resume: {path} is not a valid checkpoint ({len(state['metrics'])} metrics rows after epoch {epoch + 1})")
    if not (_is_int(best) and 1 <= best <= epoch + 1):
        raise ValueError(f"--resume: {path} is not a valid checkpoint ('best_epoch' = {best!r} after epoch {epoch + 1})")


def load_model(path: str | os.PathLike[str], device: str | None = None) -> tuple[nn.Sequential, TrainConfig]:
    """Load a model saved by :func:`~eventprop.training.train` (``best.pt`` or ``checkpoint.pt``)."""
    state, config = load_checkpoint(path)
    if device is not None:
        config.device = device
    model = build_model(config, state["n_inputs"], state["n_classes"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {str(path)!r}: its weights do not fit its configuration ({str(exc).splitlines()[0]})") from None
    return model, config


class RunLock:
    """``with RunLock(folder):`` creates ``folder`` if needed and holds ``folder/run.lock``.

    ``ValueError`` if ``folder`` is a file or another process holds the lock.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "run.lock"
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"output folder {str(folder)!r} is a file")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file on the way, no permission, ...
            raise ValueError(f"output folder {str(folder)!r} (--out) cannot be created: {exc.strerror or exc}") from None
        self._file = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._file.seek(0)
                holder = self._file.read().strip() or "another process"
                self._file.close()
                self._file = None
                raise ValueError(f"{self.path.parent} is in use by another run ({holder}); wait for it or choose another --out") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}")
        self._file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None
