"""Training-epoch time of EventProp against a time-stepped surrogate-gradient baseline.

Yin-Yang 5-200-3 (see ``common.py``), 5000 training samples, batch 32, Adam (lr 5e-3),
measured in the same run:

- EventProp (this library, compiled CPU engine): epochs from the initial weights in
  float64 and float32; epoch 1 runs at initial activity (about 75 hidden spikes per
  sample; repeated from the initial weights), epochs 4-8 near trained activity (about
  30); the Adam step is included; best and median are reported (the machine is shared).
- The time-stepped BPTT baseline (``bptt.py``; exact propagator per step, fast-sigmoid
  surrogate, trial of 40 ms, float64) at dt = 0.1 ms (a whole epoch) and dt = 0.01 ms
  (the first ``--fine-batches`` batches, extrapolated to the 157 of an epoch).
- Peak memory of one forward + backward at batch 32 (fresh process each).
- Cosine similarity of the baseline's gradient (dL/dW1, dL/dW2 together) with the exact
  EventProp gradient on the first 200 training samples, at initial and trained weights.

Usage::

    python benchmarks/bench_training.py            # about 3 minutes on 2 cores
    python benchmarks/bench_training.py --quick    # fewer epochs and baseline batches

Writes ``benchmarks/results/training.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

import bptt
import common

T_END = 40.0  # ms: every first output spike of the network lies before it (max ~38 ms)


def eventprop_epochs(dtype: torch.dtype, epochs: int, threads: int) -> list[dict[str, float]]:
    common.set_threads(threads)
    times, labels = common.yinyang_data("train", dtype)
    model = common.build_network(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3, fused=True)  # as the trainer
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95)
    gen = torch.Generator().manual_seed(0)
    common.loss_fn(model(times[:32]), labels[:32]).backward()  # load (or compile) the kernels before timing
    optimizer.zero_grad()
    rows = []
    for epoch in range(1, epochs + 1):
        with torch.no_grad():
            hidden = float(torch.isfinite(model[0](times[:1000])).sum()) / 1000
        start = time.perf_counter()
        common.train_epoch(model, optimizer, times, labels, 32, gen)
        rows.append({"epoch": epoch, "seconds": time.perf_counter() - start, "hidden_spikes_at_start": hidden})
        scheduler.step()
    return rows


def bptt_epoch(dt: float, max_batches: int | None, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    times, labels = common.yinyang_data("train")
    w1, w2 = common.weights("init")
    w1.requires_grad_(True)
    w2.requires_grad_(True)
    optimizer = torch.optim.Adam([w1, w2], lr=5e-3)
    perm = torch.randperm(times.shape[0], generator=torch.Generator().manual_seed(0))
    n_batches = -(-times.shape[0] // 32)
    used = n_batches if max_batches is None else min(max_batches, n_batches)
    start = time.perf_counter()
    for k in range(used):
        idx = perm[32 * k : 32 * (k + 1)]
        first, _ = bptt.first_spike_times(times[idx], w1, w2, dt=dt, t_end=T_END, tau_mem=20.0, tau_syn=5.0)
        loss = common.first_spike_loss(first, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    return {"dt_ms": dt, "batches_timed": used, "seconds_timed": elapsed, "seconds_per_epoch": elapsed * n_batches / used}


def peak_memory(method: str, dt: float) -> float:
    """Peak MiB of one forward + backward at batch 32, initial weights (run in a fresh process)."""
    common.set_threads(1)
    times, labels = common.yinyang_data("train", n=32)
    w1, w2 = common.weights("init")
    if method == "eventprop":
        model = common.network_with(w1, w2)
        common.loss_fn(model(times[:1]), labels[:1]).backward()  # load the kernels
        return common.peak_memory_mib(lambda: common.loss_fn(model(times), labels).backward())
    a, b = w1.requires_grad_(True), w2.requires_grad_(True)
    bptt.first_spike_times(times[:1], a, b, dt=dt, t_end=1.0, tau_mem=20.0, tau_syn=5.0)[0].sum().backward()

    def step() -> None:
        first, _ = bptt.first_spike_times(times, a, b, dt=dt, t_end=T_END, tau_mem=20.0, tau_syn=5.0)
        common.first_spike_loss(first, labels).backward()

    return common.peak_memory_mib(step)


def cosine(state: str, dt: float) -> float:
    times, labels = common.yinyang_data("train", n=200)
    w1, w2 = common.weights(state)
    model = common.network_with(w1, w2)
    common.loss_fn(model(times), labels).backward()
    exact = torch.cat([model[0].weight.grad.flatten(), model[1].weight.grad.flatten()])
    a, b = w1.clone().requires_grad_(True), w2.clone().requires_grad_(True)
    first, _ = bptt.first_spike_times(times, a, b, dt=dt, t_end=T_END, tau_mem=20.0, tau_syn=5.0)
    common.first_spike_loss(first, labels).backward()
    approx = torch.cat([a.grad.flatten(), b.grad.flatten()])
    return float(torch.nn.functional.cosine_similarity(approx, exact, dim=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="EventProp epochs per dtype (>= 4)")
    parser.add_argument("--repeats", type=int, default=3, help="EventProp first epochs timed from the initial weights")
    parser.add_argument("--fine-batches", type=int, default=8, help="baseline batches timed at dt = 0.01 ms")
    parser.add_argument("--quick", action="store_true", help="4 epochs, 20 %% of the dt = 0.1 ms epoch, 3 fine batches")
    args = parser.parse_args()
    epochs = 4 if args.quick else max(args.epochs, 4)
    coarse_batches = 32 if args.quick else None
    fine_batches = 3 if args.quick else args.fine_batches

    results: dict[str, object] = {"threads": args.threads, "t_end_ms": T_END}
    print(f"Yin-Yang 5-200-3, 5000 samples, batch 32, Adam; {args.threads} threads\n")
    summary = {}
    for dtype in (torch.float64, torch.float32):
        # the machine is shared: epoch 1 is repeated from the initial weights, the
        # trained figure is taken over epochs 4..epochs; best and median are reported
        runs = [eventprop_epochs(dtype, epochs if k == 0 else 1, args.threads) for k in range(args.repeats)]
        rows = runs[0]
        name = str(dtype).replace("torch.", "")
        first = [r[0]["seconds"] for r in runs]
        later = [r["seconds"] for r in rows[3:]]
        summary[name] = {
            "first": min(first), "first_median": statistics.median(first),
            "trained": min(later), "trained_median": statistics.median(later),
            "spikes_first": rows[0]["hidden_spikes_at_start"],
            "spikes_trained": statistics.mean(r["hidden_spikes_at_start"] for r in rows[3:]),
        }
        results[f"eventprop_{name}"] = {"epochs": rows, "epoch1_repeats": first}
        stats = summary[name]
        print(f"EventProp {name}: epoch 1 best {stats['first']:.3f} s, median {stats['first_median']:.3f} s "
              f"({stats['spikes_first']:.0f} hidden spikes/sample); epochs 4-{epochs} best {stats['trained']:.3f} s, "
              f"median {stats['trained_median']:.3f} s ({stats['spikes_trained']:.0f} spikes/sample)")

    baseline = []
    for dt, batches in ((0.1, coarse_batches), (0.01, fine_batches)):
        row = bptt_epoch(dt, batches, args.threads)
        baseline.append(row)
        print(f"BPTT dt = {dt} ms: {row['seconds_per_epoch']:.1f} s per epoch ({row['batches_timed']} batches timed)")
    results["bptt_epochs"] = baseline

    context = multiprocessing.get_context("spawn")
    memory = {}
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        for method, dt in (("eventprop", 0.0), ("bptt", 0.1), ("bptt", 0.01)):
            key = method if method == "eventprop" else f"bptt_dt{dt}"
            memory[key] = pool.submit(peak_memory, method, dt).result()
    results["peak_memory_mib_batch32"] = memory

    common.set_threads(args.threads)
    torch.set_num_threads(args.threads)
    cos = {f"{state}_dt{dt}": cosine(state, dt) for state in ("init", "trained") for dt in (0.1, 0.01)}
    results["gradient_cosine_vs_exact"] = cos
    results["summary"] = summary

    ep = summary["float64"]
    print("\n| method | seconds per epoch, initial activity: best (median) | trained activity: best (median) | BPTT time / EventProp float64 time (epoch from initial weights) | peak memory fwd+bwd, batch 32 | gradient cosine vs exact (initial / trained weights) |")
    print("|---|---|---|---|---|---|")
    for name in ("float64", "float32"):
        s = summary[name]
        print(f"| EventProp {name} | {s['first']:.3f} ({s['first_median']:.3f}) | {s['trained']:.3f} ({s['trained_median']:.3f}) | - | "
              f"{memory['eventprop']:.1f} MiB | 1 (exact) |")
    for row in baseline:
        dt = row["dt_ms"]
        print(f"| BPTT dt = {dt} ms | {row['seconds_per_epoch']:.1f} | - | "
              f"{row['seconds_per_epoch'] / ep['first']:.0f}x (vs median: {row['seconds_per_epoch'] / ep['first_median']:.0f}x) | "
              f"{memory[f'bptt_dt{dt}']:.0f} MiB | {cos[f'init_dt{dt}']:.3f} / {cos[f'trained_dt{dt}']:.3f} |")
    common.write_json("training.json", results)


if __name__ == "__main__":
    main()
