"""SHD-sized networks, forward + backward: EventProp against snnTorch, samples/s and peak memory.

Workload (synthetic, shaped like the Spiking Heidelberg Digits): 700 input channels,
1 s trials, each channel a Poisson train at its own rate (rates drawn once from a gamma
distribution with shape 2 and mean 11.4 Hz: about 8,000 input spikes per sample, as in
SHD); a hidden layer of 256 (or 512) LIF neurons, feed-forward or recurrent
(``tau_mem`` 20 ms, ``tau_syn`` 5 ms, threshold 1, reset by subtraction; input weights
N(0.023, 0.04^2), which makes the hidden layer fire at about 8 Hz; recurrent weights
N(0, (0.02 sqrt(256 / H))^2)); a readout of 20 leaky integrators (same time constants,
weights N(0, 1/H)) and the max-over-time voltage cross-entropy. Labels are random: the
speed of one forward + backward does not depend on them.

- EventProp: ``LIFLayer`` + ``LIReadout`` on the ``auto`` engine (numba on CPU),
  exact in continuous time.
- snnTorch (1.0, ``pip install -e .[bench]``): the same architecture time-stepped at
  ``dt`` = 1 ms, as its users write it: the input binned to a dense
  ``(steps, batch, 700)`` tensor (outside the timed region), then its tutorials' loop
  over the steps, each step through ``nn.Linear``, ``snn.Synaptic`` /
  ``snn.RSynaptic`` (``all_to_all``, its
  recurrent ``nn.Linear`` set to the same weights, bias 0) with the fast-sigmoid
  surrogate (snnTorch's, re-declared to keep float64 spikes float64), ``nn.Linear`` and a
  ``snn.Synaptic`` readout without reset, whose running maximum of the membrane enters
  the same cross-entropy; BPTT through all steps. (Applying the first ``nn.Linear`` to
  all steps at once and indexing its output per step is slower: the backward of each
  index writes a full-size gradient.) Its weights are ours
  times ``K(dt)`` (the voltage one step after a unit current jump), so that its
  per-step update ``mem <- beta mem + syn`` sees the same drive.

Each measurement runs in a fresh process: a warm-up on two samples (kernel compilation,
allocator), the peak memory of the first full forward + backward (``common.peak_memory_mib``:
everything the call adds, inputs excluded), then the median time of ``--reps`` more.
Threads: 2 for both (numba's pool for EventProp, whose PyTorch glue runs on one thread;
PyTorch's intra-op pool for snnTorch). The projected SHD epoch is 8,156 samples at the
measured rate (forward + backward only; no optimiser step, no data loading).

Usage::

    python benchmarks/bench_shd.py            # the full table (about 10 minutes)
    python benchmarks/bench_shd.py --quick    # 256 hidden, batch 32, float32 only
    python benchmarks/bench_shd.py --breakdown  # EventProp's step by kernel (256, batch 32, float32)
    python benchmarks/bench_shd.py --quick --rounds 5  # the pair 5 times, alternating: median ratio

On a shared machine one measurement of each can fall on a quiet and a busy moment;
``--rounds N`` repeats each case's pair N times, alternating, and reports the median
samples/s of each method and the median of the N ratios (all rounds are in the JSON).

Writes ``benchmarks/results/shd.json`` (``--quick``: ``shd_quick.json``) and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

import common

CHANNELS, TRIAL_MS, CLASSES = 700, 1000.0, 20
TAU_MEM, TAU_SYN = 20.0, 5.0
RATE_SHAPE, RATE_MEAN_HZ = 2, 11.4
W_MEAN, W_STD, R_STD = 0.023, 0.04, 0.02
SHD_TRAIN_SAMPLES = 8156


@dataclass(frozen=True)
class Case:
    """One row of the table."""

    hidden: int
    recurrent: bool
    batch: int
    dtype: str  # "float32" or "float64"

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def label(self) -> str:
        return f"{'recurrent' if self.recurrent else 'feed-forward'} {self.hidden}, batch {self.batch}, {self.dtype}"


def channel_rates() -> Tensor:
    """The 700 channels' rates in Hz, fixed: gamma with shape 2 (a sum of two exponentials), seed 0."""
    gen = torch.Generator().manual_seed(0)
    uniform = torch.rand(2, CHANNELS, generator=gen, dtype=torch.float64)
    return -torch.log(uniform).sum(0) * (RATE_MEAN_HZ / RATE_SHAPE)


