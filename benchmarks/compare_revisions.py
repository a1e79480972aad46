"""Speed of two source trees of eventprop, measured in the same run (for refactors).

Each repetition runs one fresh process per tree, in alternating order, with the same
thread count; each process measures, on the Yin-Yang ``best`` preset:

- ``epoch``: seconds of training epochs 2..N through ``eventprop.training.train`` (the
  README's main job; epoch 1 is left out: it includes loading compiled kernels);
- ``step_32`` / ``step_200``: one forward + backward of the 5-200-3 network (first-spike
  loss) at batch 32 and 200, best of 30.

Reports the best and median over repetitions per tree and the ratio new / old.

Usage::

    python benchmarks/compare_revisions.py OLD_SRC NEW_SRC [--reps 5] [--epochs 4] [--out FILE]

(``*_SRC``: the ``src`` folder of each tree, e.g. a ``git worktree`` of the previous
``main``). Writes ``benchmarks/results/compare_revisions.json`` (``--out``: elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, sys, tempfile, time
import numpy as np, torch
from eventprop import first_spike_cross_entropy, first_spikes
from eventprop.training import build_model, encode, preset_config, train
from eventprop.datasets import yinyang_split
torch.set_num_threads(int(sys.argv[2]))
epochs = int(sys.argv[1])
out = {}
with tempfile.TemporaryDirectory() as tmp:
    config = preset_config("best", epochs=epochs, seed=0)
    train(config, tmp, progress=False, log=lambda s: None)
    import csv
    with open(tmp + "/metrics.csv") as f:
        out["epoch"] = [float(r["seconds"]) for r in csv.DictReader(f)][1:]
config = preset_config("best", hidden=200, seed=0)
torch.manual_seed(0)
model = build_model(config, 5, 3)
x, y = yinyang_split("train")
times = encode(config, x)
labels = torch.as_tensor(y)
for batch in (32, 200):
    t, l = times[:batch], labels[:batch]
    best = float("inf")
    for _ in range(30):
        t0 = time.perf_counter()
        loss = first_spike_cross_entropy(first_spikes(model(t)), l, tau0=0.5, tau1=6.4, alpha=3e-3, t_silent=60.0)
        loss.backward()
        best = min(best, time.perf_counter() - t0)
    out[f"step_{batch}"] = best
print(json.dumps(out))
"""


def _run(src: str, epochs: int, threads: int) -> dict[str, list[float] | float]:
    env = {**os.environ, "PYTHONPATH": src, "NUMBA_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(epochs), str(threads)], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="src folder of the baseline tree")
    parser.add_argument("new", help="src folder of the tree under test")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "compare_revisions.json"), help="JSON report"
    )
    args = parser.parse_args()
    trees = {"old": args.old, "new": args.new}
    samples: dict[str, dict[str, list[float]]] = {k: {"epoch": [], "step_32": [], "step_200": []} for k in trees}
    for rep in range(args.reps):
        order = list(trees) if rep % 2 == 0 else list(reversed(trees))
        for name in order:
            result = _run(trees[name], args.epochs, args.threads)
            samples[name]["epoch"] += result["epoch"]
            samples[name]["step_32"].append(result["step_32"])
            samples[name]["step_200"].append(result["step_200"])
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    report = {"trees": trees, "reps": args.reps, "epochs": args.epochs, "threads": args.threads, "load": os.getloadavg()}
    for metric in ("epoch", "step_32", "step_200"):
        row = {}
        for name in trees:
            values = samples[name][metric]
            row[name] = {"best": min(values), "median": statistics.median(values), "n": len(values)}
        row["ratio_best"] = row["new"]["best"] / row["old"]["best"]
        row["ratio_median"] = row["new"]["median"] / row["old"]["median"]
        report[metric] = row
        print(
            f"{metric:9s} old best {row['old']['best'] * 1e3:9.2f} ms median {row['old']['median'] * 1e3:9.2f} ms | "
            f"new best {row['new']['best'] * 1e3:9.2f} ms median {row['new']['median'] * 1e3:9.2f} ms | "
            f"new/old {row['ratio_best']:.3f} (best) {row['ratio_median']:.3f} (median)"
        )
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
