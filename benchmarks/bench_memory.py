"""Peak memory of one forward + backward against trial length: EventProp vs time-stepped BPTT.

The Yin-Yang 5-200-3 network at its initial weights (see ``common.py``), a batch of
Yin-Yang samples, float64. Each sample's input burst (30 ms of latency code plus the
network's response, about 40 ms) starts at a random offset inside a trial of
``T`` = 0.1 s to 10 s, so activity can happen anywhere in the trial while the number of
spikes stays the same for every ``T`` (the dynamics are time-invariant; the table
shows the measured counts). EventProp simulates with horizon ``T``; the
baseline (``bptt.py``, step ``dt``) must step through all of ``T``. Loss: the
first-spike cross-entropy. Two more EventProp networks, for the other engines'
memory: ``eventprop-recurrent`` (the hidden layer recurrent, recurrent weights
N(0, 0.1^2)) and ``eventprop-voltage`` (the output layer replaced by a 3-neuron
``LIReadout`` over ``[0, T]`` and the max-over-time voltage cross-entropy). Every
measurement runs in a fresh process (see ``common.peak_memory_mib``).

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

METHODS = ("eventprop", "eventprop-recurrent", "eventprop-voltage", "bptt")


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

    if method.startswith("eventprop"):
        from eventprop import LIFLayer, LIReadout, max_voltage_cross_entropy

        model = common.network_with(w1, w2)
        if method == "eventprop-recurrent":
            hidden = LIFLayer(5, 200, tau_mem=common.TAU_MEM, tau_syn=common.TAU_SYN, recurrent=True, dtype=w1.dtype)
            gen_r = torch.Generator().manual_seed(1)
            with torch.no_grad():
                hidden.weight.copy_(w1)
                hidden.recurrent_weight.copy_(torch.randn(200, 200, generator=gen_r, dtype=w1.dtype) * 0.1)
            model[0] = hidden
        for layer in model:
            layer.horizon = t_end
        if method == "eventprop-voltage":
            readout = LIReadout(200, 3, tau_mem=common.TAU_MEM, tau_syn=common.TAU_SYN, window=t_end, dtype=w1.dtype)
            with torch.no_grad():
                readout.weight.copy_(w2 / 4)

            def output(h: torch.Tensor, shift: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
                return max_voltage_cross_entropy(readout(h), y), float("nan")
        else:

            def output(h: torch.Tensor, shift: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
                out = model[1](h)
                return common.first_spike_loss(out[..., 0] - shift[..., 0], y), float(torch.isfinite(out).sum())

        def step() -> tuple[float, float]:
            hidden = model[0](times)
            loss, n_out = output(hidden, offsets, labels)
            loss.backward()
            return float(torch.isfinite(hidden).sum()), n_out

        warm = model[0](times[:1] - offsets[:1])
        output(warm, torch.zeros_like(offsets[:1]), labels[:1])[0].backward()  # compile/load the kernels
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
    for method, label, style in (
        ("bptt", f"time-stepped BPTT (dt = {dt} ms)", "s-"),
        ("eventprop", "EventProp (this library)", "o-"),
        ("eventprop-recurrent", "EventProp, recurrent hidden layer", "^-"),
        ("eventprop-voltage", "EventProp, LIReadout (max V)", "v-"),
    ):
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
    print(f"{'method':>19} {'T (s)':>6} | {'peak MiB':>9} {'hidden spikes':>13} {'seconds':>8}")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        for t_end in lengths:
            for method in METHODS:
                row = pool.submit(measure, method, t_end, args.batch, args.dt).result()
                rows.append(row)
                print(f"{method:>19} {t_end / 1000:>6.1f} | {row['peak_mib']:>9.2f} {row['hidden_spikes']:>13.0f} {row['seconds']:>8.2f}")
    spreads = {}
    for method in METHODS[:-1]:
        ep = [r["peak_mib"] for r in rows if r["method"] == method]
        spreads[method] = (max(ep) - min(ep)) / max(min(ep), 1e-9)
        print(f"{method} peak memory: {min(ep):.2f} to {max(ep):.2f} MiB (spread {100 * spreads[method]:.1f} % of the smallest)")
    bp = [r["peak_mib"] for r in rows if r["method"] == "bptt"]
    print(f"BPTT peak memory: {min(bp):.1f} to {max(bp):.1f} MiB ({max(bp) / max(min(bp), 1e-9):.0f}x over {max(lengths) / min(lengths):.0f}x the length)")
    common.write_json(
        "memory.json",
        {"batch": args.batch, "dt_ms": args.dt, "dtype": "float64", "eventprop_spread": spreads, "results": rows},
    )
    plot(rows, args.dt, args.batch)


if __name__ == "__main__":
    main()
