"""Peak memory and time of one forward + backward against the number of input events.

One feed-forward layer of 16 LIF neurons (tau_mem 20 ms, tau_syn 5 ms), 4 samples, E
input neurons with one spike each, uniform in [0, 1000] ms, weights
``N(0.1, 0.05^2) * 4000 / E`` (the same drive at every E: about 70 spikes per neuron), float64, for every feed-forward engine; each measurement
in a fresh process (peak resident memory from ``getrusage``, which includes about
280 MB of the imported libraries).

Usage::

    python benchmarks/bench_events_memory.py [--events 1000 4000 16000]

Writes ``benchmarks/results/events_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, resource, sys, time
import torch
from eventprop import lif_layer
torch.set_num_threads(2)
engine, n_events = sys.argv[1], int(sys.argv[2])
gen = torch.Generator().manual_seed(0)
times = torch.rand(4, n_events, 1, generator=gen, dtype=torch.float64) * 1000.0
scale = 4000 / n_events  # the same drive, hence about the same spikes, at every event count
weight = ((torch.randn(16, n_events, generator=gen, dtype=torch.float64) * 0.05 + 0.1) * scale).requires_grad_(True)
lif_layer(times[:, :10], weight[:, :10], tau_mem=20.0, tau_syn=5.0, engine=engine)  # compiled kernels loaded
t0 = time.perf_counter()
out = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0, engine=engine, max_spikes=None)
torch.where(torch.isfinite(out), out, 0.0).sum().backward()
seconds = time.perf_counter() - t0
print(json.dumps({"engine": engine, "events": n_events, "seconds": seconds,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "spikes_per_neuron": float(torch.isfinite(out).sum()) / 64}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 4000, 16000])
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from eventprop.engines import LayerKind, engine_names, get_engine

    import torch

    engines = [n for n in engine_names() if get_engine(n).refusal(LayerKind.FEEDFORWARD, torch.device("cpu"), torch.float64) is None]
    rows = []
    for n_events in args.events:
        for engine in engines:
            proc = subprocess.run([sys.executable, "-c", WORKER, engine, str(n_events)], capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{engine:6s} {n_events:6d} events: {row['seconds']:7.2f} s, peak {row['peak_mib']:7.0f} MiB, "
                  f"{row['spikes_per_neuron']:.1f} spikes per neuron")
    path = Path(__file__).resolve().parent / "results" / "events_memory.json"
    path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
