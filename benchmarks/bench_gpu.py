"""The CUDA engine on a GPU: agreement with the CPU engine, then forward + backward throughput.

One prepared command for a machine with an NVIDIA GPU and ``pip install -e .[cuda,bench]``
(numba-cuda, snnTorch); it keeps itself under about 8 minutes (a time budget skips what
would not fit, and says so in the table).

1. Agreement, float64: the CUDA engine's spike times and gradients against the compiled
   CPU engine's on the same inputs and weights: Yin-Yang 5-200-3 (batch 256, the
   first-spike cross-entropy) and the SHD-shaped recurrent layer of 256 (batch 8, a loss
   weighting every spike). Criteria: the same spikes, times within 1e-9 ms, gradients
   within 1e-8 relative (largest difference over largest entry).
2. Throughput, forward + backward (samples/s, median of repeats after a warm-up; peak
   GPU memory of one step), float32 and float64, on the same GPU:

   - Yin-Yang 5-200-3 (``benchmarks/common.py``'s network and data, first-spike loss) at
     batch 32 to 65,536: the ``cuda`` engine, the PyTorch engine (``torch``), and snnTorch
     (``snn.Synaptic`` layers stepped at dt = 1 ms over 60 ms, the max-over-time output
     membrane in the cross-entropy, BPTT);
   - SHD-shaped (``benchmarks/bench_shd.py``: 700 Poisson channels, about 8,000 input
     spikes in 1 s, a hidden layer of 256 at about 8 Hz, feed-forward and recurrent, 20
     ``LIReadout`` leaky integrators and the max-over-time voltage loss) at batch 32 to
     1,024: the ``cuda`` engine (hidden layer and readout), ``torch``, and snnTorch at
     dt = 1 ms (bench_shd's loop, on the GPU).

   A method stops growing its batch once one step takes longer than ``--step-limit``
   seconds (then that one step, its first, is the measurement) or runs out of memory.

Usage::

    python benchmarks/bench_gpu.py              # on a GPU: the whole table, about 8 minutes
    python benchmarks/bench_gpu.py --simulate   # on any CPU: the same code paths at toy sizes,
                                                # the kernels in numba's CUDA simulator

Writes ``benchmarks/results/gpu.json`` (``--simulate``: ``gpu_simulated.json``) and prints
markdown tables for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--simulate", action="store_true", help="toy sizes on the CPU through numba's CUDA simulator")
ARGS.add_argument("--budget", type=float, default=420.0, help="seconds for the throughput part (default 420)")
ARGS.add_argument("--step-limit", type=float, default=10.0, help="largest seconds per step before a method stops growing")
if __name__ == "__main__":
    _OPTIONS = ARGS.parse_args()
    if _OPTIONS.simulate:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import common  # noqa: E402  (puts src/ on the path)
from bench_shd import CLASSES, TAU_MEM, TAU_SYN, TRIAL_MS, network_weights, shd_like_batch, stepped_network  # noqa: E402
from eventprop import LIFLayer, LIReadout, first_spikes, lif_layer, max_voltage_cross_entropy  # noqa: E402

F64 = torch.float64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _relative(a: Tensor, b: Tensor) -> float:
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / scale if scale > 0 else float((a - b).abs().max())


def _compare(name: str, run: Callable[[str, torch.device], tuple[Tensor, list[Tensor]]], device: torch.device) -> dict:
    out, grads = run("cuda", device)
    ref, ref_grads = run("numba", torch.device("cpu"))
    out, grads = out.cpu(), [g.cpu() for g in grads]
    finite = torch.isfinite(ref)
    same = bool(torch.equal(finite, torch.isfinite(out)))
    time_error = float((out[finite] - ref[finite]).abs().max()) if same and finite.any() else math.inf
    grad_error = max(_relative(g, r) for g, r in zip(grads, ref_grads))
    ok = same and time_error <= 1e-9 and grad_error <= 1e-8
    return {"case": name, "spikes": int(finite.sum()), "same_spikes": same, "time_error_ms": time_error,
            "gradient_error": grad_error, "ok": ok}  # fmt: skip


def agreement(device: torch.device, toy: bool) -> list[dict]:
    """Section 1 of the module docstring."""
    batch = 16 if toy else 256
    times, labels = common.yinyang_data("train", F64, n=batch)
    net = common.build_network(F64)
    w1, w2 = net[0].weight.detach(), net[1].weight.detach()

    def yinyang(engine: str, dev: torch.device) -> tuple[Tensor, list[Tensor]]:
        t = times.to(dev).requires_grad_(True)
        a, b = w1.to(dev).requires_grad_(True), w2.to(dev).requires_grad_(True)
        kw = dict(tau_mem=common.TAU_MEM, tau_syn=common.TAU_SYN, engine=engine)
        hidden = lif_layer(t, a, **kw)
        out = lif_layer(hidden, b, **kw)
        loss = common.first_spike_loss(first_spikes(out), labels.to(dev))
        return hidden, list(torch.autograd.grad(loss, [t, a, b]))

    hidden, channels = (16, 40) if toy else (256, 700)
    shd_times, _ = shd_like_batch(2 if toy else 8, F64)
    shd_times = shd_times[:, :channels]
    if toy:
        shd_times = torch.where(shd_times < 100.0, shd_times, math.inf)
    w_in, rec, _ = network_weights(hidden, True, F64)
    w_in = w_in[:, :channels] * (1.0 if not toy else 40.0)  # toy: few inputs, so stronger ones

    def recurrent(engine: str, dev: torch.device) -> tuple[Tensor, list[Tensor]]:
        t = shd_times.to(dev).requires_grad_(True)
        a, r = w_in.to(dev).requires_grad_(True), rec.to(dev).requires_grad_(True)
        out = lif_layer(t, a, r, tau_mem=TAU_MEM, tau_syn=TAU_SYN, engine=engine)
        weight = torch.linspace(0.5, 1.5, out.shape[1], dtype=F64, device=dev)[:, None]
        loss = (torch.where(torch.isfinite(out), out, 0.0) * weight).sum() / TRIAL_MS
        return out, list(torch.autograd.grad(loss, [t, a, r]))

    return [_compare(f"Yin-Yang 5-200-3 hidden layer, batch {batch}", yinyang, device),
            _compare(f"SHD-shaped recurrent {hidden}, batch {shd_times.shape[0]}", recurrent, device)]  # fmt: skip


# --- throughput -----------------------------------------------------------------------------


def _yinyang_eventprop(engine: str, dtype: torch.dtype, device: torch.device) -> Callable[[Tensor, Tensor], float]:
    net = common.build_network(dtype)
    for layer in net:
        layer.engine = engine
    net.to(device)

    def step(times: Tensor, labels: Tensor) -> float:
        net.zero_grad(set_to_none=True)
        hidden = net[0](times)
        common.first_spike_loss(first_spikes(net[1](hidden)), labels).backward()
        return float(torch.isfinite(hidden).sum())

    return step


def _shd_eventprop(engine: str, dtype: torch.dtype, device: torch.device, hidden: int, recurrent: bool, channels: int, trial: float):  # noqa: ANN202
    w_in, rec, w_out = network_weights(hidden, recurrent, dtype)
    layer = LIFLayer(channels, hidden, tau_mem=TAU_MEM, tau_syn=TAU_SYN, recurrent=recurrent, dtype=dtype, engine=engine)
    readout = LIReadout(hidden, CLASSES, tau_mem=TAU_MEM, tau_syn=TAU_SYN, window=trial, dtype=dtype, engine=engine)
    with torch.no_grad():
        layer.weight.copy_(w_in[:, :channels])
        readout.weight.copy_(w_out)
        if rec is not None:
            layer.recurrent_weight.copy_(rec)
    layer.to(device)
    readout.to(device)

    def step(times: Tensor, labels: Tensor) -> float:
        layer.zero_grad(set_to_none=True)
        readout.zero_grad(set_to_none=True)
        spikes = layer(times)
        max_voltage_cross_entropy(readout(spikes), labels).backward()
        return float(torch.isfinite(spikes).sum())

    return step


def _time_step(step: Callable[[], float], device: torch.device, step_limit: float, min_seconds: float = 1.0) -> tuple[float, float, float]:
    """(median seconds of a step, peak MiB of one step, hidden spikes of it) after one warm-up;
    a warm-up longer than ``step_limit`` is the measurement itself (compilation included)."""
    start = time.perf_counter()
    spikes = step()
    _sync(device)
    warm = time.perf_counter() - start
    if warm > step_limit:
        return warm, math.nan, spikes
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    spikes = step()
    _sync(device)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else math.nan
    seconds: list[float] = []
    while len(seconds) < 3 or (sum(seconds) < min_seconds and len(seconds) < 20):
        start = time.perf_counter()
        step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), peak, spikes


def throughput(device: torch.device, toy: bool, budget: float, step_limit: float) -> list[dict]:
    """Section 2 of the module docstring."""
    t_end = time.perf_counter() + budget
    rows: list[dict] = []
    yinyang_batches = [4, 16] if toy else [32, 256, 2048, 16384, 65536]
    shd_batches = [2] if toy else [32, 128, 512, 1024]
    hidden, channels, trial = (8, 40, 100.0) if toy else (256, 700, TRIAL_MS)
    workloads = [("Yin-Yang 5-200-3", None, yinyang_batches), (f"SHD-shaped, feed-forward {hidden}", False, shd_batches),
                 (f"SHD-shaped, recurrent {hidden}", True, shd_batches)]  # fmt: skip
    for dtype in (torch.float32, torch.float64):
        for workload, recurrent, batches in workloads:
            for method in ("cuda", "torch", "snntorch"):
                stopped = ""
                for batch in batches:
                    row = {"workload": workload, "method": method, "dtype": str(dtype).removeprefix("torch."), "batch": batch}
                    rows.append(row)
                    if stopped or time.perf_counter() > t_end:
                        row["skipped"] = stopped or "time budget"
                        continue
                    try:
                        if recurrent is None:
                            times, labels = common.yinyang_data("train", dtype, n=batch)
                            times = times.repeat(math.ceil(batch / times.shape[0]), 1, 1)[:batch]
                            labels = labels.repeat(math.ceil(batch / labels.shape[0]))[:batch]
                        else:
                            times, labels = shd_like_batch(batch, dtype)
                            times = times[:, :channels]
                            if toy:
                                times = torch.where(times < trial, times, math.inf)
                        times, labels = times.to(device), labels.to(device)
                        if method == "snntorch":
                            if recurrent is None:
                                net = common.build_network(dtype)
                                w_in, rec, w_out = net[0].weight.detach(), None, net[1].weight.detach()
                                steps = 60
                            else:
                                w_in, rec, w_out = network_weights(hidden, recurrent, dtype)
                                w_in = w_in[:, :channels]
                                steps = int(trial)
                            prepare, fn = stepped_network(w_in, rec, w_out, steps=steps, device=device)
                            data = prepare(times)
                            seconds, peak, spikes = _time_step(lambda: fn(data, labels), device, step_limit)
                        else:
                            if recurrent is None:
                                fn = _yinyang_eventprop(method, dtype, device)
                            else:
                                fn = _shd_eventprop(method, dtype, device, hidden, recurrent, channels, trial)
                            seconds, peak, spikes = _time_step(lambda: fn(times, labels), device, step_limit)
                    except torch.cuda.OutOfMemoryError:
                        row["skipped"] = stopped = "out of GPU memory"
                        torch.cuda.empty_cache()
                        continue
                    row.update(samples_per_s=batch / seconds, step_s=seconds, peak_mib=peak, hidden_spikes_per_sample=spikes / batch)
                    if seconds > step_limit:
                        stopped = f"a step took {seconds:.1f} s at batch {batch}"
                    print(f"{workload}, {method}, {row['dtype']}, batch {batch}: {batch / seconds:,.0f} samples/s", flush=True)
    return rows


def _tables(checks: list[dict], rows: list[dict]) -> str:
    lines = ["| agreement (float64) | spikes | same spikes | largest time difference (ms) | largest gradient difference (relative) | within 1e-9 ms / 1e-8 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c in checks:
        lines.append(f"| {c['case']} | {c['spikes']} | {c['same_spikes']} | {c['time_error_ms']:.2e} | {c['gradient_error']:.2e} | {'yes' if c['ok'] else 'NO'} |")
    lines += ["", "| workload | dtype | batch | cuda (samples/s, MiB) | torch engine | snnTorch dt = 1 ms | cuda / snnTorch |", "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["workload"], r["dtype"], r["batch"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for workload, dtype, batch in keys:
        cells = {}
        for r in rows:
            if (r["workload"], r["dtype"], r["batch"]) == (workload, dtype, batch):
                cells[r["method"]] = r
        text = []
        for m in ("cuda", "torch", "snntorch"):
            r = cells.get(m, {})
            text.append(f"{r['samples_per_s']:,.0f} ({r['peak_mib']:.0f})" if "samples_per_s" in r else f"not measured ({r.get('skipped', '-')})")
        a, b = cells.get("cuda", {}), cells.get("snntorch", {})
        ratio = f"{a['samples_per_s'] / b['samples_per_s']:.1f}x" if "samples_per_s" in a and "samples_per_s" in b else "-"
        lines.append(f"| {workload} | {dtype} | {batch:,} | {' | '.join(text)} | {ratio} |")
    return "\n".join(lines)


def main(options: argparse.Namespace) -> None:
    device = torch.device("cpu" if options.simulate else "cuda")
    if not options.simulate and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (or --simulate for the code paths at toy sizes)")
    common.set_threads(2)
    start = time.perf_counter()
    checks = agreement(device, options.simulate)
    for c in checks:
        print(c, flush=True)
    rows = throughput(device, options.simulate, options.budget, options.step_limit)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "numba's CUDA simulator (CPU)"
    payload = {"device": gpu, "agreement": checks, "throughput": rows,
               "seconds": time.perf_counter() - start}  # fmt: skip
    path = common.write_json("gpu_simulated.json" if options.simulate else "gpu.json", payload)
    print(f"\n{gpu}, {payload['seconds']:.0f} s in all; results in {path}\n")
    print(_tables(checks, rows))


if __name__ == "__main__":
    main(_OPTIONS)
