"""Peak memory of one forward + backward against trial length: EventProp vs time-stepped BPTT.

The Yin-Yang 5-200-3 network at its initial weights (see ``common.py``), a batch of
Yin-Yang samples, float64. Each sample's input burst (30 ms of latency code plus the
network's response, about 40 ms) starts at a random offset inside a trial of
``T`` = 0.1 s to 10 s, so activity can happen anywhere in the trial while the number of
spikes stays the same for every ``T`` (the dynamics are time-invariant; the table
shows the measured counts). EventProp simulates with horizon ``T``; the
baseline (``bptt.py``, step ``dt``) must step through all of ``T``. Loss: the
first-spike cross-entropy. Every measurement runs in a fresh process (see
``common.peak_memory_mib``).

Usage::

    python benchmarks/bench_memory.py                # batch 4, dt 0.1 ms, T = 0.1 ... 10 s
    python benchmarks/bench_memory.py --quick        # T = 0.1, 1 s only

Writes ``benchmarks/results/memory.json`` and ``docs/memory_vs_trial_length.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import torch

import common


def measure(method: str, t_end: float, batch: int, dt: float) -> dict[str, float]:
    """One fresh-process measurement (``t_end`` and ``dt`` in ms)."""
    import bptt

    common.set_threads(1)
    torch.set_num_threads(1)
    times, labels = common.yinyang_data("train", n=batch)
    gen = torch.Generator().manual_seed(0)
    offsets = torch.rand(batch, 1, 1, generator=gen, dtype=times.dtype) * (t_end - 40.0)
    times = times + offsets
    w1, w2 = common.weights("init")

    if method == "eventprop":
        model = common.network_with(w1, w2)
        for layer in model:
            layer.horizon = t_end

        def step() -> tuple[float, float]:
            hidden = model[0](times)
            out = model[1](hidden)
            common.first_spike_loss(out[..., 0] - offsets[..., 0], labels).backward()
            return float(torch.isfinite(hidden).sum()), float(torch.isfinite(out).sum())

        warm = common.network_with(w1, w2)
        warm[1](warm[0](times[:1] - offsets[:1]))[..., 0].sum().backward()  # compile/load the kernels
    else:
        a, b = w1.clone().requires_grad_(), w2.clone().requires_grad_()

        def step() -> tuple[float, float]:
            first, hidden = bptt.first_spike_times(times, a, b, dt=dt, t_end=t_end, tau_mem=20.0, tau_syn=5.0)
            common.first_spike_loss(first - offsets[..., 0], labels).backward()
            return float(hidden.sum()), float("nan")

        bptt.first_spike_times(times[:1], a, b, dt=dt, t_end=1.0, tau_mem=20.0, tau_syn=5.0)[0].sum().backward()

    counts: list[tuple[float, float]] = []
    start = time.perf_counter()
    peak = common.peak_memory_mib(lambda: counts.append(step()))
    return {
        "method": method,
        "t_end_ms": t_end,
        "peak_mib": peak,
        "hidden_spikes": counts[0][0],
        "output_spikes": counts[0][1],
        "seconds": time.perf_counter() - start,
    }


def plot(rows: list[dict[str, float]], dt: float, batch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, label, style in (("bptt", f"time-stepped BPTT (dt = {dt} ms)", "s-"), ("eventprop", "EventProp (this library)", "o-")):
        pts = [r for r in rows if r["method"] == method]
        ax.plot([r["t_end_ms"] / 1000 for r in pts], [max(r["peak_mib"], 1e-2) for r in pts], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trial length T (s)")
    ax.set_ylabel("peak memory of forward + backward (MiB)")
    ax.set_title(f"Yin-Yang 5-200-3, batch {batch}, same spikes for every T", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = common.ROOT / "docs" / "memory_vs_trial_length.png"
    fig.savefig(path, dpi=120)
    print(f"wrote {path.relative_to(common.ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dt", type=float, default=0.1, help="baseline time step, ms")
    parser.add_argument("--lengths", type=float, nargs="+", default=[100, 300, 1000, 3000, 10000], help="trial lengths, ms")
    parser.add_argument("--quick", action="store_true", help="T = 100 and 1000 ms only")
    args = parser.parse_args()
    lengths = [100.0, 1000.0] if args.quick else args.lengths
    if min(lengths) < 50:
        parser.error("--lengths must be at least 50 ms (the input burst takes 40 ms)")

    context = multiprocessing.get_context("spawn")
    rows = []
    print(f"{'method':>9} {'T (s)':>6} | {'peak MiB':>9} {'hidden spikes':>13} {'seconds':>8}")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        for t_end in lengths:
            for method in ("eventprop", "bptt"):
                row = pool.submit(measure, method, t_end, args.batch, args.dt).result()
                rows.append(row)
                print(f"{method:>9} {t_end / 1000:>6.1f} | {row['peak_mib']:>9.2f} {row['hidden_spikes']:>13.0f} {row['seconds']:>8.2f}")
    ep = [r["peak_mib"] for r in rows if r["method"] == "eventprop"]
    bp = [r["peak_mib"] for r in rows if r["method"] == "bptt"]
    spread = (max(ep) - min(ep)) / max(min(ep), 1e-9)
    print(f"EventProp peak memory: {min(ep):.2f} to {max(ep):.2f} MiB (spread {100 * spread:.1f} % of the smallest)")
    print(f"BPTT peak memory: {min(bp):.1f} to {max(bp):.1f} MiB ({max(bp) / max(min(bp), 1e-9):.0f}x over {max(lengths) / min(lengths):.0f}x the length)")
    common.write_json(
        "memory.json",
        {"batch": args.batch, "dt_ms": args.dt, "dtype": "float64", "eventprop_spread": spread, "results": rows},
    )
    plot(rows, args.dt, args.batch)


if __name__ == "__main__":
    main()
