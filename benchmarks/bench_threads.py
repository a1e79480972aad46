"""Training time against the thread count, on a quiet machine and with one core kept busy.

    python benchmarks/bench_threads.py [--epochs 4] [--threads 1 2] [--out benchmarks/results/threads.json]

Runs the README's main job, shortened (``eventprop train yinyang --epochs E --threads
N``, one process each), for every thread count, first alone and then while a second
process spins on one core (a pure-Python busy loop, as another user's job would). Reports
the median epoch time after the first epoch (which compiles and warms caches) and the
ratio of each configuration to one thread alone, measured in the same run. The test
accuracies must agree across thread counts (results do not depend on them).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def _train(threads: int, epochs: int, folder: Path) -> tuple[float, float]:
    """Median epoch seconds (after the first) and test accuracy of one run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "eventprop", "train", "yinyang", "--epochs", str(epochs), "--threads", str(threads),
               "--quiet", "--out", str(folder)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
    with open(folder / "metrics.csv") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    summary = json.loads((folder / "summary.json").read_text())
    return statistics.median(seconds[1:]), summary["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (False, True):
            for threads in args.threads:
                spinner = None
                if busy:
                    spinner = mp.get_context("spawn").Process(target=_spin, args=(time.time() + 3600,), daemon=True)
                    spinner.start()
                try:
                    load = os.getloadavg()[0]
                    epoch, accuracy = _train(threads, args.epochs, Path(tmp) / f"{threads}-{busy}")
                finally:
                    if spinner is not None:
                        spinner.terminate()
                        spinner.join()
                rows.append({"threads": threads, "busy_core": busy, "epoch_seconds": epoch, "test_accuracy": accuracy, "load_before": load})
                print(f"threads {threads} busy core {busy!s:5}: {epoch:.2f} s per epoch, test {100 * accuracy:.2f} % (load {load:.2f})")
    base = next(r["epoch_seconds"] for r in rows if r["threads"] == 1 and not r["busy_core"])
    for r in rows:
        r["ratio_to_one_thread_alone"] = r["epoch_seconds"] / base
    assert len({r["test_accuracy"] for r in rows}) == 1, "test accuracy differs between thread counts"
    Path(args.out).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count(), "rows": rows}, indent=2))
    for r in rows:
        print(f"| {r['threads']} | {'yes' if r['busy_core'] else 'no'} | {r['epoch_seconds']:.2f} | {r['ratio_to_one_thread_alone']:.2f} |")


if __name__ == "__main__":
    main()
