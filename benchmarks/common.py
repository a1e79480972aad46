"""Shared set-up of the benchmarks: the Yin-Yang network, its weights, threads, output.

The network is the ``best`` preset's 5-200-3 (tau_mem 20 ms, tau_syn 5 ms, threshold 1;
inputs x, y, 1-x, 1-y at 30 ms * value plus a bias spike at 0; loss tau0 0.5 ms,
tau1 6.4 ms, alpha 3e-3). Two weight states:

- ``init``: hidden N(1.5, 0.78), output N(0.93, 0.1) (about 75 hidden spikes per sample);
- ``trained``: the same after 5 epochs of training (Adam 5e-3 x 0.95 per epoch,
  batch 32, float64; about 30 hidden spikes per sample, like a trained network).
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from eventprop import LIFLayer, first_spike_cross_entropy, first_spikes  # noqa: E402
from eventprop.datasets import yinyang_split  # noqa: E402
from eventprop.datasets import latency_encode  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TAU_MEM, TAU_SYN, THRESHOLD = 20.0, 5.0, 1.0
TAU0, TAU1, ALPHA, T_SILENT = 0.5, 6.4, 3e-3, 60.0
SIZES = (5, 200, 3)


def set_threads(threads: int) -> None:
    """Threads for numba's kernels; torch's own ops stay on one thread (they are tiny,
    and a second OpenMP pool spinning next to numba's only costs time)."""
    import numba

    torch.set_num_threads(1)
    numba.set_num_threads(threads)


def yinyang_data(split: str = "train", dtype: torch.dtype = torch.float64, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Latency-encoded Yin-Yang inputs ``(n, 5, 1)`` and labels ``(n,)``."""
    x, y = yinyang_split(split)
    if n is not None:
        x, y = x[:n], y[:n]
    times = latency_encode(torch.as_tensor(x, dtype=dtype), t_first=0.0, t_last=30.0, bias_times=(0.0,))
    return times, torch.as_tensor(y, dtype=torch.long)


def build_network(dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.nn.Sequential:
    """The 5-200-3 network at its initial weights."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        LIFLayer(5, 200, tau_mem=TAU_MEM, tau_syn=TAU_SYN, threshold=THRESHOLD, init_mean=1.5, init_std=0.78),
        LIFLayer(200, 3, tau_mem=TAU_MEM, tau_syn=TAU_SYN, threshold=THRESHOLD, init_mean=0.93, init_std=0.1),
    ).to(dtype)


def first_spike_loss(first: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's first-spike cross-entropy (eq. 35) with the ``best`` preset's constants."""
    return first_spike_cross_entropy(first, labels, tau0=TAU0, tau1=TAU1, alpha=ALPHA, t_silent=T_SILENT)


def loss_fn(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`first_spike_loss` of a layer's output spike trains."""
    return first_spike_loss(first_spikes(out), labels)


def peak_memory_mib(fn: Callable[[], object]) -> float:
    """Peak resident memory that ``fn()`` adds to this process, in MiB (Linux).

    The kernel's high-water mark is reset just before the call (``/proc/self/clear_refs``),
    so the figure is ``VmHWM`` after the call minus ``VmRSS`` before it: everything the
    call touched, PyTorch's and numpy's allocations alike. Run it in a fresh process:
    memory an earlier call freed but the allocator kept would hide part of the next.
    """
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def train_epoch(model: torch.nn.Sequential, optimizer: torch.optim.Optimizer, times: torch.Tensor, labels: torch.Tensor, batch: int, gen: torch.Generator) -> None:
    """One epoch of minibatch training (shuffled), the loop every benchmark times."""
    perm = torch.randperm(times.shape[0], generator=gen)
    for start in range(0, times.shape[0], batch):
        idx = perm[start : start + batch]
        loss = loss_fn(model(times[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def weights(state: str, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W1, W2)`` of the network in weight state ``init`` or ``trained`` (see module docstring)."""
    model = build_network(torch.float64)
    if state == "trained":
        times, labels = yinyang_data("train")
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95)
        gen = torch.Generator().manual_seed(0)
        for _ in range(5):
            train_epoch(model, optimizer, times, labels, 32, gen)
            scheduler.step()
    elif state != "init":
        raise ValueError(f"state must be 'init' or 'trained', got {state!r}")
    return model[0].weight.detach().to(dtype), model[1].weight.detach().to(dtype)


def network_with(w1: torch.Tensor, w2: torch.Tensor) -> torch.nn.Sequential:
    model = build_network(w1.dtype)
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[1].weight.copy_(w2)
    return model


def machine() -> dict[str, Any]:
    import numba

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numba_threading_layer": _threading_layer(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "unknown"


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=_jsonable) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, torch.dtype):
        return str(x).replace("torch.", "")
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
