"""Several seeds of one configuration, in parallel processes, and their aggregate."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import RunLock
from .config import TrainConfig
from .loop import train
from .outputs import plot_runs, read_metrics, write_json

__all__ = ["train_seeds"]


def _train_worker(args: tuple[TrainConfig, str, bool, int]) -> dict[str, Any]:
    config, out_dir, resume, threads = args
    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(threads)
    except ImportError:
        pass
    return train(config, out_dir, resume=resume, progress=False)


def train_seeds(config: TrainConfig, n_seeds: int, out_dir: str | os.PathLike[str], *, resume: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Train seeds ``config.seed ... config.seed + n_seeds - 1`` in parallel processes.

    Each seed writes to ``out_dir/seed_<k>``; the aggregate (mean and standard
    deviation of test and best validation accuracy) goes to ``out_dir/summary.json``
    and the curves of all seeds (mean bold, each seed grey) to ``out_dir/training.png``.
    With ``resume=True`` each seed that has a checkpoint continues from it and the
    others start. The whole run holds ``out_dir/run.lock``.
    """
    config.validate()
    out = Path(out_dir)
    with RunLock(out):
        return _train_seeds(config, n_seeds, out, resume, workers)


def _train_seeds(config: TrainConfig, n_seeds: int, out: Path, resume: bool, workers: int | None) -> dict[str, Any]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    cores = os.cpu_count() or 1
    workers = max(1, min(n_seeds, workers or cores))
    threads = max(1, cores // workers)
    dirs = [out / f"seed_{config.seed + k}" for k in range(n_seeds)]
    jobs = [
        (dataclasses.replace(config, seed=config.seed + k), str(d), resume and (d / "checkpoint.pt").exists(), threads)
        for k, d in enumerate(dirs)
    ]
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        summaries = list(tqdm(pool.map(_train_worker, jobs), total=n_seeds, desc="seeds"))
    test = np.array([s["test_accuracy"] for s in summaries])
    val = np.array([s["best_val_accuracy"] for s in summaries])
    aggregate = {
        "seeds": [s["config"]["seed"] for s in summaries],
        "test_accuracy": test.tolist(),
        "best_val_accuracy": val.tolist(),
        "test_accuracy_mean": float(test.mean()),
        "test_accuracy_std": float(test.std()),
        "best_val_accuracy_mean": float(val.mean()),
        "best_val_accuracy_std": float(val.std()),
        "config": asdict(config),
    }
    write_json(out / "summary.json", aggregate)
    plot_runs(out / "training.png", [read_metrics(Path(job[1]) / "metrics.csv") for job in jobs])
    return aggregate
