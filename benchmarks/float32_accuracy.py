"""float32 spike-time accuracy against trial length, per engine and layer kind.

For each trial length T, 8 samples of 20 input neurons fire 3 spikes each in
[T, T + 30] ms (so every output spike lies near T); a layer of 10 LIF neurons (tau_mem
20 ms, tau_syn 5 ms, weights N(1.5, 0.78^2); recurrent: plus N(0, 0.3^2)) is simulated in
float32 and, from the same (float32-rounded) inputs and weights, in float64. Reported:
the largest |t_float32 - t_float64| over all spikes, in ms and in units of the float32
spacing at T (``ulp(T)``), and whether the spike counts agree.

Usage::

    python benchmarks/float32_accuracy.py            # about a minute on 2 cores

Writes ``benchmarks/results/float32_accuracy.json``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from eventprop import lif_layer  # noqa: E402
from eventprop.engines import LayerKind, engine_names, get_engine  # noqa: E402

LENGTHS = [1e2, 1e3, 1e4, 1e5, 1e6, 1e7]


def case(t_start: float, recurrent: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    times = (t_start + 30.0 * torch.rand(8, 20, 3, generator=gen, dtype=torch.float64)).sort(dim=-1).values.float()
    weight = (1.5 + 0.78 * torch.randn(10, 20, generator=gen, dtype=torch.float64)).float() * 0.3
    rec = (0.3 * torch.randn(10, 10, generator=gen, dtype=torch.float64)).float() if recurrent else None
    return times, weight, rec


def measure(engine: str, recurrent: bool, t_start: float) -> dict[str, float | bool]:
    times, weight, rec = case(t_start, recurrent)
    out32 = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    out64 = lif_layer(times.double(), weight.double(), None if rec is None else rec.double(), tau_mem=20.0, tau_syn=5.0, engine=engine)
    same = torch.equal(torch.isfinite(out32), torch.isfinite(out64)) and out32.shape == out64.shape
    finite = torch.isfinite(out64)
    err = float((out32.double() - out64)[finite].abs().max()) if same and finite.any() else math.nan
    ulp = float(np.spacing(np.float32(t_start)))
    return {"engine": engine, "recurrent": recurrent, "T": t_start, "spikes": int(finite.sum()), "same_count": same, "max_error_ms": err, "ulp_ms": ulp}


def main() -> None:
    rows = []
    cpu = torch.device("cpu")
    for recurrent in (False, True):
        kind = LayerKind.RECURRENT if recurrent else LayerKind.FEEDFORWARD
        for engine in engine_names():
            if get_engine(engine).refusal(kind, cpu, torch.float32) is not None:
                continue
            for t_start in LENGTHS:
                row = measure(engine, recurrent, t_start)
                rows.append(row)
                print(
                    f"{'recurrent' if recurrent else 'feed-forward':12s} {engine:6s} T = {t_start:8.0e} ms: {row['spikes']:4d} spikes, "
                    f"counts {'agree' if row['same_count'] else 'DIFFER'}, max error {row['max_error_ms']:.3g} ms = "
                    f"{row['max_error_ms'] / row['ulp_ms']:.2f} ulp(T) (ulp {row['ulp_ms']:.3g} ms)"
                )
    path = Path(__file__).resolve().parent / "results" / "float32_accuracy.json"
    path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
