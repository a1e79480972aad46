"""Shared helpers for the tests: random networks and central finite differences."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

F64 = torch.float64


def random_inputs(batch: int, n_in: int, slots: int, t_end: float, gen: torch.Generator, p_missing: float = 0.2) -> Tensor:
    """Random ascending, +inf padded input spike trains ``(batch, n_in, slots)``."""
    t = torch.rand(batch, n_in, slots, generator=gen, dtype=F64) * t_end
    drop = torch.rand(batch, n_in, slots, generator=gen, dtype=F64) < p_missing
    t = torch.where(drop, torch.full_like(t, math.inf), t)
    return t.sort(dim=-1).values


def to_lists(times: Tensor) -> list[list[list[float]]]:
    """``(batch, neurons, slots)`` tensor to nested lists of finite spike times."""
    return [[[float(x) for x in row if math.isfinite(x)] for row in sample] for sample in times.tolist()]


def spike_weighted_loss(out: Tensor) -> Tensor:
    """A loss that depends on every output spike: ``sum_k c_k t_k`` with fixed distinct ``c_k``."""
    c = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    finite = torch.isfinite(out)
    return (torch.where(finite, out, torch.zeros_like(out)) * c).sum() + (torch.where(finite, out, torch.zeros_like(out)) ** 2).sum() * 0.01


def central_differences(
    loss: Callable[[], Tensor], tensors: Sequence[Tensor], h: float = 1e-6
) -> list[Tensor]:
    """Central finite differences of ``loss()`` w.r.t. every finite entry of each tensor.

    Entries are perturbed in place by ``h * max(1, |x|)`` and restored.
    """
    grads = []
    for tensor in tensors:
        g = torch.zeros_like(tensor)
        flat = tensor.data.view(-1)
        for idx in range(flat.numel()):
            x = flat[idx].item()
            if not math.isfinite(x):
                continue
            step = h * max(1.0, abs(x))
            flat[idx] = x + step
            with torch.no_grad():
                up = loss().item()
            flat[idx] = x - step
            with torch.no_grad():
                down = loss().item()
            flat[idx] = x
            g.view(-1)[idx] = (up - down) / (2 * step)
        grads.append(g)
    return grads


def relative_error(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max |b|`` (the worst error relative to the gradient's scale)."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / max(scale, 1e-300)


WORST: dict[str, float] = {}


def record(kind: str, value: float) -> None:
    """Keep the worst error of each kind; conftest prints them at the end of the run."""
    WORST[kind] = max(WORST.get(kind, 0.0), value)


def assert_gradients_match(
    loss: Callable[[], Tensor],
    tensors: Sequence[Tensor],
    names: Sequence[str],
    kind: str,
    tol: float = 1e-6,
    richardson: bool = False,
    per_name: bool = False,
) -> dict[str, float]:
    """Autograd gradients of ``loss()`` vs central finite differences, relative error <= ``tol``.

    ``tensors`` are leaves (parameters or inputs) that ``loss()`` reads; each gradient
    must be non-zero (else the comparison would be vacuous). Errors go to :func:`record`
    under ``kind`` and are returned by name. ``richardson``: the differences are
    ``(4 g(h/2) - g(h)) / 3`` (error O(h^4), for losses with large curvature near
    ill-conditioned crossings). ``per_name``: record under ``kind [name]`` (the
    parameter's name without its module prefix), one worst error per parameter.
    """
    for name, t in zip(names, tensors):
        if not t.requires_grad:
            raise ValueError(f"{name} must require grad")
    grads = torch.autograd.grad(loss(), list(tensors), allow_unused=True)
    numeric = central_differences(loss, tensors)
    if richardson:
        half = central_differences(loss, tensors, h=5e-7)
        numeric = [(4 * g2 - g1) / 3 for g1, g2 in zip(numeric, half)]
    errors = {}
    for name, g, n in zip(names, grads, numeric):
        assert g is not None, f"{name}: no gradient path"
        assert n.abs().max() > 0, f"{name}: gradient is identically zero, the test would be vacuous"
        errors[name] = relative_error(g, n)
        record(f"{kind} [{name.split('.')[-1]}]" if per_name else kind, errors[name])
        assert errors[name] <= tol, f"{name}: relative error {errors[name]:.3e}"
    return errors


def engines_for(kind: str) -> list[str]:
    """Registered engines that can serve ``kind`` on CPU in float64, highest priority first.

    The engine contract suite (``test_engine_contract.py``, ``test_forward.py``,
    ``test_gradients.py``, ``test_learnable.py``, ``test_connections.py``) is parametrised over these: registering an engine puts it
    under every test of the kinds it declares.
    """
    from eventprop.engines import LayerKind, engine_names, get_engine

    cpu = torch.device("cpu")
    return [n for n in engine_names() if get_engine(n).refusal(LayerKind(kind), cpu, F64) is None]


def skip_if_simulated(engine: str, what: str) -> None:
    """Skip a test too large for numba's CUDA simulator (each simulated GPU thread is a
    Python thread); ``benchmarks/bench_gpu.py`` checks such sizes on a GPU."""
    import pytest

    from eventprop.engines.numba_cuda import SIMULATED

    if engine == "cuda" and SIMULATED:
        pytest.skip(f"{what}: too large for the CUDA simulator (benchmarks/bench_gpu.py checks it on a GPU)")


FEEDFORWARD_ENGINES = engines_for("feedforward")
RECURRENT_ENGINES = engines_for("recurrent")
CONNECTION_ENGINES = engines_for("connections")
TRAJECTORY_ENGINES = engines_for("trajectory")


def write_heidelberg(folder: Path, name: str, samples: Sequence[tuple[object, object, int, int]], *, classes: int = 20) -> Path:
    """An SHD/SSC file in the original layout (Cramer et al. 2020) at ``folder/name``:
    ``spikes/times`` (float16 seconds) and ``spikes/units`` (uint16) as variable-length
    rows, ``labels`` (uint16), ``extra/speaker`` (uint16), ``extra/keys``; samples are
    ``(times_s, units, label, speaker)``. Returns the path."""
    import h5py
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for k, (t, u, _, _) in enumerate(samples):
            times[k], units[k] = np.asarray(t, dtype=np.float16), np.asarray(u, dtype=np.uint16)
        f["labels"] = np.array([s[2] for s in samples], dtype=np.uint16)
        f["extra/speaker"] = np.array([s[3] for s in samples], dtype=np.uint16)
        f["extra/keys"] = np.array([f"class-{k}".encode() for k in range(classes)])
    return path


def heidelberg_samples(n: int, seed: int, *, classes: int = 20, speakers: int = 3) -> list:
    """``n`` random SHD-like samples (about 300 spikes in 1.2 s over 700 channels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        count = int(rng.integers(200, 400))
        out.append((np.sort(rng.uniform(0, 1.2, count)), rng.integers(0, 700, count), int(k % classes), int(k % speakers)))
    return out


def assert_one_line_error(err: str, message: str) -> None:
    """``err`` (a captured stderr) is one line, no traceback, containing ``message``."""
    err = err.strip()
    assert message in err, err
    assert "\n" not in err and "Traceback" not in err