def shd_like_batch(batch: int, dtype: torch.dtype, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Spike times ``(batch, 700, slots)`` (``+inf`` padded) and random labels ``(batch,)``."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(channel_rates().expand(batch, -1) * (TRIAL_MS / 1000.0), generator=gen)
    slots = max(int(counts.max()), 1)
    times = torch.rand(batch, CHANNELS, slots, generator=gen, dtype=torch.float64) * TRIAL_MS
    times = torch.where(torch.arange(slots) < counts[..., None], times, math.inf).sort(-1).values
    labels = torch.randint(0, CLASSES, (batch,), generator=gen)
    return times.to(dtype), labels


def network_weights(hidden: int, recurrent: bool, dtype: torch.dtype, seed: int = 2) -> tuple[Tensor, Tensor | None, Tensor]:
    """``(W_in (H, 700), R (H, H) with zero diagonal or None, W_out (20, H))``."""
    gen = torch.Generator().manual_seed(seed)
    w_in = torch.randn(hidden, CHANNELS, generator=gen, dtype=torch.float64) * W_STD + W_MEAN
    rec = None
    if recurrent:
        rec = (torch.randn(hidden, hidden, generator=gen, dtype=torch.float64) * R_STD * math.sqrt(256 / hidden)).fill_diagonal_(0.0)
    w_out = torch.randn(CLASSES, hidden, generator=gen, dtype=torch.float64) / math.sqrt(hidden)
    return w_in.to(dtype), None if rec is None else rec.to(dtype), w_out.to(dtype)


def _eventprop(case: Case):  # noqa: ANN202
    from eventprop import LIFLayer, LIReadout, max_voltage_cross_entropy

    dtype = case.torch_dtype
    w_in, rec, w_out = network_weights(case.hidden, case.recurrent, dtype)
    layer = LIFLayer(CHANNELS, case.hidden, tau_mem=TAU_MEM, tau_syn=TAU_SYN, recurrent=case.recurrent, dtype=dtype)
    readout = LIReadout(case.hidden, CLASSES, tau_mem=TAU_MEM, tau_syn=TAU_SYN, window=TRIAL_MS, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(w_in)
        readout.weight.copy_(w_out)
        if rec is not None:
            layer.recurrent_weight.copy_(rec)

    def prepare(times: Tensor) -> Tensor:
        return times

    def step(times: Tensor, labels: Tensor) -> float:
        layer.zero_grad(set_to_none=True)
        readout.zero_grad(set_to_none=True)
        spikes = layer(times)
        max_voltage_cross_entropy(readout(spikes), labels).backward()
        return float(torch.isfinite(spikes).sum())

    return prepare, step


class _FastSigmoid(torch.autograd.Function):
    """snnTorch's ``surrogate.fast_sigmoid`` (slope 25), returning spikes in the input's dtype.

    snnTorch's own returns float32 spikes, which a float64 network cannot multiply.
    """

    @staticmethod
    def forward(ctx, v_minus_theta: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v_minus_theta)
        return (v_minus_theta > 0).to(v_minus_theta.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (v_minus_theta,) = ctx.saved_tensors
        return grad / (25.0 * v_minus_theta.abs() + 1.0) ** 2


def _snntorch(case: Case):  # noqa: ANN202
    return stepped_network(*network_weights(case.hidden, case.recurrent, case.torch_dtype), steps=int(TRIAL_MS))


def stepped_network(w_in: Tensor, rec: Tensor | None, w_out: Tensor, *, steps: int, device: str | torch.device = "cpu"):  # noqa: ANN201
    """snnTorch's tutorial loop at dt = 1 ms for weights ``(H, inputs)``, ``(H, H)`` or ``None``,
    ``(classes, H)`` (the module docstring), on ``device``: ``(prepare, step)``, where
    ``prepare(times)`` bins spike times into ``(steps, batch, inputs)`` counts and
    ``step(dense, labels)`` runs forward + backward and returns the hidden spike count."""
    import snntorch as snn

    from eventprop.model.neuron import NeuronParams, psp_kernel

    dt = 1.0
    dtype = w_in.dtype
    hidden, n_in = w_in.shape
    classes = w_out.shape[0]
    alpha, beta = math.exp(-dt / TAU_SYN), math.exp(-dt / TAU_MEM)
    scale = float(psp_kernel(torch.tensor(dt, dtype=torch.float64), NeuronParams(TAU_MEM, TAU_SYN)))
    fc1 = torch.nn.Linear(n_in, hidden, bias=False, dtype=dtype, device=device)
    fc2 = torch.nn.Linear(hidden, classes, bias=False, dtype=dtype, device=device)
    grad = _FastSigmoid.apply
    if rec is not None:
        lif = snn.RSynaptic(alpha, beta, all_to_all=True, linear_features=hidden, spike_grad=grad, threshold=1.0)
    else:
        lif = snn.Synaptic(alpha, beta, spike_grad=grad, threshold=1.0)
    out = snn.Synaptic(alpha, beta, reset_mechanism="none")
    lif.to(device, dtype)  # its buffers (alpha, beta, threshold) and the recurrent nn.Linear
    out.to(device, dtype)
    with torch.no_grad():
        fc1.weight.copy_(w_in * scale)
        fc2.weight.copy_(w_out * scale)
        if rec is not None:
            lif.recurrent.weight.copy_(rec * scale)
            lif.recurrent.bias.zero_()
    modules = [fc1, fc2, lif, out]

    def prepare(times: Tensor) -> Tensor:
        """Spike counts per 1 ms bin: ``(steps, batch, inputs)``."""
        batch = times.shape[0]
        dense = torch.zeros(steps, batch * n_in, dtype=dtype, device=device)
        flat = times.reshape(batch * n_in, -1)
        row, slot = torch.nonzero(torch.isfinite(flat), as_tuple=True)
        bins = torch.clamp((flat[row, slot] / dt).long(), max=steps - 1)
        dense.index_put_((bins, row), torch.ones_like(bins, dtype=dtype), accumulate=True)
        return dense.reshape(steps, batch, n_in)

    def step(dense: Tensor, labels: Tensor) -> float:
        for m in modules:
            m.zero_grad(set_to_none=True)
        shape = (dense.shape[1], hidden)
        spk, syn, mem = (torch.zeros(shape, dtype=dtype, device=device) for _ in range(3))
        syn2, mem2 = (torch.zeros(dense.shape[1], classes, dtype=dtype, device=device) for _ in range(2))
        v_max = None
        n_spikes = torch.zeros((), dtype=dtype, device=device)
        for t in range(steps):  # snnTorch's tutorial loop: one step of every layer at a time
            if rec is not None:
                spk, syn, mem = lif(fc1(dense[t]), spk, syn, mem)
            else:
                spk, syn, mem = lif(fc1(dense[t]), syn, mem)
            _, syn2, mem2 = out(fc2(spk), syn2, mem2)
            v_max = mem2 if v_max is None else torch.maximum(v_max, mem2)
            n_spikes += spk.detach().sum()
        torch.nn.functional.cross_entropy(v_max / scale, labels).backward()
        return float(n_spikes)

    return prepare, step


def measure(method: str, case: Case, reps: int) -> dict[str, object]:
    """One fresh-process measurement."""
    common.set_threads(2)
    if method == "snntorch":
        torch.set_num_threads(2)
    prepare, step = (_eventprop if method == "eventprop" else _snntorch)(case)
    times, labels = shd_like_batch(case.batch, case.torch_dtype)
    warm_times, warm_labels = shd_like_batch(2, case.torch_dtype, seed=9)
    step(prepare(warm_times), warm_labels)
    data = prepare(times)
    load = open("/proc/loadavg").read().split()[0]
    hidden_spikes: list[float] = []
    peak = common.peak_memory_mib(lambda: hidden_spikes.append(step(data, labels)))
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        step(data, labels)
        seconds.append(time.perf_counter() - start)
    best = statistics.median(seconds)
    return {
        "method": method,
        **asdict(case),
        "seconds": seconds,
        "samples_per_s": case.batch / best,
        "epoch_s": SHD_TRAIN_SAMPLES * best / case.batch,
        "peak_mib": peak,
        "input_spikes_per_sample": float(torch.isfinite(times).sum()) / case.batch,
        "hidden_spikes_per_sample": hidden_spikes[0] / case.batch,
        "hidden_rate_hz": hidden_spikes[0] / case.batch / case.hidden / (TRIAL_MS / 1000.0),
        "loadavg_before": float(load),
    }


def breakdown(recurrent: bool, reps: int) -> dict[str, float]:
    """EventProp's training step (256, batch 32, float32) split into its compiled kernels, ms.

    Every kernel launch of the numba engine is timed (``threads.launch``, wrapped in the
    kernel modules for this call only); of ``reps`` steps the fastest is reported: the
    whole step, each kernel summed over its launches, and the rest (Python, PyTorch's
    autograd and tensor glue, on one thread).
    """
    from collections import Counter

    from eventprop.engines.numba_cpu import chunks, events, feedforward, recurrent as rec_module, threads, trajectory

    common.set_threads(2)
    case = Case(256, recurrent, 32, "float32")
    _, step = _eventprop(case)
    times, labels = shd_like_batch(case.batch, case.torch_dtype)
    spent: Counter[str] = Counter()

    def timed(parallel, serial, work, *args) -> None:  # noqa: ANN001
        start = time.perf_counter()
        threads.launch(parallel, serial, work, *args)
        spent[parallel.__name__] += time.perf_counter() - start

    modules = (chunks, events, feedforward, rec_module, trajectory)
    for module in modules:
        module.launch = timed
    try:
        step(times, labels)
        step(times, labels)
        fastest: tuple[float, dict[str, float]] | None = None
        for _ in range(reps):
            spent.clear()
            start = time.perf_counter()
            step(times, labels)
            total = time.perf_counter() - start
            if fastest is None or total < fastest[0]:
                fastest = (total, dict(spent))
    finally:
        for module in modules:
            module.launch = threads.launch
    total, kernels = fastest
    parts = {"step": 1e3 * total}
    parts.update((name, 1e3 * t) for name, t in sorted(kernels.items(), key=lambda kv: -kv[1]))
    parts["rest (Python, autograd, tensor glue)"] = 1e3 * (total - sum(kernels.values()))
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 hidden, batch 32, float32 only")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement (median)")
    parser.add_argument("--breakdown", action="store_true", help="EventProp's training step split into its compiled kernels, and stop")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure each case's pair this many times, alternating (median samples/s, median of the rounds' ratios)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.breakdown:
        for recurrent in (False, True):
            parts = breakdown(recurrent, max(args.reps, 20))
            name = "recurrent" if recurrent else "feed-forward"
            print(f"{name} 256, batch 32, float32 (ms, the fastest of {max(args.reps, 20)} training steps): "
                  + "; ".join(f"{k} {v:.1f}" for k, v in parts.items()))
        return
    if args.quick:
        cases = [Case(256, r, 32, "float32") for r in (False, True)]
    else:
        cases = [Case(256, r, b, d) for r in (False, True) for b in (32, 256) for d in ("float32", "float64")]
        cases.append(Case(512, True, 32, "float32"))
    context = multiprocessing.get_context("spawn")
    rows = []
    print("| case | method | samples/s | ratio | epoch (s) | peak MiB | hidden spikes/sample | hidden Hz |")
    print("|---|---|---|---|---|---|---|---|")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        for case in cases:
            rounds = [
                {m: pool.submit(measure, m, case, args.reps).result() for m in ("eventprop", "snntorch")}
                for _ in range(args.rounds)
            ]
            ratios = [r["eventprop"]["samples_per_s"] / r["snntorch"]["samples_per_s"] for r in rounds]
            for method in ("eventprop", "snntorch"):
                runs = [r[method] for r in rounds]
                row = dict(runs[0])  # (spike counts and peak memory do not change between rounds)
                rate = statistics.median(r["samples_per_s"] for r in runs)
                row.update(
                    samples_per_s=rate,
                    epoch_s=SHD_TRAIN_SAMPLES / rate,
                    peak_mib=max(r["peak_mib"] for r in runs),
                    rounds_samples_per_s=[r["samples_per_s"] for r in runs],
                    loadavg_before=[r["loadavg_before"] for r in runs],
                )
                ratio = statistics.median(ratios) if method == "eventprop" else 1.0
                row["ratio_vs_snntorch"] = ratio
                if method == "eventprop":
                    row["rounds_ratio"] = ratios
                rows.append(row)
                print(
                    f"| {case.label()} | {method} | {row['samples_per_s']:.1f} | {ratio:.1f}x | {row['epoch_s']:.0f} | "
                    f"{row['peak_mib']:.0f} | {row['hidden_spikes_per_sample']:.0f} | {row['hidden_rate_hz']:.1f} |",
                    flush=True,
                )
    inputs = rows[0]["input_spikes_per_sample"]
    print(f"input spikes per sample: {inputs:.0f} (700 channels, {TRIAL_MS / 1000:.0f} s)")
    common.write_json("shd_quick.json" if args.quick else "shd.json", {"dt_ms": 1.0, "threads": 2, "results": rows})


if __name__ == "__main__":
    main()
