r"""What learning delays, time constants and thresholds costs: forward + backward against the plain network.

The Yin-Yang network of :mod:`common` (5-200-3, ``init`` weights, float64, batch 32 of
the training set, first-spike loss), its hidden layer built with each option in turn
(same weights; delays drawn from U(0, 5 ms), time constants 20 / 5 ms (per neuron:
times exp(N(0, 0.05^2)), as they differ after training), thresholds 1),
the output layer plain; each configuration timed in the same process, interleaved over
``--reps`` rounds (median), on ``--threads`` numba threads. The ratio is against the
plain network of the same run.

- ``plain``: the dense compiled kernels;
- ``learn_tau="layer"``, ``learn_threshold``, ``delays="axon"``: the dense kernels,
  plus the time-constant pass (:mod:`eventprop.engines.numba_cpu.time_constants`) or
  autograd through ``weight / threshold`` and ``times + delay``;
- ``learn_tau="neuron"``, ``delays="synapse"``: the connection-list kernel
  (:mod:`eventprop.engines.numba_cpu.connections`), each neuron over its own arrivals;
- ``recurrent, ...``: the hidden layer with recurrent weights N(0, 0.05^2) (the same
  draw in every configuration): the dense recurrent kernel, or (per-neuron time
  constants, delays per synapse and recurrent ones) the event-driven
  :mod:`eventprop.engines.numba_cpu.recurrent_connections`.

Usage::

    python benchmarks/bench_learnable.py [--reps 7] [--threads 1]

Writes ``benchmarks/results/learnable.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import common
from eventprop import LIFLayer

CONFIGS = {
    "plain": {},
    'learn_tau="layer"': {"learn_tau": "layer"},
    "learn_threshold": {"learn_threshold": True},
    'delays="axon"': {"delays": "axon", "init_delay": 5.0},
    'learn_tau="neuron"': {"learn_tau": "neuron"},
    'delays="synapse"': {"delays": "synapse", "init_delay": 5.0},
    "all of them": {"learn_tau": "neuron", "learn_threshold": True, "delays": "synapse", "init_delay": 5.0},
    "recurrent, plain": {"recurrent": True},
    'recurrent, learn_tau="layer"': {"recurrent": True, "learn_tau": "layer"},
    'recurrent, learn_tau="neuron"': {"recurrent": True, "learn_tau": "neuron"},
    'recurrent, delays="synapse"': {"recurrent": True, "delays": "synapse", "init_delay": 5.0},
}


def network(options: dict, w1: torch.Tensor, w2: torch.Tensor) -> torch.nn.Sequential:
    torch.manual_seed(0)
    rec = {"recurrent_init_std": 0.05} if options.get("recurrent") else {}
    hidden = LIFLayer(5, 200, tau_mem=common.TAU_MEM, tau_syn=common.TAU_SYN, dtype=torch.float64, **rec, **options)
    output = LIFLayer(200, 3, tau_mem=common.TAU_MEM, tau_syn=common.TAU_SYN, dtype=torch.float64)
    with torch.no_grad():
        hidden.weight.copy_(w1)
        output.weight.copy_(w2)
        if hidden.learn_tau == "neuron":  # as after training: one value per neuron (equal ones run the dense kernels)
            hidden.log_tau_mem.add_(torch.randn(200, dtype=torch.float64) * 0.05)
            hidden.log_tau_syn.add_(torch.randn(200, dtype=torch.float64) * 0.05)
    return torch.nn.Sequential(hidden, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="interleaved rounds (median)")
    parser.add_argument("--threads", type=int, default=1, help="numba threads")
    args = parser.parse_args()
    common.set_threads(args.threads)
    times, labels = common.yinyang_data("train", n=32)
    w1, w2 = common.weights("init")
    models = {name: network(options, w1, w2) for name, options in CONFIGS.items()}

    def step(model: torch.nn.Sequential) -> None:
        model.zero_grad()
        common.loss_fn(model(times), labels).backward()

    for model in models.values():  # compiled kernels loaded
        step(model)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    load = open("/proc/loadavg").read().split()[0]
    for _ in range(args.reps):
        for name, model in models.items():
            start = time.perf_counter()
            step(model)
            seconds[name].append(time.perf_counter() - start)
    base = statistics.median(seconds["plain"])
    rows = []
    print(f"| hidden layer | ms per batch of 32 (median of {args.reps}) | ratio vs plain |")
    print("|---|---|---|")
    for name, values in seconds.items():
        ms = statistics.median(values) * 1000
        rows.append({"config": name, "ms": ms, "ratio": ms / (base * 1000), "seconds": values})
        print(f"| {name} | {ms:.1f} | {ms / (base * 1000):.2f}x |")
    print(f"load average before: {load}; numba threads: {args.threads}")
    common.write_json("learnable.json", {"threads": args.threads, "batch": 32, "loadavg_before": float(load), "results": rows})


if __name__ == "__main__":
    main()
