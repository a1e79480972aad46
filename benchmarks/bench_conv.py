r"""A convolutional LIF layer on N-MNIST-shaped event input: time and memory, against snnTorch.

The workload: 34 x 34 x 2 input (N-MNIST's sensor), 4,000 events per sample spread
uniformly over 300 ms (N-MNIST samples hold about 4,000-6,000 in 300 ms; synthetic here,
as the data set is not on this machine), channel-major spike tensors; one
``LIFConv2d(2, 8, 3)`` (tau_mem 20 ms, tau_syn 5 ms; 8 x 32 x 32 = 8,192 neurons, 18
synapses each, 147,456 in all, kernel N(1.5, 0.5^2)), a loss on every output spike
time, forward + backward, float32 (computed in float64 by the engine). Beside it the
snnTorch pipeline users know: ``nn.Conv2d`` + ``snn.Synaptic`` (the same
alpha = exp(-dt / tau_syn), beta = exp(-dt / tau_mem), input binned to dt = 1 ms, 300
steps, BPTT with a fast-sigmoid surrogate) on the same batch, and the loss on its spike
counts. Each measurement in a fresh process (peak resident memory from ``getrusage``,
including about 300 MB of imported libraries), on 2 threads, median of ``--reps``.

Usage::

    python benchmarks/bench_conv.py [--batch 8] [--reps 3]

Writes ``benchmarks/results/conv.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, math, resource, statistics, sys, time
import torch
method, batch, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(2)
H = W = 34
EVENTS, TRIAL, SLOTS = 4000, 300.0, 8

def nmnist_like(batch, seed):
    gen = torch.Generator().manual_seed(seed)
    times = torch.full((batch, 2 * H * W, SLOTS), math.inf)
    for b in range(batch):
        channel = torch.randint(0, 2 * H * W, (EVENTS,), generator=gen)
        t = torch.rand(EVENTS, generator=gen) * TRIAL
        t, order = t.sort()
        channel = channel[order]
        slot = torch.zeros(2 * H * W, dtype=torch.long)
        for c, tc in zip(channel.tolist(), t.tolist()):
            if slot[c] < SLOTS:  # at most SLOTS events per pixel and polarity (dropped beyond: 0.0 % here)
                times[b, c, slot[c]] = tc
                slot[c] += 1
    return times

times = nmnist_like(batch, 0)
warm = nmnist_like(2, 1)
torch.manual_seed(0)
kernel = torch.randn(8, 2, 3, 3) * 0.5 + 1.5
if method == "eventprop":
    import numba
    numba.set_num_threads(2)
    from eventprop import LIFConv2d
    conv = LIFConv2d(2, 8, 3, input_size=(H, W), tau_mem=20.0, tau_syn=5.0, dtype=torch.float32)
    with torch.no_grad():
        conv.kernel.copy_(kernel)
    def step(x):
        conv.zero_grad()
        out = conv(x)
        loss = torch.where(torch.isfinite(out), out, 0.0).sum() / 1000
        loss.backward()
        return float(torch.isfinite(out).sum())
    prepare = lambda x: x
else:
    import snntorch as snn
    dt, steps = 1.0, int(TRIAL)
    alpha, beta = math.exp(-dt / 5.0), math.exp(-dt / 20.0)
    from eventprop.model.neuron import NeuronParams, psp_kernel
    scale = float(psp_kernel(torch.tensor(dt, dtype=torch.float64), NeuronParams(20.0, 5.0)))
    conv = torch.nn.Conv2d(2, 8, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernel * scale)
    class FastSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).float()
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g / (25.0 * x.abs() + 1.0) ** 2
    lif = snn.Synaptic(alpha, beta, spike_grad=FastSigmoid.apply, threshold=1.0)
    def prepare(x):
        b = x.shape[0]
        dense = torch.zeros(steps, b * 2 * H * W)
        flat = x.reshape(b * 2 * H * W, -1)
        row, slot = torch.nonzero(torch.isfinite(flat), as_tuple=True)
        bins = torch.clamp((flat[row, slot] / dt).long(), max=steps - 1)
        dense.index_put_((bins, row), torch.ones_like(bins, dtype=torch.float32), accumulate=True)
        return dense.reshape(steps, b, 2, H, W)
    def step(dense):
        conv.zero_grad()
        syn = mem = torch.zeros(dense.shape[1], 8, H - 2, W - 2)
        total = torch.zeros(())
        for t in range(dense.shape[0]):
            spk, syn, mem = lif(conv(dense[t]), syn, mem)
            total = total + spk.sum()
        (total / 1000).backward()
        return float(total)

step(prepare(warm))
data = prepare(times)
load = float(open("/proc/loadavg").read().split()[0])
seconds, spikes = [], None
for _ in range(reps):
    t0 = time.perf_counter()
    spikes = step(data)
    seconds.append(time.perf_counter() - t0)
best = statistics.median(seconds)
print(json.dumps({"method": method, "batch": batch, "seconds": seconds, "samples_per_s": batch / best,
                  "output_spikes_per_sample": spikes / batch,
                  "input_events_per_sample": float(torch.isfinite(times).sum()) / batch,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loadavg_before": load}))
"""

ROOT = Path(__file__).resolve().parents[1]


def measure(method: str, batch: int, reps: int) -> dict:
    """One fresh-process measurement."""
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, method, str(batch), str(reps)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="samples per batch (default 8)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    args = parser.parse_args()
    if args.batch < 1 or args.reps < 1:
        parser.error("--batch and --reps must be at least 1")
    rows = [measure(m, args.batch, args.reps) for m in ("eventprop", "snntorch")]
    base = rows[1]["samples_per_s"]
    print("| method | samples/s | ratio vs snnTorch | peak MiB | input events/sample | output spikes/sample | load |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        row["ratio_vs_snntorch"] = row["samples_per_s"] / base
        print(
            f"| {row['method']} | {row['samples_per_s']:.2f} | {row['ratio_vs_snntorch']:.1f}x | {row['peak_mib']:.0f} | "
            f"{row['input_events_per_sample']:.0f} | {row['output_spikes_per_sample']:.0f} | {row['loadavg_before']:.2f} |"
        )
    out = ROOT / "benchmarks" / "results" / "conv.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"batch": args.batch, "threads": 2, "dt_ms": 1.0, "results": rows}, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
