"""Time the PyTorch and Numba feed-forward engines on the Yin-Yang network.

Network 5-200-3 (tau_mem 20 ms, tau_syn 5 ms, threshold 1; see ``common.py``) at its
initial weights (about 75 hidden spikes per sample) and after 5 epochs of training
(about 30, like a trained network); inputs latency-encoded x, y, 1-x, 1-y at
30 * value ms plus a bias spike at 0. One step = forward of both layers + backward of
both layers (dL/d out_times = 1 at every output spike). Two threads for both engines
(numba's kernels; torch's ops). float64 only: both engines compute float32 layers in
float64 (``Engine.compute_dtype``), so a float32 layer costs the same plus two casts.
The table shows the best time of each phase over the repetitions (robust to other load
on the machine); the JSON also holds the medians.

Usage::

    python benchmarks/bench_engines.py            # prints a table, writes JSON
    python benchmarks/bench_engines.py --quick    # fewer repetitions
    python benchmarks/bench_engines.py --threads 1 --out /tmp/engines_1thread.json

Writes ``benchmarks/results/engines.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import common  # noqa: E402  (puts src/ on the path)

ROOT = common.ROOT

from eventprop.engines.numba_cpu.feedforward import feedforward_backward_numba, feedforward_forward_numba  # noqa: E402
from eventprop.engines.numba_cpu.scalar import numba_available  # noqa: E402
from eventprop.engines.pytorch.feedforward import feedforward_backward, feedforward_forward  # noqa: E402
from eventprop.model.neuron import NeuronParams  # noqa: E402

THREADS = 2
PARAMS = NeuronParams(tau_mem=20.0, tau_syn=5.0, threshold=1.0)
ENGINES = {
    "torch": (feedforward_forward, feedforward_backward),
    "numba": (feedforward_forward_numba, feedforward_backward_numba),
}
PHASES = ("fwd_hidden", "fwd_output", "bwd_output", "bwd_hidden")


_WEIGHTS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def network(batch: int, dtype: torch.dtype, state: str = "init"):
    """Inputs of the first ``batch`` training samples and ``(W1, W2)`` in weight state ``state``."""
    if state not in _WEIGHTS:
        _WEIGHTS[state] = common.weights(state)
    times, _ = common.yinyang_data("train", dtype, n=batch)
    w1, w2 = _WEIGHTS[state]
    return times, w1.to(dtype), w2.to(dtype)


def step(engine: str, times, w1, w2) -> tuple[dict[str, float], tuple]:
    forward, backward = ENGINES[engine]
    clock = {}
    t0 = time.perf_counter()
    h_t, h_i, h_ev = forward(times, w1, PARAMS)
    t1 = time.perf_counter()
    o_t, o_i, o_ev = forward(h_t, w2, PARAMS)
    t2 = time.perf_counter()
    grad_out = torch.isfinite(o_t).to(o_t.dtype)
    g_h, g_w2 = backward(grad_out, w2, o_ev, o_t, o_i, PARAMS, h_t.shape)[:2]
    t3 = time.perf_counter()
    g_x, g_w1 = backward(g_h, w1, h_ev, h_t, h_i, PARAMS, times.shape)[:2]
    t4 = time.perf_counter()
    for name, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
        clock[name] = 1e3 * (b - a)
    clock["total"] = 1e3 * (t4 - t0)
    return clock, (h_t, o_t, g_w1, g_w2, g_x)


def measure(engine: str, batch: int, dtype: torch.dtype, state: str, min_time: float, min_reps: int):
    times, w1, w2 = network(batch, dtype, state)
    step(engine, times, w1, w2)  # warm-up (and JIT compilation / cache load)
    runs = []
    start = time.perf_counter()
    while len(runs) < min_reps or time.perf_counter() - start < min_time:
        clock, result = step(engine, times, w1, w2)
        runs.append(clock)
        if len(runs) >= 200:
            break
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return best, median, len(runs), result


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    if a.shape != b.shape or not torch.equal(fa, fb):
        return math.inf
    if not bool(fb.any()):
        return 0.0
    return ((a[fa] - b[fb]).abs().max() / b[fb].abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 200])
    parser.add_argument("--weights", nargs="+", choices=["init", "trained"], default=["init", "trained"])
    parser.add_argument("--threads", type=int, default=THREADS, help="threads for torch and numba (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines.json")
    args = parser.parse_args()
    if not numba_available():
        sys.exit("numba is not installed")
    import numba

    threads = args.threads
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    min_time, min_reps = (0.3, 2) if args.quick else (2.0, 5)

    rows = []
    header = (
        f"{'weights':>7} {'batch':>5} {'dtype':>7} {'engine':>6} | {'fwd hid':>8} {'fwd out':>8} {'bwd out':>8} "
        f"{'bwd hid':>8} | {'total':>8} {'samples/s':>9} {'speed-up':>8} | {'hid/smp':>7} {'spike diff':>10} {'grad diff':>9}"
    )
    print(f"Yin-Yang 5-200-3, {threads} threads; ms per batch (best of the repetitions)")
    print(header)
    print("-" * len(header))
    for state in args.weights:
        for batch in args.batches:
            for dtype in (torch.float64,):
                results = {}
                for engine in ENGINES:
                    results[engine] = measure(engine, batch, dtype, state, min_time, min_reps)
                ref = results["torch"][3]
                got = results["numba"][3]
                spike_diff = max(_rel(a, b) for a, b in zip(got[:2], ref[:2]))
                grad_diff = max(_rel(a, b) for a, b in zip(got[2:], ref[2:]))
                hidden_spikes = float(torch.isfinite(ref[0]).sum()) / batch
                for engine, (best, median, reps, _) in results.items():
                    speedup = results["torch"][0]["total"] / best["total"]
                    rate = batch / (best["total"] / 1e3)
                    name = str(dtype).replace("torch.", "")
                    print(
                        f"{state:>7} {batch:>5} {name:>7} {engine:>6} | "
                        + " ".join(f"{best[k]:>8.2f}" for k in PHASES)
                        + f" | {best['total']:>8.2f} {rate:>9.0f} {speedup:>7.1f}x | {hidden_spikes:>7.1f} "
                        + (f"{spike_diff:>10.1e} {grad_diff:>9.1e}" if engine == "numba" else "")
                    )
                    rows.append(
                        {
                            "weights": state,
                            "batch": batch,
                            "dtype": name,
                            "engine": engine,
                            "repetitions": reps,
                            "ms_best": best,
                            "ms_median": median,
                            "samples_per_s": rate,
                            "speedup_vs_torch": speedup,
                            "hidden_spikes_per_sample": hidden_spikes,
                            "max_rel_diff_spike_times_vs_torch": spike_diff if engine == "numba" else 0.0,
                            "max_rel_diff_grads_vs_torch": grad_diff if engine == "numba" else 0.0,
                        }
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "network": "yinyang 5-200-3, tau_mem 20, tau_syn 5, threshold 1; weights: init N(1.5,0.78) / N(0.93,0.1), trained = after 5 epochs",
        "threads": threads,
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numba_threading_layer": numba.threading_layer(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "results": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(
        "hid/smp: hidden spikes per sample; diffs: numba vs torch, max |a - b| / max |b| over\n"
        "hidden+output spike times and over dW1, dW2, d input"
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
